"""Cross-shard delivery: what a commit owes other shards reaches them exactly once.

A commit stores its outbox entry in the sender's partition in the same batch as the change that owes
it, so nothing owed is ever lost, only in flight. Each message of the entry is then applied by its
shard's owner together with an apply-once marker (the marker kind of the machine), which makes a
repeated delivery a no-op; a shard another process holds gets it in its `inbox` rows, and the delivery
waits for the marker. Once every message landed, the sender settles the entry (drops it, the machine
records it). Deliveries are retried with backoff; the sender's upkeep starts every delivery its outbox
still owes again about once a second, and at once when it acquires the shard after a crash.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable

import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, unavailable
from jubao_server.shards.actor import ShardActor
from jubao_server.shards.node import ShardElsewhere
from jubao_server.storage.contract import StorageError

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
        # Who waits for an entry to settle: True once it did, False when its delivery gave up.
        self._completions: dict[str, asyncio.Future[bool]] = {}
        self._background: dict[asyncio.Task[None], None] = {}

    def expect(self, key: str) -> None:
        """Callers may now wait for the entry `key` to settle."""
        self._completions.setdefault(key, asyncio.get_running_loop().create_future())

    async def wait(self, key: str, timeout_s: float) -> bool | None:
        """Whether the entry `key` settled (None: nobody in this process delivers it, or not yet)."""
        done = self._completions.get(key)
        if done is None:
            return None
        await asyncio.wait([done], timeout=timeout_s)
        return done.result() if done.done() else None

    def stop_waiting(self, key: str, settled: bool) -> None:
        """Wake (and forget) the callers waiting for the entry; `settled` tells them whether it did."""
        done = self._completions.pop(key, None)
        if done is not None and not done.done():
            done.set_result(settled)

    def start(self, sender: AnyActor, key: str, entry: object) -> None:
        """Deliver an entry's messages, unless a task of this process is delivering them already; callers
        may wait for it to settle (a delivery restarted after a crash included)."""
        if key not in self._delivering:
            self._delivering[key] = None
            self.expect(key)
            self._spawn(self._deliver(sender, key, entry))

    def owed(self, sender: AnyActor) -> None:
        """Deliver again everything the sender's outbox still owes."""
        for key, entry in list(sender.outbox.items()):
            self.start(sender, key, entry)

    async def stop(self) -> None:
        if self._background:
            await asyncio.wait(list(self._background), timeout=limits.delivery_wait_s)

    async def _deliver(self, sender: AnyActor, key: str, entry: object) -> None:
        """Apply each message once, then settle the entry. A failed attempt (a shard that moved, storage
        trouble) is retried with backoff. The marker is read once the receiving shard is owned: a
        message an earlier owner applied is found there, one this owner applied it remembers, so a
        delivery that runs twice (the sender acquired again meanwhile) applies once."""
        scope = sender.id.scope
        try:
            for attempt in range(limits.delivery_attempts_max):
                try:
                    await self._deliver_all(sender, key, entry)
                    owner = await self._owners.actor(scope, sender.id.shard)
                    await owner.settle(key)
                    return
                except (ApiError, StorageError, ShardElsewhere) as error:
                    log.warning("delivery failed; retrying", key=key, attempt=attempt, error=str(error))
                    await self._clock.sleep(limits.delivery_backoff_s * 2**attempt)
            log.error("delivery gave up; the sender delivers again", key=key)
            self.stop_waiting(key, settled=False)
        finally:
            self._delivering.pop(key, None)

    async def _deliver_all(self, sender: AnyActor, key: str, entry: object) -> None:
        scope, machine, backend = sender.id.scope, sender.machine, sender.backend
        left: list[typing.Any] = []
        for message in machine.messages(key, entry):
            try:
                receiver = await self._owners.actor(scope, message.shard)
            except ShardElsewhere:
                await backend.write(
                    sender.leave_inbox(message, machine.shard_table.partition(scope, message.shard))
                )
                left.append(message)
                continue
            if not await self._landed(sender, message):
                await receiver.receive(message)
        for _ in range(limits.delivery_inbox_polls_max):
            if not left:
                return
            await self._clock.sleep(self._inbox_poll_s)
            left = [message for message in left if not await self._landed(sender, message)]
        raise unavailable(Reason.DELIVERY_PENDING, f"messages of {key} wait in another shard's inbox")

    async def _landed(self, sender: AnyActor, message: typing.Any) -> bool:
        machine = sender.machine
        partition = machine.shard_table.partition(sender.id.scope, message.shard)
        return await sender.backend.read_row(partition, (machine.marker_kind, message.marker_key)) is not None

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
