"""One shard, owned by this process: its lease and epoch, a bounded queue of commands applied in order
and group-committed, its write-ahead log and recovery, its outbox, inbox and apply-once markers.

Ownership is an epoch in the shard partition's static columns, taken with a conditional write when the
shard is acquired (`acquire`). Every group commit is one batch on that partition conditioned on the epoch
and the last sequence number it saw, so a stale owner's commit fails and it stops (`lost`); Temporal
fences its history shards with `range_id` the same way. The batch carries the rows of the touched state,
one write-ahead record per command that changed something, outbox entries, markers and the static
columns: either all of it is stored or none of it is. The product's derived tables (`journal`) are
written with it (`write_after`); what a crash left unmaterialized (after `materialized_seq`) is written
again when the shard is next acquired.

Ownership is also a lease (`owner`, `lease_until_ms`): every commit and a renewal every tick extend it,
another process takes the shard over only once it has run out (`ShardElsewhere` until then), and the
owner answers only while its lease has a quarter left (`serving`), so a process that stopped renewing
(paused, cut off) stops answering before anyone else can take over. Messages other processes owe this
shard arrive as `inbox` rows of its partition; the owner polls them.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import typing
from collections.abc import Sequence
from typing import Generic, TypeVar

import msgspec
import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.bounded import keep_recent
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, internal, refusal_of, resource_exhausted, unavailable
from jubao_server.invariants import ensure, unreachable
from jubao_server.shards.machine import ShardSettings, StateMachine, StateT
from jubao_server.shards.node import Node, ShardElsewhere
from jubao_server.shards.stage import Command, MessageT, OutboxT, RecordT, ShardId, StageT
from jubao_server.shards.wal import EMPTY_RECORD, WAL, WalCodec, record_blob, wal_key
from jubao_server.storage.contract import (
    Batch,
    Bound,
    Consistency,
    Delete,
    FollowingWriteError,
    Key,
    PartitionRef,
    Put,
    Row,
    RowQuery,
    StaticMatches,
    StorageBackend,
    StorageError,
)

log = structlog.get_logger("jubao.shards")

T = TypeVar("T")
# Row kinds the runtime owns in every shard partition (besides `wal`, the write-ahead log's).
OUTBOX = "outbox"
INBOX = "inbox"


@dataclasses.dataclass(frozen=True)
class Receive(Generic[MessageT]):
    """Apply a message another shard owes this one, once. `from_inbox`: another process left it in
    the inbox, and its row goes once applied; `landed`: its marker is stored already (an earlier owner
    applied it), so only the inbox row goes."""

    message: MessageT
    from_inbox: bool = False
    landed: bool = False

    def rows_max(self) -> int:
        return self.message.rows_max() + 1


@dataclasses.dataclass(frozen=True)
class Settle:
    """Every message of the outbox entry `key` landed: drop it and settle its `items` (how many)."""

    key: str
    items: int

    def rows_max(self) -> int:
        return self.items + 1


class CommitListener(typing.Protocol):
    def committed(
        self,
        actor: ShardActor[typing.Any, typing.Any, typing.Any, typing.Any, typing.Any],
        owed: Sequence[str],
        settled: Sequence[str],
    ) -> None:
        """After a commit: deliver the new outbox entries, wake who waits for the settled ones."""

    def stalled(self, actor: ShardActor[typing.Any, typing.Any, typing.Any, typing.Any, typing.Any]) -> None:
        """Deliver again what the outbox still owes and nothing is delivering now."""


@dataclasses.dataclass
class _Pending:
    command: typing.Any
    future: asyncio.Future[typing.Any]
    # Conditional writes of other partitions that must hold for the command to commit (`submit`).
    guards: tuple[Batch, ...] = ()


@dataclasses.dataclass
class _Group:
    """What the runtime's own commands did in one group: markers added, inbox rows and outbox entries
    dropped."""

    markers: dict[str, None] = dataclasses.field(default_factory=dict)
    inbox_done: list[str] = dataclasses.field(default_factory=list)
    settled: list[str] = dataclasses.field(default_factory=list)


class ShardActor(Generic[StateT, StageT, RecordT, OutboxT, MessageT]):
    def __init__(
        self,
        backend: StorageBackend,
        machine: StateMachine[StateT, StageT, RecordT, OutboxT, MessageT],
        shard: ShardId,
        *,
        settings: ShardSettings,
        listener: CommitListener,
        node: Node,
        clock: Clock,
    ) -> None:
        self.backend = backend
        self.machine = machine
        self.id = shard
        self.partition = machine.shard_table.partition(shard.scope, shard.shard)
        self.state: StateT | None = None
        self.epoch = 0
        self.last_seq = 0
        self.materialized_seq = 0
        self.outbox: dict[str, OutboxT] = {}
        # Messages applied by this owner, newest last (marker keys): one delivered twice lands once.
        self.markers: dict[str, None] = {}
        self.lost = False
        # Set when a command hit a programmer error: the state in memory is not to be trusted.
        self.failed = False
        # The records of a stored commit whose journal could not be written (it lost the shard then).
        self.unmaterialized: list[tuple[int, RecordT]] = []
        self.lease_until_ms = 0
        self._node = node
        self._clock = clock
        self._settings = settings
        self._tick_s = min(settings.inbox_poll_ms, settings.shard_lease_ms // 4) / 1000
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(settings.shard_queue_max)
        # Settles of outbox entries whose messages all landed, waiting to ride the next group commit.
        self._settling: collections.deque[_Pending] = collections.deque()
        self._listener = listener
        self._wal = WalCodec(machine.record_type)
        self._outbox_entries = msgspec.json.Decoder(machine.outbox_type)
        self._messages = msgspec.json.Decoder(machine.message_type)
        self._encoder = msgspec.json.Encoder()
        self._task: asyncio.Task[None] | None = None
        self._upkeep: asyncio.Task[None] | None = None
        # Clear while a group commit is being stored: its derived rows (the journal) may be readable
        # before its state is in memory.
        self._idle = asyncio.Event()
        self._idle.set()

    async def current(self) -> StateT:
        """The state once the commit being stored (if any) is done: what a reader may answer, never older
        than what the commit's derived rows (already readable) say."""
        await self._idle.wait()
        if self.lost:
            raise _moved(self.id.shard)
        return self.loaded

    @property
    def loaded(self) -> StateT:
        """The product's state (the shard is acquired)."""
        if self.state is None:
            raise unavailable(Reason.SHARD_MOVED, f"shard {self.id.shard} is not loaded; retry")
        return self.state

    # Lease and epoch

    async def acquire(
        self, previous: ShardActor[StateT, StageT, RecordT, OutboxT, MessageT] | None = None
    ) -> list[tuple[int, RecordT]]:
        """Take ownership (a new epoch) and load the shard; returns the records not yet materialized.
        `previous`: this process's earlier owner of the shard (lost after a failed commit, say): when
        nothing was committed since its last commit, its state is the stored one and is taken over
        instead of being read again."""
        for _ in range(limits.shard_acquire_attempts_max):
            static = await self.backend.read_static(self.partition, Consistency.SERIAL)
            epoch = _int_or_zero(static, "epoch")
            last_seq = _int_or_zero(static, "last_seq")
            materialized_seq = _int_or_zero(static, "materialized_seq")
            holder = static["owner"] if static is not None else None
            held_until_ms = _int_or_zero(static, "lease_until_ms")
            now_ms = self._clock.wall_ms()
            if isinstance(holder, str) and holder != self._node.tag and held_until_ms > now_ms:
                raise ShardElsewhere(self.id.shard, holder, held_until_ms)
            lease_until_ms = now_ms + self._settings.shard_lease_ms
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
                if previous is not None and previous.stored_as(epoch, last_seq):
                    return self._take_over(previous)
                return await self._load()
        raise unavailable(Reason.STORAGE_UNAVAILABLE, f"shard {self.id.shard} is contended; retry")

    def stored_as(self, epoch: int, last_seq: int) -> bool:
        """Whether this owner's state is what storage holds at (`epoch`, `last_seq`): the epoch is still
        its own, nothing was committed since its last commit (which it applied to its state; if it could
        not write its journal, it hands its records over), and no command failed in its hands."""
        return self.state is not None and not self.failed and (self.epoch, self.last_seq) == (epoch, last_seq)

    def _take_over(
        self, previous: ShardActor[StateT, StageT, RecordT, OutboxT, MessageT]
    ) -> list[tuple[int, RecordT]]:
        """Carry on from the earlier owner's state; the records of a commit whose journal it could not
        write are materialized again (the runtime does it before the shard serves)."""
        self.state, self.outbox, self.markers = previous.state, previous.outbox, previous.markers
        self.materialized_seq = max(self.materialized_seq, previous.materialized_seq)
        log.debug("shard taken back", scope=self.id.scope, shard=self.id.shard, epoch=self.epoch)
        return previous.unmaterialized

    async def _load(self) -> list[tuple[int, RecordT]]:
        machine = self.machine
        rows = {kind: await self._rows(kind) for kind in machine.state_kinds}
        self.outbox = {
            r.as_text("row_key"): self._outbox_entries.decode(record_blob(r))
            for r in await self._rows(OUTBOX)
        }
        wal = await self._rows(WAL, after=wal_key(self.materialized_seq))
        records = [record for row in wal for record in self._wal.records(row, self.materialized_seq)]
        self.state = machine.load(self.id, rows, [record for _, record in records])
        # One line per scope says it opened (the product's); a shard only when it had work to recover.
        recovering = bool(wal or self.outbox)
        (log.info if recovering else log.debug)(
            "shard acquired, recovering" if recovering else "shard acquired",
            scope=self.id.scope,
            shard=self.id.shard,
            epoch=self.epoch,
            unmaterialized=len(records),
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
        while len(rows) < limits.shard_recovery_rows_max:
            page = await self.backend.read_page(query)
            rows += page.rows
            if page.next_after is None:
                return rows
            query = query.after(page.next_after)
        raise StorageError(f"shard {self.id.shard} holds more than shard_recovery_rows_max rows of {kind}")

    def serving(self) -> bool:
        """Whether this owner may answer: not fenced, and its lease has a quarter of its length left."""
        lease_ms = self._settings.shard_lease_ms
        return not self.lost and self._clock.wall_ms() + lease_ms // 4 < self.lease_until_ms

    def start(self) -> None:
        name = f"shard-{self.id.scope}-{self.id.shard}"
        self._task = asyncio.create_task(self._run(), name=name)
        self._upkeep = asyncio.create_task(self._tend(), name=f"{name}-upkeep")

    def pause_upkeep(self) -> None:
        """Stop renewing the lease and tending the shard (as a process paused past its lease would)."""
        if self._upkeep is not None:
            self._upkeep.cancel()

    async def stop(self, release: bool = False) -> None:
        """Stop the actor's tasks; callers still waiting, and any that submit later, get UNAVAILABLE.
        The settles waiting for a commit are committed first (for `shard_stop_timeout_s` at most), so
        that the next owner need not deliver their entries again to find them landed. With `release`,
        give the lease up so that another process need not wait for it to run out."""
        held = not self.lost
        if held and self._settling:
            waiting = [pending.future for pending in self._settling]
            self._settle_waiting()
            await asyncio.wait(waiting, timeout=limits.shard_stop_timeout_s)
        self.lost = True
        tasks = [t for t in (self._task, self._upkeep) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=limits.shard_stop_timeout_s)
        if release and held:
            released = Batch(
                self.partition,
                static_values={"lease_until_ms": 0},
                conditions=(StaticMatches({"epoch": self.epoch}),),
            )
            try:
                await self.backend.write(released)
            except StorageError as error:
                log.warning("shard lease not released", shard=self.id.shard, error=str(error))

    async def renew(self) -> None:
        """Extend the lease, if the shard is still this owner's (else it is lost)."""
        lease_until_ms = self._clock.wall_ms() + self._settings.shard_lease_ms
        renewal = Batch(
            self.partition,
            static_values={"lease_until_ms": lease_until_ms},
            conditions=(StaticMatches({"epoch": self.epoch}),),
        )
        if (await self.backend.write(renewal)).applied:
            self.lease_until_ms = max(self.lease_until_ms, lease_until_ms)
        else:
            log.warning("shard fenced", scope=self.id.scope, shard=self.id.shard, epoch=self.epoch)
            self.lost = True

    # Upkeep

    async def _tend(self) -> None:
        """Every tick: renew the lease when a third of it is used. About once a second, and every tick
        while messages keep arriving: apply what other processes left in the inbox. About once a second:
        submit what falls due (the product's upkeep) and deliver again what the outbox still owes."""
        lease_ms = self._settings.shard_lease_ms
        swept_s = self._clock.monotonic_s()
        inbox_busy = False
        while not self.lost:
            await self._clock.sleep(self._tick_s)
            self._settle_waiting()
            try:
                if self.lease_until_ms - self._clock.wall_ms() < lease_ms * 2 // 3:
                    await self.renew()
                due = self._clock.monotonic_s() - swept_s >= limits.shard_upkeep_interval_s
                if due or inbox_busy:
                    inbox_busy = await self._apply_inbox()
                if due:
                    swept_s = self._clock.monotonic_s()
                    await self._sweep()
            except (ApiError, StorageError) as error:
                log.warning("shard upkeep failed", shard=self.id.shard, error=str(error))

    async def _apply_inbox(self) -> bool:
        """Apply the messages other processes left here; whether there were any. The marker is read
        first, as a delivery does: a message an earlier owner applied only has its inbox row dropped."""
        query = RowQuery(
            self.partition,
            lower=Bound((INBOX,), inclusive=True),
            upper=Bound((INBOX,), inclusive=True),
            limit=limits.shard_inbox_rows_max,
        )
        rows = (await self.backend.read_page(query)).rows
        for row in rows:
            message = self._messages.decode(record_blob(row))
            landed = await self.backend.read_row(
                self.partition, (self.machine.marker_kind, message.marker_key)
            )
            await self._queued(Receive(message, from_inbox=True, landed=landed is not None))
        return bool(rows)

    async def _sweep(self) -> None:
        for command in self.machine.upkeep(self.loaded, self.id, self._clock.wall_ms()):
            try:
                await self.submit(command)
            except ApiError as error:
                log.warning(
                    "shard upkeep step refused", shard=self.id.shard, reason=error.reason, error=error.message
                )
        self._listener.stalled(self)

    def leave_inbox(self, message: MessageT, partition: PartitionRef) -> Batch:
        """The write that leaves `message` in the inbox of another shard (`partition`), for its owner."""
        put = Put((INBOX, message.marker_key), {"record": self._encoder.encode(message)})
        return Batch(partition, (put,))

    # Commands

    async def submit(self, command: Command[StageT, T], *, guards: Sequence[Batch] = ()) -> T:
        """Queue a command and wait for its committed result (or its refusal). `guards` (only where the
        backend has `guarded_writes`): conditional batches of other partitions (request ids' claims)
        stored in the transaction of the group that commits the command; when the conditions of one do
        not hold, the command is left out of the group, which commits without it, and GuardFailed is
        raised here."""
        ensure(not guards or self.backend.guarded_writes, "guards need a backend that writes them")
        answer: T = await self._queued(command, tuple(guards))
        return answer

    async def receive(self, message: MessageT) -> None:
        await self._queued(Receive(message))

    async def settle(self, key: str) -> None:
        """Drop the outbox entry `key`, every message of which landed (who waited for them was woken
        then): in the shard's next group commit, with the commands queued then, or, when none come,
        in a commit of its own at the next upkeep tick. Settling is bookkeeping (reads find the entry's
        items done from its messages' markers), so it need not cost a commit of its own under load."""
        if self.lost:
            raise _moved(self.id.shard)
        entry = self.outbox.get(key)
        items = len(self.machine.items(key, entry)) if entry is not None else 0
        if len(self._settling) >= limits.shard_settles_waiting_max:
            await self._queued(Settle(key, items))
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settling.append(_Pending(Settle(key, items), future))
        await future

    def _settle_waiting(self) -> None:
        """Queue the settles still waiting for a commit to ride (upkeep: no command came meanwhile)."""
        while self._settling and not self._queue.full():
            self._queue.put_nowait(self._settling.popleft())

    async def _queued(self, command: object, guards: tuple[Batch, ...] = ()) -> typing.Any:
        if self.lost:
            raise _moved(self.id.shard)
        future: asyncio.Future[typing.Any] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(command, future, guards))
        except asyncio.QueueFull:
            raise resource_exhausted(
                Reason.CONCURRENCY_LIMITED, f"shard {self.id.shard} is saturated", 50
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
                    log.exception("shard failed", scope=self.id.scope, shard=self.id.shard)
                    self.lost = self.failed = True
                    for pending in group:
                        _settle(pending.future, internal(f"shard {self.id.shard} failed"))
        finally:
            for pending in group:
                _settle(pending.future, _moved(self.id.shard))
            while not self._queue.empty():
                _settle(self._queue.get_nowait().future, _moved(self.id.shard))
            while self._settling:
                _settle(self._settling.popleft().future, _moved(self.id.shard))

    def _next_group(self, first: _Pending) -> list[_Pending]:
        """`first` and the commands queued behind it, then the settles waiting, within the group's
        bounds."""
        group = [first]
        rows = first.command.rows_max()
        while self._has_room(group, rows) and not self._queue.empty():
            group.append(self._queue.get_nowait())
            rows += group[-1].command.rows_max()
        while self._has_room(group, rows) and self._settling:
            group.append(self._settling.popleft())
            rows += group[-1].command.rows_max()
        return group

    def _has_room(self, group: list[_Pending], rows: int) -> bool:
        return len(group) < self._settings.group_commit_max and rows < limits.shard_batch_rows_max

    async def _commit(self, group: list[_Pending]) -> None:
        """Commit a group; a command whose guard failed is answered GuardFailed and the group is applied
        again without it (each round leaves one out at least, so at most as many rounds as commands)."""
        for _ in range(len(group)):
            group = await self._commit_round(group)
            if not group:
                return
        unreachable("a group commit left out no command whose guard failed")

    async def _commit_round(self, group: list[_Pending]) -> list[_Pending]:
        """Apply the group and store it; the commands to apply again without those whose guards failed
        (none when it committed, or failed)."""
        try:
            fetched = await self._fetch(group)
        except StorageError as error:
            for pending in group:
                _settle(pending.future, refusal_of(error))
            return []
        stage = self.machine.stage(self.loaded, self._clock.wall_ms(), fetched)
        done = _Group()
        outcomes: list[tuple[_Pending, object]] = []
        for pending in group:
            outcomes.append((pending, self._apply(stage, pending.command, done)))
        guarded = [pending for pending in group if pending.guards]
        if guarded and any(key in self.outbox for key in stage.owed):
            # A command owed an entry this owner holds already: it repeated a change an earlier owner
            # committed (a retry, whose guard would fail), which this owner does not remember. The
            # guarded commands go the claim-first way; the group runs again without them.
            return _left_out(group, guarded)
        records = [(self.last_seq + i + 1, r) for i, r in enumerate(stage.records)]
        puts, deletes = self.machine.rows(stage)
        changed = records or stage.owed or stage.rows or done.markers or done.inbox_done or done.settled
        self._idle.clear()
        try:
            failed: tuple[int, ...] = ()
            # A guard is checked even when the commands changed nothing (a retry answered from memory).
            if changed or puts or deletes or guarded:
                guards = [guard for pending in guarded for guard in pending.guards]
                failed = await self._store(stage, records, done, puts, deletes, guards=guards)
        except (StorageError, ApiError) as error:
            self.lost = True
            failure = refusal_of(error)
            for pending, _ in outcomes:
                _settle(pending.future, failure)
            return []
        finally:
            self._idle.set()
        if failed:
            of_guard = [pending for pending in guarded for _ in pending.guards]
            return _left_out(group, [of_guard[index] for index in failed])
        if records:
            self.materialized_seq = records[-1][0]
        self._listener.committed(self, list(stage.owed), done.settled)
        for pending, outcome in outcomes:
            _settle(pending.future, outcome)
        return []

    async def _fetch(self, group: list[_Pending]) -> dict[Key, Row]:
        """The rows the group's commands need that the state keeps in storage only (`fetches`)."""
        wanted: dict[Key, None] = {}
        for pending in group:
            if not isinstance(pending.command, Receive | Settle):
                wanted.update(dict.fromkeys(self.machine.fetches(self.loaded, pending.command)))
        fetched: dict[Key, Row] = {}
        for key in wanted:
            row = await self.backend.read_row(self.partition, key)
            if row is not None:
                fetched[key] = row
        return fetched

    def _apply(self, stage: StageT, command: object, done: _Group) -> object:
        """A command's answer (its result, or the error its caller gets)."""
        if isinstance(command, Receive):
            return self._receive(stage, command, done)
        if isinstance(command, Settle):
            if command.key in self.outbox and command.key not in done.settled:
                self.machine.settled(stage, command.key, self.outbox[command.key])
                done.settled.append(command.key)
            return None
        typed = typing.cast(Command[StageT, object], command)
        try:
            return typed.apply(stage)
        except ApiError as error:
            return self.machine.refused(stage, typed, error)

    def _receive(self, stage: StageT, command: Receive[MessageT], done: _Group) -> object:
        key = command.message.marker_key
        if command.from_inbox:
            done.inbox_done.append(key)
        if command.landed or key in self.markers or key in done.markers:
            return None
        try:
            self.machine.receive(stage, command.message)
        except ApiError as error:
            return error
        done.markers[key] = None
        return None

    async def _store(
        self,
        stage: StageT,
        records: list[tuple[int, RecordT]],
        done: _Group,
        puts: list[Put],
        deletes: list[Delete],
        *,
        guards: list[Batch],
    ) -> tuple[int, ...]:
        """Store the group (`guards` in its transaction); the indexes of the guards that failed, when
        nothing was stored because of them."""
        machine, encode, ttl_s = self.machine, self._encoder.encode, self._settings.wal_ttl_s
        if records:
            puts.append(self._wal.put(records, ttl_s))
        puts += [Put((OUTBOX, key), {"record": encode(entry)}) for key, entry in stage.owed.items()]
        puts += [Put((row.kind, row.key), {"record": row.record}, ttl_s=row.ttl_s) for row in stage.rows]
        puts += [
            Put((machine.marker_kind, key), {"record": EMPTY_RECORD}, ttl_s=ttl_s) for key in done.markers
        ]
        deletes += [Delete((INBOX, key)) for key in done.inbox_done]
        deletes += [Delete((OUTBOX, key)) for key in done.settled]
        new_last = self.last_seq + len(records)
        lease_until_ms = stage.now_ms + self._settings.shard_lease_ms
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
        journal = machine.journal(self.id, records)
        try:
            outcome = await self.backend.write_after(batch, journal, guards)
        except FollowingWriteError:
            # The commit is stored, its journal is not (all of it): the state takes the commit, and the
            # records are materialized when the shard is taken back; the callers retry meanwhile.
            self._stored(stage, done, new_last, lease_until_ms)
            self.unmaterialized = records
            raise
        if outcome.failed_guards:
            return outcome.failed_guards
        if not outcome.applied:
            log.warning("shard fenced", scope=self.id.scope, shard=self.id.shard, epoch=self.epoch)
            raise _moved(self.id.shard)
        self._stored(stage, done, new_last, lease_until_ms)
        return ()

    def _stored(self, stage: StageT, done: _Group, new_last: int, lease_until_ms: int) -> None:
        """Fold a stored commit into the state."""
        self.last_seq = new_last
        self.lease_until_ms = max(self.lease_until_ms, lease_until_ms)
        self.machine.absorb(self.loaded, stage)
        self.outbox.update(stage.owed)
        for key in done.settled:
            self.outbox.pop(key, None)
        keep_recent(self.markers, done.markers, limits.shard_recent_markers_max)


class GuardFailed(Exception):
    """`ShardActor.submit`: the command's guard did not hold (its request id was claimed before), so it
    was not applied; the caller decides it as it would a claim that was not fresh."""


def _left_out(group: list[_Pending], refused: list[_Pending]) -> list[_Pending]:
    """Answer the `refused` commands GuardFailed; the rest of the group, to apply again."""
    for pending in refused:
        _settle(pending.future, GuardFailed())  # once: a settled future is left as it is
    left = {id(pending) for pending in refused}
    return [pending for pending in group if id(pending) not in left]


def _settle(future: asyncio.Future[typing.Any], outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _moved(shard: int) -> ApiError:
    return unavailable(
        Reason.STORAGE_UNAVAILABLE,
        f"shard {shard} changed owner or lost storage; retry with the same request_id",
    )


def _int_or_zero(row: Row | None, column: str) -> int:
    value = row[column] if row is not None else None
    return value if isinstance(value, int) else 0
