"""One ledger shard, owned by this process: a queue of commands applied in order and group-committed.

Ownership is an epoch in the shard partition's static columns, taken with a conditional write when the
shard starts (`acquire`). Every group commit is one batch on that partition conditioned on the epoch and
the last sequence number it saw, so a stale owner's commit fails and it stops (`lost`). The batch
carries the new state of every touched account, the write-ahead records of the group and the outbox or
credit-marker rows: either all of it is stored or none of it is.

Ownership is also a lease (`owner`, `lease_until_ms`): every commit and a renewal every tick extend it,
another process takes the shard over only once it has run out (`ShardElsewhere` until then), and the
owner answers from memory only while its lease has a margin left (`serving`), so a process that stopped
renewing (paused, cut off) stops answering before anyone else can take over. Credits that other
processes owe to this shard's accounts arrive as `inbox` rows of its partition; the owner polls them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Protocol, TypeVar

import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.errors import (
    ApiError,
    ErrorCode,
    HeldElsewhere,
    internal,
    resource_exhausted,
    unavailable,
)
from jubao_server.payments.commands import (
    Applied,
    Command,
    Credit,
    Record,
    decode,
    encode,
    refusal,
    transfer_of,
)
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.model import Transfer
from jubao_server.payments.state import AccountState, ItemKey, Stage
from jubao_server.payments.sweep import ITEM_KINDS, due_commands, expired_tallies, item_ttl_s
from jubao_server.payments.tables import SHARDS
from jubao_server.storage.contract import (
    Batch,
    Bound,
    Consistency,
    Delete,
    Put,
    Row,
    RowQuery,
    StaticMatches,
    StorageBackend,
    StorageError,
)

log = structlog.get_logger("jubao.payments")

acquire_attempts_max = 8
stop_timeout_s = 10.0
sweep_interval_s = 1.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass(frozen=True)
class Node:
    """This process as a shard owner: an id of its own, and the address other processes forward calls
    to ("" when it takes none, as in tests and tools)."""

    node_id: str
    address: str = ""

    @classmethod
    def local(cls, address: str = "") -> Node:
        return cls(f"node-{uuid.uuid4().hex[:16]}", address)

    @property
    def tag(self) -> str:
        """What the `owner` static column holds."""
        return f"{self.node_id}@{self.address}"


class ShardElsewhere(HeldElsewhere):
    """Another process holds the shard's lease: calls go to it (`address`), or wait until the lease
    runs out when it has none."""

    def __init__(self, shard: int, owner: str, lease_until_ms: int) -> None:
        message = f"ledger shard {shard} is leased by {owner} until {lease_until_ms}"
        super().__init__(message, owner.partition("@")[2])
        self.shard = shard
        self.lease_until_ms = lease_until_ms


def wal_key(seq: int) -> str:
    return f"{seq:019d}"


@dataclasses.dataclass
class _Pending:
    command: Command
    future: asyncio.Future[object]


Records = list[tuple[int, Record]]
T = TypeVar("T")


class CommitListener(Protocol):
    def journal(self, actor: ShardActor, records: Records) -> list[Batch]:
        """The journal batches derived from the records (idempotent), written with the shard's commit."""

    def committed(self, actor: ShardActor, records: Records) -> None:
        """Start the follow-up work of the records (cross-shard deliveries); not awaited."""

    def stalled(self, actor: ShardActor) -> None:
        """Deliver again what the outbox still owes and nothing is delivering now."""


