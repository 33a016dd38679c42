"""Helpers of the ledger tests: accounts, transfers, a conservation check and failed commits."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, Final

from jubao_server.payments.api import Idempotency, TransferCommand
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.model import (
    AccountKind,
    AccountPolicy,
    Leg,
    OpenAccountCommand,
    Transfer,
    TransferState,
)
from jubao_server.payments.tables import SHARDS as SHARD_TABLE
from jubao_server.shards.actor import ShardActor
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    Following,
    FollowingWriteError,
    PartitionRef,
    StorageBackend,
    StorageError,
)

CURRENCY = "CNY"
SETTLE_POLL_S: Final = 0.05


def key(request_id: str | None = None, body: str = "body") -> Idempotency:
    return Idempotency(request_id or uuid.uuid4().hex, body)


async def open_account(ledger: Ledger, tenant: str, account_id: str, **policy: object) -> None:
    kind = AccountKind.SETTLEMENT if policy.get("allow_negative") else AccountKind.CUSTOMER
    command = OpenAccountCommand(account_id, CURRENCY, kind, AccountPolicy(**policy), account_id)  # type: ignore[arg-type]
    await ledger.open_account(tenant, command, key())


def transfer_item(
    payer: str, *credits: tuple[str, int], request_id: str = ""
) -> tuple[TransferCommand, Idempotency]:
    """A transfer from `payer` and its request id (a new one when not given), as the ledger takes them."""
    legs = tuple(Leg(payer, payee, amount) for payee, amount in credits)
    return TransferCommand(CURRENCY, legs, "test"), key(request_id or None, repr(legs))


async def pay(
    ledger: Ledger, tenant: str, payer: str, *credits: tuple[str, int], request_id: str = ""
) -> Transfer:
    return await ledger.create_transfer(tenant, *transfer_item(payer, *credits, request_id=request_id))


async def balance(ledger: Ledger, tenant: str, account_id: str) -> int:
    return (await ledger.get_account(tenant, account_id)).balance.ledger_minor


async def total(ledger: Ledger, tenant: str) -> int:
    views, _ = await ledger.list_accounts(tenant, None, 10_000)
    return sum(view.balance.ledger_minor for view in views)


def ids_in_shard(prefix: str, shard: int, count: int, shard_count: int) -> list[str]:
    """`count` account ids of one shard."""
    ids = (f"{prefix}-{index}" for index in range(10_000))
    return list(itertools.islice((a for a in ids if shard_of(a, shard_count) == shard), count))


def ids_in_distinct_shards(prefix: str, shard_count: int, count: int) -> list[str]:
    """Account ids that land in `count` different shards."""
    chosen: dict[int, str] = {}
    for index in range(10_000):
        candidate = f"{prefix}-{index}"
        chosen.setdefault(shard_of(candidate, shard_count), candidate)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("not enough shards")


async def completed(
    ledger: Ledger, tenant: str, transfer_id: str, *, polls_max: int, poll_s: float
) -> Transfer:
    """The transfer once its credits are delivered, or as it is after `polls_max` polls `poll_s` apart."""
    transfer = await ledger.get_transfer(tenant, transfer_id)
    for _ in range(polls_max):
        if transfer.state is TransferState.COMPLETED:
            break
        await asyncio.sleep(poll_s)
        transfer = await ledger.get_transfer(tenant, transfer_id)
    return transfer


async def settled(sender: ShardActor[Any, Any, Any, Any, Any], entry_key: str, *, polls_max: int) -> bool:
    """Whether the sender's shard settled its outbox entry `entry_key` within `polls_max` polls
    `SETTLE_POLL_S` apart (it settles with the shard's next commit or at its next upkeep tick)."""
    for _ in range(polls_max):
        if entry_key not in sender.outbox:
            return True
        await asyncio.sleep(SETTLE_POLL_S)
    return entry_key not in sender.outbox


class CommitFailure(StrEnum):
    """Where the next shard commit fails: before it reaches storage; after its batch is stored, its
    answer lost; after its batch is stored, writing its journal (as a process cut off from Cassandra
    between the two would see it)."""

    BEFORE = "before"
    ANSWER_LOST = "answer lost"
    JOURNAL = "journal"


def fail_next_commit(backend: StorageBackend, partition: PartitionRef, where: CommitFailure) -> None:
    """The next commit (with a journal) of the shard `partition` fails with a storage error, as `where`
    says."""
    write_after = backend.write_after
    pending = [where]

    async def failing(
        batch: Batch, following: Sequence[Following], guards: Sequence[Batch] = ()
    ) -> BatchOutcome:
        if not pending or batch.partition != partition or not following:
            return await write_after(batch, following, guards)
        failure = pending.pop()
        if failure is CommitFailure.BEFORE:
            raise StorageError("injected: the commit failed")
        await write_after(batch, (), guards)  # stored with its guards (a request's claim), as one
        if failure is CommitFailure.ANSWER_LOST:
            raise StorageError("injected: the commit's answer was lost")
        raise FollowingWriteError("injected: the commit's journal failed")

    backend.write_after = failing  # type: ignore[method-assign]


# The partitions each of a backend's reads and writes touches, from its first argument.
_PARTITIONS_OF: Final[dict[str, Callable[[Any], list[PartitionRef]]]] = {
    "read_row": lambda partition: [partition],
    "read_static": lambda partition: [partition],
    "read_page": lambda query: [query.partition],
    "read_columns": lambda query: [query.partition],
    "write": lambda batch: [batch.partition],
    "write_after": lambda batch: [batch.partition],
    "write_each": lambda batches: [batch.partition for batch in batches],
}


def cut_off_shard(backend: StorageBackend, tenant: str, shard: int) -> Callable[[], None]:
    """Every read and write of the tenant's shard `shard` (its lease, accounts and log, one partition)
    fails with a storage error, as a replica set that cannot answer would, until the returned function
    puts the backend back."""
    cut = SHARD_TABLE.partition(tenant, shard)
    originals = {name: getattr(backend, name) for name in _PARTITIONS_OF}

    def guarded(name: str) -> Callable[..., Awaitable[Any]]:
        original, partitions_of = originals[name], _PARTITIONS_OF[name]

        async def operation(first: Any, *args: Any, **kwargs: Any) -> Any:
            if cut in partitions_of(first):
                raise StorageError(f"injected: shard {shard} is cut off")
            return await original(first, *args, **kwargs)

        return operation

    for name in _PARTITIONS_OF:
        setattr(backend, name, guarded(name))

    def restore() -> None:
        for name, original in originals.items():
            setattr(backend, name, original)

    return restore
