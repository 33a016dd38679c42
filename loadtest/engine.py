"""The load engine: worker processes (one per core by default), each one SDK `AsyncClient`, driving a
scenario's workload open loop (on the profile's schedule) or closed loop (callers that send again as soon
as they are answered), and the parent that merges what they measured.

Open loop: each worker sends its share of the arrivals when they are due and measures latency from that
due time, so a slow server cannot hide its queueing (no coordinated omission). A due request that finds
`in_flight_max` of the worker's requests in flight is not sent: it counts as an error at its due time.
A request whose outcome is unknown (a timeout, UNAVAILABLE) counts as an error where it happened and is
then sent again with the same request id until it resolves, so the tally knows what the ledger holds.

Every second each worker hands its counts and latency histogram to the parent through a queue; the parent
merges them (`Series`) and shows a line per second while the load runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.synchronize import Barrier
from multiprocessing.synchronize import Event as EventType
from types import TracebackType
from typing import Final, Self

from jubao.client import AsyncClient, ClientConfig, JubaoError
from jubao.meta.v1 import meta_pb2
from jubao_server.platform.collector import HeapFreezer

from loadtest import bounds
from loadtest.accounts import AccountNames
from loadtest.operations import Op, Workload, send
from loadtest.outcomes import UNKNOWN_OUTCOMES
from loadtest.scenario import Profile, Scenario
from loadtest.schedule import worker_offsets_s
from loadtest.stats import IN_FLIGHT_CAP, OK, SecondCounter, Series, Tick, Window, window_of
from loadtest.tally import Tally

POLL_S: Final = 0.5
# How long resolving an unknown outcome may take at most: its time, then the last attempt's deadline.
RESOLVE_WINDOW_S: Final = bounds.resolve_for_max_s + bounds.deadline_max_ms / 1000


@dataclasses.dataclass(frozen=True)
class Target:
    endpoint: str
    api_key: str
    # The processes serving gRPC when the harness started the server on this machine (their CPU time is
    # read then), and their own addresses when there are several (`jubao-server serve`, one per core).
    server_pids: tuple[int, ...] = ()
    members: tuple[str, ...] = ()

    @property
    def dial(self) -> str:
        """What the load's clients dial: every process of the server in turn when it runs several (the
        SDK's channels balance round robin over the addresses of their endpoint), else the endpoint."""
        return "ipv4:" + ",".join(self.members) if len(self.members) > 1 else self.endpoint


@dataclasses.dataclass(frozen=True)
class OpenLoop:
    profile: Profile

    @property
    def duration_s(self) -> float:
        return self.profile.duration_s


@dataclasses.dataclass(frozen=True)
class ClosedLoop:
    callers: int  # per worker
    duration_s: float

    def __post_init__(self) -> None:
        if not 1 <= self.callers <= bounds.callers_per_worker_max:
            raise ValueError(f"callers must be from 1 to {bounds.callers_per_worker_max}, got {self.callers}")


Drive = OpenLoop | ClosedLoop


@dataclasses.dataclass(frozen=True)
class Job:
    """One worker's part of a load."""

    target: Target
    scenario: Scenario
    names: AccountNames
    drive: Drive
    run_id: str
    worker: int
    workers: int


@dataclasses.dataclass(frozen=True)
class Done:
    worker: int


@dataclasses.dataclass(frozen=True)
class WorkerResult:
    tally: Tally
    kinds: tuple[tuple[str, Tick], ...]


@dataclasses.dataclass(frozen=True)
class Segment:
    """A load's merged result: its seconds, the tally of what it moved, figures per kind of request."""

    series: Series
    tally: Tally
    kinds: tuple[tuple[str, Window], ...]


Progress = Callable[[int, Window], None]