class ShardActor:
    def __init__(
        self,
        backend: StorageBackend,
        tenant_id: str,
        shard: int,
        *,
        shard_count: int,
        settings: PaymentsSettings,
        listener: CommitListener,
        node: Node,
    ) -> None:
        self.backend = backend
        self.tenant_id = tenant_id
        self.shard = shard
        self.shard_count = shard_count
        self.partition = SHARDS.partition(tenant_id, shard)
        self.accounts: dict[str, AccountState] = {}
        self.epoch = 0
        self.last_seq = 0
        self.materialized_seq = 0
        self.outbox: dict[str, Record] = {}
        # Transfers committed by this owner, newest last: retries of them are answered, not re-applied.
        self.transfers: dict[str, Transfer] = {}
        # Credits applied by this owner, newest last (marker keys): a credit delivered twice lands once.
        self.credits: dict[str, None] = {}
        # Requests applied by this owner that are not transfers (account updates, disputes), newest last.
        self.requests: dict[str, None] = {}
        # Holds, escrows and refund tallies of this shard, by (row kind, id).
        self.items: dict[ItemKey, Record] = {}
        self.lost = False
        self.lease_until_ms = 0
        self._node = node
        self._lease_ms = settings.shard_lease_ms
        self._tick_s = min(settings.inbox_poll_ms, settings.shard_lease_ms // 4) / 1000
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(settings.shard_queue_max)
        self._group_max = settings.group_commit_max
        self._wal_ttl_s = settings.wal_ttl_s
        self._closed_ttl_s = settings.request_ttl_s
        self._listener = listener
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def acquire(self) -> Records:
        """Take ownership (a new epoch) and load the shard; returns the records not yet materialized."""
        for _ in range(acquire_attempts_max):
            static = await self.backend.read_static(self.partition, Consistency.SERIAL)
            epoch = static.as_int("epoch") if static is not None and static["epoch"] is not None else 0
            last_seq = _int_or_zero(static, "last_seq")
            materialized_seq = _int_or_zero(static, "materialized_seq")
            holder = static["owner"] if static is not None else None
            held_until_ms = _int_or_zero(static, "lease_until_ms")
            if isinstance(holder, str) and holder != self._node.tag and held_until_ms > now_ms():
                raise ShardElsewhere(self.shard, holder, held_until_ms)
            lease_until_ms = now_ms() + self._lease_ms
            fence = Batch(
                self.partition,
                static_values={
                    "epoch": epoch + 1,
                    "last_seq": last_seq,
                    "materialized_seq": materialized_seq,
                    "owner": self._node.tag,
                    "lease_until_ms": lease_until_ms,
                },
                conditions=(StaticMatches({"epoch": epoch if epoch else None}),),
            )
            if (await self.backend.write(fence)).applied:
                self.epoch, self.last_seq, self.materialized_seq = epoch + 1, last_seq, materialized_seq
                self.lease_until_ms = lease_until_ms
                return await self._load()
        raise unavailable(Reason.STORAGE_UNAVAILABLE, f"ledger shard {self.shard} is contended; retry")

    async def _load(self) -> Records:
        self.accounts = {r.as_text("row_key"): AccountState.from_row(r) for r in await self._rows("account")}
        self.outbox = {r.as_text("row_key"): decode(r["record"]) for r in await self._rows("outbox")}
        for kind in ITEM_KINDS:
            self.items.update(
                {(kind, r.as_text("row_key")): decode(r["record"]) for r in await self._rows(kind)}
            )
        wal = await self._rows("wal", after=wal_key(self.materialized_seq))
        records = [(int(r.as_text("row_key")), decode(r["record"])) for r in wal]
        recovered = (transfer_of(r) for _, r in records)
        _keep_recent(self.transfers, {t.transfer_id: t for t in recovered if t is not None})
        # One line per tenant says its ledger opened (ledger.py); a shard only when it had work to recover.
        recovering = bool(wal or self.outbox)
        (log.info if recovering else log.debug)(
            "ledger shard acquired, recovering" if recovering else "ledger shard acquired",
            tenant_id=self.tenant_id,
            shard=self.shard,
            epoch=self.epoch,
            accounts=len(self.accounts),
            unmaterialized=len(wal),
            outbox=len(self.outbox),
        )
        return records

    async def _rows(self, kind: str, after: str | None = None) -> list[Row]:
        lower = Bound((kind, after), inclusive=False) if after is not None else Bound((kind,), inclusive=True)
        query = RowQuery(
            self.partition,
            lower=lower,
            upper=Bound((kind,), inclusive=True),
            limit=limits.storage_page_rows_max,
        )
        rows: list[Row] = []
        while len(rows) < limits.ledger_recovery_rows_max:
            page = await self.backend.read_page(query)
            rows += page.rows
            if page.next_after is None:
                return rows
            query = query.after(page.next_after)
        raise StorageError(
            f"ledger shard {self.shard} holds more than ledger_recovery_rows_max rows of {kind}"
        )

    def serving(self) -> bool:
        """Whether this owner may answer: not fenced, and its lease has a quarter of its length left."""
        return not self.lost and now_ms() + self._lease_ms // 4 < self.lease_until_ms

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ledger-{self.tenant_id}-{self.shard}")
        self._sweeper = asyncio.create_task(self._tend(), name=f"ledger-tend-{self.tenant_id}-{self.shard}")

    async def stop(self, release: bool = False) -> None:
        """Stop the actor's tasks; callers still waiting, and any that submit later, get UNAVAILABLE.
        With `release`, give the lease up so that another process need not wait for it to run out."""
        held = not self.lost
        self.lost = True
        tasks = [t for t in (self._task, self._sweeper) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=stop_timeout_s)
        if release and held:
            released = Batch(
                self.partition,
                static_values={"lease_until_ms": 0},
                conditions=(StaticMatches({"epoch": self.epoch}),),
            )
            try:
                await self.backend.write(released)
            except StorageError as error:
                log.warning("ledger shard lease not released", shard=self.shard, error=str(error))

    async def _tend(self) -> None:
        """Every tick: renew the lease when a third of it is used. About once a second, and every tick
        while credits keep arriving: apply the credits other processes left in the inbox. About once a
        second: expire holds, release escrows whose time has come, forget closed refund tallies, and
        deliver again what the outbox still owes."""
        swept_s = time.monotonic()
        inbox_busy = False
        while not self.lost:
            await asyncio.sleep(self._tick_s)
            try:
                if self.lease_until_ms - now_ms() < self._lease_ms * 2 // 3:
                    await self.renew()
                due = time.monotonic() - swept_s >= sweep_interval_s
                if due or inbox_busy:
                    inbox_busy = await self._apply_inbox()
                if due:
                    swept_s = time.monotonic()
                    await self._sweep()
            except (ApiError, StorageError) as error:
                log.warning("ledger shard upkeep failed", shard=self.shard, error=str(error))

    async def renew(self) -> None:
        """Extend the lease, if the shard is still this owner's (else it is lost)."""
        lease_until_ms = now_ms() + self._lease_ms
        renewal = Batch(
            self.partition,
            static_values={"lease_until_ms": lease_until_ms},
            conditions=(StaticMatches({"epoch": self.epoch}),),
        )
        if (await self.backend.write(renewal)).applied:
            self.lease_until_ms = max(self.lease_until_ms, lease_until_ms)
        else:
            log.warning("ledger shard fenced", tenant_id=self.tenant_id, shard=self.shard, epoch=self.epoch)
            self.lost = True

    async def _apply_inbox(self) -> bool:
        """Apply the credits other processes left here; whether there were any. The marker is read
        first, as a delivery does: a credit an earlier owner applied only has its inbox row dropped."""
        query = RowQuery(
            self.partition,
            lower=Bound(("inbox",), inclusive=True),
            upper=Bound(("inbox",), inclusive=True),
            limit=limits.ledger_inbox_rows_max,
        )
        rows = (await self.backend.read_page(query)).rows
        for row in rows:
            credit = Credit.from_inbox_record(decode(row["record"]), self._wal_ttl_s)
            landed = await self.backend.read_row(self.partition, ("credit", credit.marker_key))
            await self.submit(dataclasses.replace(credit, landed=landed is not None))
        return bool(rows)

    async def _sweep(self) -> None:
        for key in expired_tallies(self.items, now_ms()):
            del self.items[key]
        for command in due_commands(self.items, self.tenant_id, self.shard_count, now_ms()):
            try:
                await self.submit(command)
            except ApiError as error:
                log.warning(
                    "ledger sweep step refused", shard=self.shard, reason=error.reason, error=error.message
                )
        self._listener.stalled(self)

    async def submit(self, command: Command) -> object:
        """Queue a command and wait for its committed result (or its rejection)."""
        if self.lost:
            raise _moved(self.shard)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(command, future))
        except asyncio.QueueFull:
            raise resource_exhausted(
                Reason.CONCURRENCY_LIMITED, f"ledger shard {self.shard} is saturated", 50
            ) from None
        return await future

    async def _run(self) -> None:
        """Commit groups until the owner is lost or stopped; then every caller still waiting (the group
        cut short by a stop, the queued ones) gets UNAVAILABLE and retries with its request id."""
        group: list[_Pending] = []
        try:
            while not self.lost:
                group = self._next_group(await self._queue.get())
                try:
                    await self._commit(group)
                except Exception:
                    # A programmer error in a command: this owner stops and the shard is acquired afresh.
                    log.exception("ledger shard failed", tenant_id=self.tenant_id, shard=self.shard)
                    self.lost = True
                    for pending in group:
                        _settle(pending.future, internal(f"ledger shard {self.shard} failed"))
        finally:
            for pending in group:
                _settle(pending.future, _moved(self.shard))
            self._fail_queued(_moved(self.shard))

    def _next_group(self, first: _Pending) -> list[_Pending]:
        group = [first]
        rows = first.command.rows_max
        while len(group) < self._group_max and not self._queue.empty():
            following = self._queue.get_nowait()
            group.append(following)
            rows += following.command.rows_max
            if rows >= limits.ledger_batch_rows_max:
                break
        return group

    async def _commit(self, group: list[_Pending]) -> None:
        stage = Stage(
            self.accounts,
            self.transfers,
            self.items,
            now_ms(),
            known_credits=self.credits,
            known_requests=self.requests,
            outbox=self.outbox,
        )
        outcomes: list[tuple[_Pending, Applied | ApiError]] = []
        for pending in group:
            try:
                outcomes.append((pending, pending.command.apply(stage)))
            except ApiError as error:
                outcomes.append((pending, refusal(stage, pending.command, error)))
        applied = [a for _, a in outcomes if isinstance(a, Applied)]
        stamped = (a.record | {"time_ms": stage.now_ms} for a in applied if a.record)
        records = [(self.last_seq + i + 1, r) for i, r in enumerate(stamped)]
        try:
            if records or stage.touched_items or any(a.rows or a.deleted for a in applied):
                await self._store(stage, applied, records, self._listener.journal(self, records))
        except (StorageError, ApiError) as error:
            self.lost = True
            failure = (
                error if isinstance(error, ApiError) else unavailable(Reason.STORAGE_UNAVAILABLE, str(error))
            )
            for pending, _ in outcomes:
                _settle(pending.future, failure)
            return
        if records:
            self.materialized_seq = records[-1][0]
            self._listener.committed(self, records)
        for pending, outcome in outcomes:
            _settle(pending.future, outcome.result if isinstance(outcome, Applied) else outcome)

    async def _store(
        self, stage: Stage, applied: list[Applied], records: Records, journal: list[Batch]
    ) -> None:
        puts = [Put(("account", a), s.row_values()) for a, s in stage.touched.items()]
        puts += [
            Put(("wal", wal_key(seq)), {"record": encode(r)}, ttl_s=self._wal_ttl_s) for seq, r in records
        ]
        for (kind, key), record in stage.touched_items.items():
            ttl_s = item_ttl_s(record, stage.now_ms, self._closed_ttl_s)
            puts.append(Put((kind, key), {"record": encode(record)}, ttl_s=ttl_s))
        deletes = []
        for outcome in applied:
            puts += [Put((row.kind, row.key), row.values(), ttl_s=row.ttl_s) for row in outcome.rows]
            deletes += [Delete(key) for key in outcome.deleted]
        new_last = self.last_seq + len(records)
        lease_until_ms = stage.now_ms + self._lease_ms
        batch = Batch(
            self.partition,
            puts=tuple(puts),
            deletes=tuple(deletes),
            static_values={
                "epoch": self.epoch,
                "last_seq": new_last,
                "materialized_seq": self.materialized_seq,
                "lease_until_ms": lease_until_ms,
            },
            conditions=(StaticMatches({"epoch": self.epoch, "last_seq": self.last_seq}),),
        )
        if not (await self.backend.write_after(batch, journal)).applied:
            log.warning("ledger shard fenced", tenant_id=self.tenant_id, shard=self.shard, epoch=self.epoch)
            raise _moved(self.shard)
        self.last_seq = new_last
        self.lease_until_ms = max(self.lease_until_ms, lease_until_ms)
        self.accounts.update(stage.touched)
        self.items.update(stage.touched_items)
        _keep_recent(self.transfers, stage.new_transfers)
        _keep_recent(self.credits, dict.fromkeys(sorted(stage.new_credits)))
        _keep_recent(self.requests, dict.fromkeys(sorted(stage.new_requests)))
        for outcome in applied:
            for row in outcome.rows:
                if row.kind == "outbox":
                    self.outbox[row.key] = row.record
            for kind, key in outcome.deleted:
                if kind == "outbox":
                    self.outbox.pop(key, None)

    def _fail_queued(self, error: ApiError) -> None:
        while not self._queue.empty():
            _settle(self._queue.get_nowait().future, error)


def _keep_recent(recent: dict[str, T], new: dict[str, T]) -> None:
    """Add `new` to `recent`, forgetting the oldest beyond `ledger_recent_transfers_max`."""
    recent.update(new)
    while len(recent) > limits.ledger_recent_transfers_max:
        del recent[next(iter(recent))]


def _settle(future: asyncio.Future[object], outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _moved(shard: int) -> ApiError:
    return ApiError(
        ErrorCode.UNAVAILABLE,
        Reason.STORAGE_UNAVAILABLE,
        f"ledger shard {shard} changed owner or lost storage; retry with the same request_id",
    )


def _int_or_zero(row: Row | None, column: str) -> int:
    value = row[column] if row is not None else None
    return value if isinstance(value, int) else 0
