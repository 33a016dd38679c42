"""The shard runtime: products as state machines on leased, fenced, group-committed shards.

A product (payments today, the fund transfer agency next) brings a state machine
(`machine.StateMachine`: its state, its pure commands, its rows, records and journal, what it owes other
shards); the runtime brings everything that makes it correct on shared storage, the way Temporal's
history shards (fenced by `range_id`) serve its services and TigerBeetle's state machine sits apart from
its storage:

* `stage.py` + `machine.py`: the protocol (the pure side a product's commands see, and the rest);
* `node.py`: who this process is (`Node`), where its randomness comes from (`IdSource`), and
  `ShardElsewhere` (an `errors.HeldElsewhere`) for calls another process must take (the pipeline
  forwards them);
* `actor.py`: one owned shard: lease and epoch fencing (acquire, renew, release, `serving`), the bounded
  command queue and group commit (one conditional batch per group on the shard partition: state rows,
  write-ahead records, outbox entries, markers, static columns), the write-ahead log and recovery
  (re-materializing what follows `materialized_seq`), derived writes with the commit (`write_after`),
  the inbox, and upkeep ticks (renew, inbox poll, the product's due commands);
* `delivery.py`: cross-shard delivery through outbox and inbox with apply-once markers;
* `runtime.py`: routing (a scope's shard count, `shard_of`, the registry of owned shards, acquisition
  with lease waits) and commit signals.

Import from the modules themselves: the package imports nothing, so that a product's pure core can
use `stage.py` without pulling in storage.
"""