class Engine:
    """A pool of worker processes that runs loads one after another (imports and start-up paid once)."""

    def __init__(self, workers: int, progress: Progress | None = None) -> None:
        if not 1 <= workers <= bounds.workers_max:
            raise ValueError(f"workers must be from 1 to {bounds.workers_max}, got {workers}")
        context = multiprocessing.get_context("spawn")
        self.workers = workers
        self._progress = progress
        self._ticks: multiprocessing.Queue[Tick | Done] = context.Queue()
        self._barrier = context.Barrier(workers)
        self._stop = context.Event()
        self._pool = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._ticks, self._barrier, self._stop),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._pool.shutdown(cancel_futures=True)

    def stop(self) -> None:
        """End the load under way early (from another thread): the workers send nothing more, wait for
        what is in flight and resolve what is unknown, as at the drive's end."""
        self._stop.set()

    def run(
        self, target: Target, scenario: Scenario, names: AccountNames, drive: Drive, run_id: str
    ) -> Segment:
        self._stop.clear()
        segment_id = f"{run_id}{uuid.uuid4().hex[:6]}"  # request ids stay unique across loads of a run
        jobs = [Job(target, scenario, names, drive, segment_id, w, self.workers) for w in range(self.workers)]
        futures = [self._pool.submit(_work, job) for job in jobs]
        series = Series(self.workers)
        wait_max_s = drive.duration_s + RESOLVE_WINDOW_S + bounds.worker_start_timeout_s
        deadline_s = time.monotonic() + wait_max_s
        finished = 0
        # Each worker sends a tick a second and a Done; the rest of the polls wait.
        for _ in range(int(wait_max_s / POLL_S) + self.workers * (int(wait_max_s) + 2)):
            if finished == self.workers or time.monotonic() > deadline_s:
                break
            finished += self._collect(series, futures)
        if finished < self.workers:
            raise RuntimeError(f"the workers did not finish within {wait_max_s:.0f} s")
        results = [future.result() for future in futures]
        return Segment(series, Tally.merge(r.tally for r in results), _kind_windows(results, series.seconds))

    def _collect(self, series: Series, futures: list[Future[WorkerResult]]) -> int:
        """Take what the workers sent in the next POLL_S; returns how many workers said they are done."""
        try:
            item = self._ticks.get(timeout=POLL_S)
        except queue.Empty:
            for future in futures:
                if future.done() and future.exception() is not None:
                    self._barrier.abort()
                    future.result()
            return 0
        if isinstance(item, Done):
            return 1
        if series.add(item) and self._progress is not None:
            self._progress(item.second, series.second(item.second))
        return 0


def _kind_windows(results: list[WorkerResult], seconds: int) -> tuple[tuple[str, Window], ...]:
    kinds = sorted({kind for result in results for kind, _ in result.kinds})
    ticks = {kind: [tick for result in results for k, tick in result.kinds if k == kind] for kind in kinds}
    return tuple((kind, window_of(ticks[kind], seconds)) for kind in kinds)


# The worker side: one process runs one Job at a time.


@dataclasses.dataclass(frozen=True)
class _Pipe:
    ticks: multiprocessing.Queue[Tick | Done]
    barrier: Barrier
    stop: EventType


_pipes: list[_Pipe] = []


def _init_worker(ticks: multiprocessing.Queue[Tick | Done], barrier: Barrier, stop: EventType) -> None:
    _pipes.append(_Pipe(ticks, barrier, stop))


def _work(job: Job) -> WorkerResult:
    """One load in a worker, whose heap is frozen as a server's is (`HeapFreezer`): the tally it keeps
    grows with the load, and a full collection walked all of it while answers waited (up to 68 ms in the
    5-minute paced load, counted as the server's latency)."""
    freezer = HeapFreezer()
    freezer.install()
    try:
        return asyncio.run(_work_async(job, _pipes[0]))
    finally:
        freezer.uninstall()


