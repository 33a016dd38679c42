"""The memory backend: the whole storage contract in the process's memory, for tests and the simulator.

It is not durable: everything is lost when the backend closes or the process ends, and two processes
never share it. What it offers instead is determinism. It starts no thread and reads no clock but the
injected one; each operation yields to the event loop once, as a real store's I/O would, and then runs
to completion, so a batch is atomic without a lock; iteration follows sorted keys or insertion order,
never a hash. On a virtual-time loop (`tests/sim/`) the same seed replays the same run exactly.

Semantics, where the contract leaves a choice:

* TTL is per row, as on SQLite: a put with `ttl_s` sets the expiry of the whole row, a put without one
  clears it, and a put on an expired row starts a new row. Expiry follows the injected clock's wall time;
  expired rows are invisible at once and purged, oldest first, a bounded number per write.
* `write_after` writes the following batches after the batch, as Cassandra does, so an injected fault
  between them leaves them unwritten and the caller's repair path runs; one after the other, where the
  other backends have several in flight.
* SERIAL and DEFAULT reads are the same: there is one copy.
* Schema: a migration set's `NNNN_description.tables` files name the tables they create, one per line
  (`--` starts a comment). Each table takes its shape from the `Table` declared by its domain package the
  first time it is used; using a table no schema file created is a programmer error, as an unknown table
  is on the other backends. Applied files are recorded with their checksum like elsewhere, so `migrate`
  applies each once and refuses one that changed.
"""

from jubao_server.storage.memory.backend import MemoryBackend

__all__ = ["MemoryBackend"]
