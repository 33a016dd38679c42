"""The pure side of the state-machine protocol (no storage, no gRPC): what a product's commands see.

A command applies to a `Stage`, the product's copy-on-write overlay over its state for one group
commit; besides the product's own changes the stage collects the write-ahead records, the outbox
entries owed to other shards and any extra rows. A command either changes the stage completely and
returns its typed result, or raises `ApiError` having changed nothing.
"""

from __future__ import annotations

import abc
import dataclasses
import typing
import zlib
from typing import Generic, TypeVar

T = TypeVar("T")
StageT = TypeVar("StageT", bound="Stage[typing.Any, typing.Any]")
RecordT = TypeVar("RecordT")
OutboxT = TypeVar("OutboxT")
MessageT = TypeVar("MessageT", bound="Message")


def shard_of(key: str, shard_count: int) -> int:
    """The shard of a key (an account id, a holder id): CRC-32, so every process agrees."""
    return zlib.crc32(key.encode()) % shard_count


@dataclasses.dataclass(frozen=True)
class ShardId:
    scope: str
    shard: int
    shard_count: int


@dataclasses.dataclass(frozen=True)
class ShardRow:
    """A row a command adds to the shard partition beside its state (a request marker, say)."""

    kind: str
    key: str
    record: bytes
    ttl_s: int | None = None


class Stage(Generic[RecordT, OutboxT]):
    """What one group of commands did beyond the product's own state: write-ahead records in command
    order, outbox entries owed to other shards, extra rows. A product's stage extends it."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.records: list[RecordT] = []
        self.owed: dict[str, OutboxT] = {}
        self.rows: list[ShardRow] = []

    def record(self, record: RecordT) -> None:
        self.records.append(record)

    def owe(self, key: str, entry: OutboxT) -> None:
        """Follow-up messages to other shards, stored in this shard's outbox with the commit."""
        self.owed[key] = entry


class Message(typing.Protocol):
    """A follow-up for another shard, applied there once (in one command, however much it carries):
    `marker_key` names it for the apply-once marker the receiving shard stores with it; `rows_max`
    bounds the rows its command adds to a batch."""

    @property
    def shard(self) -> int: ...

    @property
    def marker_key(self) -> str: ...

    def rows_max(self) -> int: ...


class Command(abc.ABC, Generic[StageT, T]):
    """A product command."""

    def rows_max(self) -> int:
        """A bound on the rows it adds to a batch (a group commit stays under `shard_batch_rows_max`)."""
        return 4

    @abc.abstractmethod
    def apply(self, stage: StageT) -> T:
        """Check everything, then change the stage; raise ApiError having changed nothing."""
