"""The SQLite backend: a single-file store for development, tests and single-node deployments.

Table conventions (the schema files in `migrations/` and in each product's `migrations/sqlite/` follow
them, the code in `sql.py` relies on them):

* A table is named like its `Table`; its columns are `scope`, the key columns, the regular columns and
  `_expires_at_ms` (the row's expiry, NULL for none), with `PRIMARY KEY (scope, partition..., clustering...)`
  and `WITHOUT ROWID`, so each partition is stored contiguously in clustering order.
* Static columns live in a companion table `<name>__static` with `scope`, the partition key columns, the
  static columns and `_expires_at_ms`, keyed by `(scope, partition...)`.
* Types: text TEXT, bigint INTEGER, blob BLOB, boolean INTEGER 0/1.
* A TTL is per row here (a put with `ttl_s` sets `_expires_at_ms`, a put without clears it) and per cell
  on Cassandra, so domain code writes rows with a TTL once and never updates them. Reads skip expired
  rows; a periodic sweep deletes them, a bounded number per table at a time.
"""

from jubao_server.storage.sqlite.backend import SqliteBackend

__all__ = ["SqliteBackend"]