async def _work_async(job: Job, pipe: _Pipe) -> WorkerResult:
    config = ClientConfig(endpoint=job.target.dial, api_key=job.target.api_key)
    async with AsyncClient(config) as client:
        try:
            await client.meta.Ping(meta_pb2.PingRequest())
        except JubaoError:
            pipe.barrier.abort()
            raise
        await asyncio.to_thread(pipe.barrier.wait, bounds.worker_start_timeout_s)
        recorder = Recorder(job.worker, time.monotonic(), pipe.ticks.put)
        workload = Workload(job.scenario, job.names, job.run_id, job.worker)
        runner = Runner(client, workload, recorder, job.scenario)
        ticker = asyncio.create_task(recorder.tick_every_second(job.drive.duration_s + RESOLVE_WINDOW_S))
        try:
            await _drive(job, runner, pipe.stop.is_set)
            await runner.drain()
        finally:
            ticker.cancel()
        recorder.flush()
    pipe.ticks.put(Done(job.worker))
    return WorkerResult(workload.tally.build(), recorder.kind_ticks())


async def _drive(job: Job, runner: Runner, stopped: Callable[[], bool]) -> None:
    if isinstance(job.drive, OpenLoop):
        offsets_s = worker_offsets_s(job.drive.profile, job.worker, job.workers)
        await open_loop(runner, offsets_s, job.drive.duration_s, stopped)
    else:
        await closed_loop(runner, job.drive.callers, job.drive.duration_s)


class Recorder:
    """Counts of the second under way, handed over as each second ends; totals per kind of request."""

    def __init__(self, worker: int, start_s: float, hand_over: Callable[[Tick], None]) -> None:
        self.worker = worker
        self.start_s = start_s
        self._hand_over = hand_over
        self._second = 0
        self._counter = SecondCounter()
        self._kinds: dict[str, SecondCounter] = {}

    def offered(self, kind: str) -> None:
        self._roll()
        self._counter.offered += 1
        self._kinds.setdefault(kind, SecondCounter()).offered += 1

    def record(self, kind: str, status: str, latency_s: float | None, transfers: int = 0) -> None:
        self._roll()
        self._counter.record(status, latency_s, transfers, time.monotonic() - self.start_s)
        self._kinds.setdefault(kind, SecondCounter()).record(status, latency_s, transfers)

    async def tick_every_second(self, lifetime_s: float) -> None:
        """Hand each second over when it ends, also when nothing happens in it."""
        for _ in range(int(lifetime_s) + 1):
            await asyncio.sleep(self.start_s + self._second + 1 - time.monotonic())
            self._roll()

    def flush(self) -> None:
        self._roll()
        self._hand_over(self._counter.close(self.worker, self._second))

    def kind_ticks(self) -> tuple[tuple[str, Tick], ...]:
        return tuple((kind, counter.close(self.worker, -1)) for kind, counter in sorted(self._kinds.items()))

    def _roll(self) -> None:
        now_second = int(time.monotonic() - self.start_s)
        for _ in range(min(now_second - self._second, bounds.run_duration_max_s)):
            self._hand_over(self._counter.close(self.worker, self._second))
            self._second += 1
            self._counter = SecondCounter()
        self._second = max(self._second, now_second)


