"""The state-machine protocol: what a product brings to the shard runtime.

A product's shard is a state machine (TigerBeetle's split: the machine knows nothing of storage,
leases or queues; the runtime knows nothing of the product):

* its **state**, loaded from the rows of the shard partition (`load`), and a **stage** over it
  (`stage`): a copy-on-write overlay that one group of commands changes; what a command needs that the
  state keeps in storage only (closed items, say) it names (`fetches`), and the runtime reads it for
  the stage;
* **commands** (`Command`): pure, `apply(stage)` either changes the stage completely and returns the
  command's typed result, or raises `ApiError` having changed nothing; `refused` says what a refusal
  leaves (a refusal kept for the retries of its request, or nothing);
* how touched state becomes rows (`rows`) and how a committed stage is folded into the state
  (`absorb`); records (`Stage.records`, one write-ahead record per command that changed something) and
  how they materialize into the product's own tables (`journal`, idempotent);
* follow-ups owed to other shards (`Stage.owe`: an outbox entry per command, its `messages`, one per
  receiving shard, each applied once by its shard with `receive`, then every one of its `items`
  `settled` at the sender in one command);
* what falls due as time passes (`upkeep`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import TypeVar

from jubao_server.errors import ApiError
from jubao_server.shards.stage import Command, MessageT, OutboxT, RecordT, ShardId, StageT
from jubao_server.storage.contract import Delete, Following, Key, Put, Row, Table

StateT = TypeVar("StateT")


@dataclasses.dataclass(frozen=True)
class ShardSettings:
    """What the runtime needs of a product's settings."""

    shard_count: int
    group_commit_max: int
    shard_queue_max: int
    # Write-ahead records and apply-once markers are kept this long.
    wal_ttl_s: int
    shard_lease_ms: int
    inbox_poll_ms: int


class StateMachine(typing.Protocol[StateT, StageT, RecordT, OutboxT, MessageT]):
    # The shard table: partition (scope, shard), clustering (row_kind, row_key), a `record` blob, the
    # static columns epoch, last_seq, materialized_seq, owner, lease_until_ms; and the table recording a
    # scope's shard count (`shard_count`, `create_time_ms`).
    shard_table: Table
    config_table: Table
    # Row kinds of the product's state, loaded when a shard is acquired; the row kind of the markers of
    # messages applied.
    state_kinds: tuple[str, ...]
    marker_kind: str
    record_type: type[RecordT]
    outbox_type: type[OutboxT]
    message_type: type[MessageT]

    def load(self, shard: ShardId, rows: Mapping[str, Sequence[Row]], recovered: Sequence[RecordT]) -> StateT:
        """The state from its rows; `recovered`: the records not yet materialized."""

    def fetches(self, state: StateT, command: Command[StageT, typing.Any]) -> Sequence[Key]:
        """Rows of the shard partition (clustering keys) that `command` may need and `state` does not
        hold in memory. The runtime reads them before the command's group applies (the owner is the only
        writer of its partition, so they are as current as the state) and hands them to `stage`."""

    def stage(self, state: StateT, now_ms: int, fetched: Mapping[Key, Row]) -> StageT:
        """The stage of one group over `state`, with the rows fetched for it (missing ones left out)."""

    def refused(self, stage: StageT, command: Command[StageT, typing.Any], error: ApiError) -> ApiError:
        """What a command's refusal leaves (it may keep it in the stage, for the retries of its
        request) and the error its caller gets."""

    def receive(self, stage: StageT, message: MessageT) -> None:
        """Apply a message another shard owed this one (the runtime applies each once)."""

    def settled(self, stage: StageT, key: str, entry: OutboxT) -> None:
        """Every message of an outbox entry landed (the runtime drops the entry)."""

    def messages(self, key: str, entry: OutboxT) -> Sequence[MessageT]:
        """What an outbox entry owes: at most one message per receiving shard, so that a commit's
        follow-ups cost each shard one command and one marker however many items they are about."""

    def items(self, key: str, entry: OutboxT) -> Sequence[str]:
        """What the entry's messages complete once they all landed (payments: its transfers' ids), each a
        name callers may wait on (`Deliveries.landed`); settling records something for each."""

    def rows(self, stage: StageT) -> tuple[list[Put], list[Delete]]:
        """The touched state as rows of the shard partition."""

    def absorb(self, state: StateT, stage: StageT) -> None:
        """Fold a committed stage into the state."""

    def journal(self, shard: ShardId, records: Sequence[tuple[int, RecordT]]) -> list[Following]:
        """The product's own tables derived from the records of `shard` (idempotent), written with the
        commit: bulk puts (or batches)."""

    def upkeep(self, state: StateT, shard: ShardId, now_ms: int) -> Sequence[Command[StageT, typing.Any]]:
        """Commands due by now (expiries, automatic releases), at most `sweep_commands_max`."""
