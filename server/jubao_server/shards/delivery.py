"""Cross-shard delivery: what a commit owes other shards reaches them exactly once.

A command stores its outbox entry in the sender's partition in the same batch as the change that owes
it, so nothing owed is ever lost, only in flight. An entry holds everything the command owes (a batch's
transfers, say) as at most one message per receiving shard, delivered all at once. Each message is
applied by its shard's owner in one command together with one apply-once marker (the marker kind of the
machine), which makes a repeated delivery a no-op; a shard another process holds gets it in its `inbox`
rows, and the delivery waits for the marker. Once every message landed, who waits for the entry, by its
key or an item, wakes (the markers are stored: reads find its items done, `payments.journal`), and the
sender settles the entry (drops it, the machine records each of its items) with its next group commit
(`ShardActor.settle`). Deliveries are retried with backoff; the sender's upkeep starts every delivery its
outbox still owes again about once a second, and at once when it acquires the shard after a crash.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable, Sequence

import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, unavailable
from jubao_server.shards.actor import ShardActor
from jubao_server.shards.node import ShardElsewhere
from jubao_server.shards.stage import Message
from jubao_server.storage.contract import StorageBackend, StorageError, Table

log = structlog.get_logger("jubao.shards")

AnyActor = ShardActor[typing.Any, typing.Any, typing.Any, typing.Any, typing.Any]


class Owners(typing.Protocol):
    async def actor(self, scope: str, shard: int, wait: bool = True) -> AnyActor: ...


class Deliveries:
    def __init__(self, owners: Owners, clock: Clock, inbox_poll_ms: int) -> None:
        self._owners = owners
        self._clock = clock
        self._inbox_poll_s = inbox_poll_ms / 1000
        # Outbox entries a task of this process is delivering now.
        self._delivering: dict[str, None] = {}
        # Who waits for an entry's messages to land: True once they did, False when its delivery gave up.
        self._completions: dict[str, asyncio.Future[bool]] = {}
        # While an entry is expected: its items (`StateMachine.items`), and the entry of each item.
        self._items: dict[str, Sequence[str]] = {}
        self._entry_of: dict[str, str] = {}
        self._background: dict[asyncio.Task[None], None] = {}

    def _expect(self, key: str, items: Sequence[str]) -> None:
        """Callers may now wait for the entry `key` to land, by its key or by one of its `items`."""
        if key in self._completions:
            return
        self._completions[key] = asyncio.get_running_loop().create_future()
        self._items[key] = items
        for item in items:
            self._entry_of[item] = key

    async def landed(self, names: Sequence[str], timeout_s: float) -> list[bool | None]:
        """For each name (an entry's key, or one of its items): whether every message of its entry
        landed (None: nobody in this process delivers it, or not yet). The entries are waited for
        together, once."""
        keys = [self._entry_of.get(name, name) for name in names]
        waited = {key: done for key in keys if (done := self._completions.get(key)) is not None}
        if waited:
            await asyncio.wait(list(waited.values()), timeout=timeout_s)
        return [_outcome(waited.get(key)) for key in keys]

    def in_flight(self, name: str) -> bool:
        """Whether a delivery of this process still delivers the entry of `name` (its key or one of its
        items): its messages are on their way, and they have neither all landed nor has it given up."""
        done = self._completions.get(self._entry_of.get(name, name))
        return done is not None and not done.done()

    def stop_waiting(self, key: str, landed: bool) -> None:
        """Wake (and forget) the callers waiting for the entry; `landed` tells them whether its messages
        did."""
        for item in self._items.pop(key, ()):
            self._entry_of.pop(item, None)
        done = self._completions.pop(key, None)
        if done is not None and not done.done():
            done.set_result(landed)

    def start(self, sender: AnyActor, key: str, entry: object, *, fresh: bool = False) -> None:
        """Deliver an entry's messages, unless a task of this process is delivering them already; callers
        may wait for them to land (a delivery restarted after a crash included; one whose messages
        landed and whose entry waits to settle wakes them when it settles). `fresh`: the sender has
        just committed the entry (see `_deliver`)."""
        self._expect(key, sender.machine.items(key, entry))
        if key not in self._delivering:
            self._delivering[key] = None
            self._spawn(self._deliver(sender, key, entry, fresh))

    def owed(self, sender: AnyActor) -> None:
        """Deliver again everything the sender's outbox still owes."""
        for key, entry in list(sender.outbox.items()):
            self.start(sender, key, entry)

    async def stop(self) -> None:
        if self._background:
            await asyncio.wait(list(self._background), timeout=limits.delivery_wait_s)

    async def _deliver(self, sender: AnyActor, key: str, entry: object, fresh: bool) -> None:
        """Apply each message once, wake who waits, then settle the entry. A failed attempt (a shard that
        moved, storage trouble) is retried with backoff. The marker is read once the receiving shard is
        owned: a message an earlier owner applied is found there, one this owner applied it remembers,
        so a delivery that runs twice (the sender acquired again meanwhile) applies once.

        The first attempt of a `fresh` entry reads no marker while its sender still serves: the entry
        did not exist before the sender's commit, and the commit extended the sender's lease, so no
        other process can have acquired the sender and delivered it, and this process delivers it
        once at a time (`_delivering`): nothing can have landed yet."""
        scope = sender.id.scope
        try:
            for attempt in range(limits.delivery_attempts_max):
                try:
                    await self._deliver_all(sender, key, entry, fresh and attempt == 0)
                    # Landed now, or before (a delivery that ran twice): who waits wakes either way, and
                    # does not wait for the settling commit too.
                    self.stop_waiting(key, landed=True)
                    owner = await self._owners.actor(scope, sender.id.shard)
                    await owner.settle(key)
                    # And who came to wait while the entry waited to settle (`start` meanwhile).
                    self.stop_waiting(key, landed=True)
                    return
                except (ApiError, StorageError, ShardElsewhere) as error:
                    log.warning("delivery failed; retrying", key=key, attempt=attempt, error=str(error))
                    await self._clock.sleep(limits.delivery_backoff_s * 2**attempt)
            log.error("delivery gave up; the sender delivers again", key=key)
            self.stop_waiting(key, landed=False)
        finally:
            self._delivering.pop(key, None)

    async def _deliver_all(self, sender: AnyActor, key: str, entry: object, unseen: bool) -> None:
        """Every message of the entry at once (one per receiving shard); those left in the inbox of a
        shard another process holds are waited for, polling their markers. `unseen`: none of them can
        have landed (see `_deliver`)."""
        messages = sender.machine.messages(key, entry)
        outcomes: list[bool | BaseException]
        if len(messages) == 1:
            # Most entries owe one shard: awaited here, its message costs no task of its own (with a task
            # per message, the ledger bench's unary transfers took 8% more CPU, and their credits came a
            # turn of the event loop later).
            outcomes = [await self._deliver_one(sender, messages[0], unseen)]
        else:
            outcomes = await asyncio.gather(
                *(self._deliver_one(sender, message, unseen) for message in messages), return_exceptions=True
            )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        left = [message for message, applied in zip(messages, outcomes, strict=True) if not applied]
        for _ in range(limits.delivery_inbox_polls_max):
            if not left:
                return
            await self._clock.sleep(self._inbox_poll_s)
            left = [message for message in left if not await self._landed(sender, message)]
        raise unavailable(Reason.DELIVERY_PENDING, f"messages of {key} wait in another shard's inbox")

    async def _deliver_one(self, sender: AnyActor, message: typing.Any, unseen: bool) -> bool:
        """Apply a message in its shard, unless it landed already (its marker is not read when it is
        `unseen` and the sender still serves); False when it was left in the inbox of a shard another
        process holds."""
        scope, machine = sender.id.scope, sender.machine
        try:
            receiver = await self._owners.actor(scope, message.shard)
        except ShardElsewhere:
            partition = machine.shard_table.partition(scope, message.shard)
            await sender.backend.write(sender.leave_inbox(message, partition))
            return False
        if (unseen and sender.serving()) or not await self._landed(sender, message):
            await receiver.receive(message)
        return True

    async def _landed(self, sender: AnyActor, message: Message) -> bool:
        table, kind = sender.machine.shard_table, sender.machine.marker_kind
        return await landed(sender.backend, table, kind, sender.id.scope, message)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background[task] = None
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "delivery failed; the sender delivers again on its next acquire", exc_info=task.exception()
            )


async def landed(
    backend: StorageBackend, shard_table: Table, marker_kind: str, scope: str, message: Message
) -> bool:
    """Whether a message landed: its shard (a partition of `shard_table`) holds its apply-once marker
    (`marker_kind`), written in the commit that applied it."""
    partition = shard_table.partition(scope, message.shard)
    return await backend.read_row(partition, (marker_kind, message.marker_key)) is not None


def _outcome(done: asyncio.Future[bool] | None) -> bool | None:
    return done.result() if done is not None and done.done() else None