class Runner:
    """Sends requests, records their answers, and resolves unknown outcomes in the background."""

    def __init__(
        self, client: AsyncClient, workload: Workload, recorder: Recorder, scenario: Scenario
    ) -> None:
        self.client = client
        self.workload = workload
        self.recorder = recorder
        self._timeout_s = scenario.deadline_ms / 1000
        self._in_flight_max = scenario.in_flight_max
        self._in_flight: set[asyncio.Task[None]] = set()
        self._resolving: set[asyncio.Task[None]] = set()

    def launch(self, op: Op, due_s: float) -> None:
        """Send without waiting (open loop), unless `in_flight_max` requests are in flight already."""
        self.recorder.offered(op.kind)
        if len(self._in_flight) >= self._in_flight_max:
            self.recorder.record(op.kind, IN_FLIGHT_CAP, None)
            return
        task = asyncio.create_task(self.attempt(op, due_s))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def attempt(self, op: Op, due_s: float) -> None:
        try:
            response = await send(self.client, op, self._timeout_s)
        except JubaoError as error:
            self.recorder.record(op.kind, error.code.name, time.monotonic() - due_s)
            if op.reads_only:
                return
            if error.code in UNKNOWN_OUTCOMES:
                self._resolve_later(op)
            else:
                self.workload.refused()
            return
        latency_s = time.monotonic() - due_s
        moved_before = len(self.workload.tally.movements)
        rest = self.workload.acknowledge(op, response)
        self.recorder.record(op.kind, OK, latency_s, len(self.workload.tally.movements) - moved_before)
        if rest is not None:
            self._resolve_later(rest)

    async def drain(self) -> None:
        """Wait for the requests in flight, then for the resolutions they started."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        if self._resolving:
            await asyncio.wait(set(self._resolving))

    def _resolve_later(self, op: Op) -> None:
        if len(self._resolving) >= bounds.unresolved_per_worker_max:
            self.workload.tally.unresolved.append(op.source)
            return
        task = asyncio.create_task(self._resolve(op))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, op: Op) -> None:
        """Send `op` again (the same request id) until the answer is known, for `resolve_for_max_s`."""
        tally = self.workload.tally
        give_up_s = time.monotonic() + bounds.resolve_for_max_s
        backoff_s = bounds.resolve_backoff_initial_s
        for _ in range(bounds.resolve_attempts_max):
            await asyncio.sleep(backoff_s)
            if time.monotonic() > give_up_s:
                break
            backoff_s = min(2 * backoff_s, bounds.resolve_backoff_max_s)
            try:
                response = await send(self.client, op, self._timeout_s)
            except JubaoError as error:
                if error.code in UNKNOWN_OUTCOMES:
                    continue
                tally.resolved += 1
                self.workload.refused()
                return
            tally.resolved += 1
            rest = self.workload.acknowledge(op, response)
            if rest is None:
                return
            op = rest
        tally.unresolved.append(op.source)


async def open_loop(
    runner: Runner, offsets_s: Iterator[float], duration_s: float, stopped: Callable[[], bool]
) -> None:
    """Send each arrival at its due time and each follow-up when it falls due (before the end, or until
    `stopped()` says the load ends early)."""
    start_s = runner.recorder.start_s
    end_s = start_s + duration_s
    workload = runner.workload
    arrival = next(offsets_s, None)
    for _ in range(bounds.ops_per_worker_max):
        if stopped():
            return
        arrival_s = None if arrival is None else start_s + arrival
        follow_up_s = workload.next_follow_up_s()
        if follow_up_s is not None and follow_up_s >= end_s:
            follow_up_s = None
        due = [due_s for due_s in (arrival_s, follow_up_s) if due_s is not None]
        if not due:
            return
        wait_s = min(due) - time.monotonic()
        if wait_s > 0:
            await asyncio.sleep(min(wait_s, bounds.schedule_tick_s))
        elif follow_up_s is not None and follow_up_s <= min(due):
            due_s, op = workload.pop_follow_up()
            runner.launch(op, due_s)
        elif arrival_s is not None:
            runner.launch(workload.arrival(), arrival_s)
            arrival = next(offsets_s, None)


async def closed_loop(runner: Runner, callers: int, duration_s: float) -> None:
    """`callers` callers, each sending its next request as soon as the last is answered."""
    end_s = runner.recorder.start_s + duration_s
    workload = runner.workload

    async def caller() -> None:
        for _ in range(bounds.ops_per_worker_max):
            now_s = time.monotonic()
            if now_s >= end_s:
                return
            follow_up_s = workload.next_follow_up_s()
            due = follow_up_s is not None and follow_up_s <= now_s
            op = workload.pop_follow_up()[1] if due else workload.arrival()
            runner.recorder.offered(op.kind)
            await runner.attempt(op, now_s)

    await asyncio.gather(*(caller() for _ in range(callers)))
