"""Routing to the shards of one product: a scope's shard count, the registry of shards this process
owns, acquisition (waiting out a lease held by a process that takes no forwarded calls), commit signals,
and the cross-shard deliveries of every owned shard (`delivery.py`)."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Mapping

import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, unavailable
from jubao_server.invariants import ensure
from jubao_server.shards.actor import ShardActor
from jubao_server.shards.delivery import Deliveries
from jubao_server.shards.machine import ShardSettings, StateMachine, StateT
from jubao_server.shards.node import Node, ShardElsewhere
from jubao_server.shards.stage import MessageT, OutboxT, RecordT, ShardId, StageT, shard_of
from jubao_server.storage.contract import Batch, Put, RowAbsent, StorageBackend, StorageError

log = structlog.get_logger("jubao.shards")


class ShardRuntime(typing.Generic[StateT, StageT, RecordT, OutboxT, MessageT]):
    def __init__(
        self,
        backend: StorageBackend,
        machine: StateMachine[StateT, StageT, RecordT, OutboxT, MessageT],
        settings: ShardSettings,
        clock: Clock,
        node: Node,
    ) -> None:
        self.backend = backend
        self.machine = machine
        self.clock = clock
        self.node = node
        self._settings = settings
        self._stopping = False
        self._actors: dict[tuple[str, int], ShardActor[StateT, StageT, RecordT, OutboxT, MessageT]] = {}
        # Shards another process holds, until its lease as last seen runs out.
        self._elsewhere: dict[tuple[str, int], ShardElsewhere] = {}
        self._starting: dict[tuple[str, int], asyncio.Lock] = {}
        self._shard_counts: dict[str, int] = {}
        # When this process met each scope (wall ms), and its tasks taking the scope's home shards.
        self._met_ms: dict[str, int] = {}
        self._taking_home: set[asyncio.Task[None]] = set()
        # Set (and dropped) on a scope's next commit in this process: wakes who watches it.
        self._commit_signals: dict[str, asyncio.Event] = {}
        self.deliveries = Deliveries(self, clock, settings.inbox_poll_ms)

    @property
    def actors(self) -> Mapping[tuple[str, int], ShardActor[StateT, StageT, RecordT, OutboxT, MessageT]]:
        """The shards this process owns (or owned and has not replaced yet), by (scope, shard)."""
        return self._actors

    async def stop(self) -> None:
        """Stop every shard and give its lease up, so that another process takes over at once."""
        self._stopping = True
        for task in list(self._taking_home):
            task.cancel()
        for actor in list(self._actors.values()):
            await actor.stop(release=True)
        await self.deliveries.stop()

    def commit_signal(self, scope: str) -> asyncio.Event:
        """An event set on the scope's next commit in this process."""
        return self._commit_signals.setdefault(scope, asyncio.Event())

    async def shard_count(self, scope: str) -> int:
        """The scope's shard count: the setting when the scope is first used, recorded then, so that it
        cannot change silently afterwards."""
        count = self._shard_counts.get(scope)
        if count is not None:
            return count
        partition = self.machine.config_table.partition(scope)
        wanted = self._settings.shard_count
        put = Put((), {"shard_count": wanted, "create_time_ms": self.clock.wall_ms()})
        outcome = await self.backend.write(Batch(partition, (put,), conditions=(RowAbsent(()),)))
        current = outcome.current_rows.get(())
        count = current.as_int("shard_count") if not outcome.applied and current is not None else wanted
        if count != wanted:
            log.warning("scope keeps its shard count", scope=scope, shard_count=count)
        self._shard_counts[scope] = count
        self._meet(scope, count)
        return count

    def _meet(self, scope: str, count: int) -> None:
        """A scope met for the first time: with members, take its home shards now, in the background,
        so that they are held where they belong before calls and credits need them."""
        self._met_ms[scope] = self.clock.wall_ms()
        if len(self.node.members) < 2 or self._stopping:
            return
        home = [shard for shard in range(count) if self.node.home(shard) == self.node.address]
        task = asyncio.create_task(self._take_home(scope, home))
        self._taking_home.add(task)
        task.add_done_callback(self._taking_home.discard)

    async def _take_home(self, scope: str, shards: list[int]) -> None:
        for shard in shards:
            try:
                await self.actor(scope, shard, wait=False)
            except (ApiError, StorageError, ShardElsewhere) as error:
                log.info("home shard not taken", scope=scope, shard=shard, error=str(error))

    def _away_from_home(self, scope: str, shard: int) -> ShardElsewhere | None:
        """While the scope is new to this process (`shard_home_grace_ms`), a shard nobody holds whose
        home is another member is left to it: calls are forwarded there, readers read storage, credits
        wait in its inbox. Past that (the member is down, or never met the scope) this process takes it
        like any other."""
        home = self.node.home(shard)
        met_ms = self._met_ms.get(scope, 0)
        if home == self.node.address or self.clock.wall_ms() - met_ms > limits.shard_home_grace_ms:
            return None
        return ShardElsewhere(shard, f"home@{home}", met_ms + limits.shard_home_grace_ms)

    async def actor_of(self, scope: str, key: str) -> ShardActor[StateT, StageT, RecordT, OutboxT, MessageT]:
        return await self.actor(scope, shard_of(key, await self.shard_count(scope)))

    async def actor(
        self, scope: str, shard: int, wait: bool = True
    ) -> ShardActor[StateT, StageT, RecordT, OutboxT, MessageT]:
        """This process's owner of the shard, acquired if need be. Raises ShardElsewhere while another
        process holds its lease, unless that process takes no forwarded calls and `wait` is set: then
        the lease is waited out (a reader does not wait: it reads what the holder stored)."""
        key = (scope, shard)
        actor = self._actors.get(key)
        if actor is not None and actor.serving():
            return actor
        elsewhere = self._elsewhere.get(key)
        if (
            elsewhere is not None
            and elsewhere.lease_until_ms > self.clock.wall_ms()
            and (elsewhere.address or not wait)
        ):
            raise elsewhere
        if actor is None and (away := self._away_from_home(scope, shard)) is not None:
            raise away
        async with self._starting.setdefault(key, asyncio.Lock()):
            actor = self._actors.get(key)
            if actor is not None and not actor.lost and not actor.serving():
                await actor.renew()
            if actor is None or not actor.serving():
                if actor is not None:
                    await actor.stop()
                actor = await self._acquire(scope, shard, wait, actor)
        return actor

    async def _acquire(
        self,
        scope: str,
        shard: int,
        wait: bool,
        previous: ShardActor[StateT, StageT, RecordT, OutboxT, MessageT] | None,
    ) -> ShardActor[StateT, StageT, RecordT, OutboxT, MessageT]:
        """Take the shard over; a lease held elsewhere is waited out at most `shard_lease_waits_max`
        times. The records a crash left unmaterialized are materialized before the shard serves.
        `previous` (this process's earlier owner, stopped) hands its state over when it is still the
        stored one (`ShardActor.acquire`)."""
        ensure(len(self._actors) < limits.shard_actors_max, "more shards than shard_actors_max")
        if self._stopping:
            raise unavailable(Reason.DRAINING, "this server is stopping; retry on another server")
        shard_id = ShardId(scope, shard, await self.shard_count(scope))
        actor = ShardActor(
            self.backend,
            self.machine,
            shard_id,
            settings=self._settings,
            listener=self,
            node=self.node,
            clock=self.clock,
        )
        for _ in range(limits.shard_lease_waits_max):
            try:
                recovered = await actor.acquire(previous)
                break
            except ShardElsewhere as elsewhere:
                if elsewhere.address or not wait:
                    self._elsewhere[(scope, shard)] = elsewhere
                    raise
                await self.clock.sleep(max(0, elsewhere.lease_until_ms - self.clock.wall_ms()) / 1000)
        else:
            raise unavailable(Reason.SHARD_MOVED, f"shard {shard} is held by another process; retry")
        self._elsewhere.pop((scope, shard), None)
        await self.backend.write_following(self.machine.journal(shard_id, recovered))
        self._actors[(scope, shard)] = actor
        actor.start()
        self.stalled(actor)
        return actor

    # The shards' CommitListener

    def committed(
        self,
        actor: ShardActor[typing.Any, typing.Any, typing.Any, typing.Any, typing.Any],
        owed: typing.Sequence[str],
        settled: typing.Sequence[str],
    ) -> None:
        signal = self._commit_signals.pop(actor.id.scope, None)
        if signal is not None:
            signal.set()
        for key in settled:  # a settled entry's messages all landed
            self.deliveries.stop_waiting(key, landed=True)
        for key in owed:
            self.deliveries.start(actor, key, actor.outbox[key], fresh=True)

    def stalled(self, actor: ShardActor[typing.Any, typing.Any, typing.Any, typing.Any, typing.Any]) -> None:
        self.deliveries.owed(actor)
