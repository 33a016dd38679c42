"""Payments figures, measured with the load engine on the accounts of the bench's double11 run: unary
transfers (closed loop, customers paying merchants), transfers into one hot merchant account, latency at
half the unary peak rate (open loop, from the due time), and transfers committed through batches of 1,000.
Every figure is read over its load's seconds after a warm-up."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from collections.abc import Sequence
from typing import Final

from loadtest import bounds
from loadtest.engine import ClosedLoop, Drive, Engine, OpenLoop
from loadtest.harness import Run, load, machine_stalls
from loadtest.report import Figure, figure
from loadtest.scenario import Profile, Scenario
from loadtest.server_process import process_cpu_s, process_written_bytes
from loadtest.stats import Tick, Window, window_of
from loadtest.tally import Tally

batch_size: Final = 1_000
batch_callers: Final = 4
# A batch of 1,000 takes seconds (its items queue behind the other callers' in the server); the server
# caps deadlines at 30 s.
batch_deadline_ms: Final = 30_000


@dataclasses.dataclass(frozen=True)
class PaymentsPlan:
    seconds: float
    warmup_s: float
    concurrency: int  # callers per worker
    paced_s: float  # the load at half the unary peak, whose p99 and longest stall are read


@dataclasses.dataclass(frozen=True)
class ServerUse:
    """What the processes serving the calls (every thread; of `jubao-server serve`, its gRPC children)
    used over a whole load, warm-up included: CPU time, bytes written to storage, and the calls they
    answered in that time."""

    cpu_s: float
    written_bytes: int
    wall_s: float
    calls: int

    @classmethod
    def total(cls, parts: Sequence[ServerUse]) -> ServerUse:
        """Several loads' use, wall time and calls summed."""
        return cls(
            sum(p.cpu_s for p in parts),
            sum(p.written_bytes for p in parts),
            sum(p.wall_s for p in parts),
            sum(p.calls for p in parts),
        )

    @property
    def us_per_call(self) -> float:
        return self.cpu_s * 1e6 / self.calls if self.calls else 0.0

    @property
    def bytes_per_call(self) -> float:
        return self.written_bytes / self.calls if self.calls else 0.0

    @property
    def cores(self) -> float:
        """How many cores the server kept busy on average."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    def note(self) -> str:
        return (
            "CPU of the processes serving gRPC (user + system, every thread) over the whole load, warm-up "
            f"included: {self.cpu_s:.2f} s for {self.calls} calls answered in {self.wall_s:.1f} s "
            f"({self.cores:.2f} of a core busy)"
        )

    def written_note(self) -> str:
        mb_per_s = self.written_bytes / 1e6 / self.wall_s if self.wall_s else 0.0
        return (
            "bytes the processes serving gRPC had written to storage (/proc/<pid>/io write_bytes: the "
            "database file, its WAL and the checkpoints' copies, logs) over the whole load, warm-up "
            f"included: {self.written_bytes / 1e6:,.1f} MB for {self.calls} calls answered in "
            f"{self.wall_s:.1f} s ({mb_per_s:,.1f} MB/s)"
        )


@dataclasses.dataclass(frozen=True)
class Measured:
    window: Window
    tally: Tally
    server: ServerUse | None = None
    # The window's ticks, so that several loads' windows read as one (`combined`).
    ticks: tuple[Tick, ...] = ()
    # When the load began (Unix time), and its slowest seconds (`Series.slowest_seconds`): where its
    # stalls were, in wall time, to set beside the server's logs.
    started_unix_s: float = 0.0
    slowest: tuple[tuple[int, Window], ...] = ()

    @classmethod
    def combined(cls, parts: Sequence[Measured]) -> Measured:
        """Several loads read as one: their windows' seconds and ticks together (the latency histograms
        merged), their tallies merged, and their servers' use summed."""
        ticks = tuple(tick for part in parts for tick in part.ticks)
        window = window_of(ticks, sum(part.window.seconds for part in parts))
        uses = [part.server for part in parts if part.server is not None]
        server = ServerUse.total(uses) if uses else None
        return cls(window, Tally.merge(part.tally for part in parts), server, ticks)

    def errors_note(self) -> str:
        window = self.window
        return f"{window.ok} ok, {window.error_count} errors in {window.seconds} s"

    def cpu_figure(self, name: str, backend: str) -> list[Figure]:
        """`name` (server CPU per call in µs), when the harness started the server and could read it."""
        server = self.server
        if server is None:
            return []
        return [figure(name, round(server.us_per_call), "us/call", backend, server.note())]

    def written_figure(self, name: str, backend: str, per: int = 1) -> list[Figure]:
        """`name` (bytes the server had written to storage per call, or per item of calls of `per`
        items), when the harness started the server and the backend is SQLite: on Cassandra the nodes
        write the data, outside the processes measured."""
        server = self.server
        if server is None or backend != "sqlite":
            return []
        unit = "bytes/call" if per == 1 else "bytes/transfer"
        note = server.written_note() + (f"; every call a batch of {per:,}" if per > 1 else "")
        return [figure(name, round(server.bytes_per_call / per), unit, backend, note)]


def measure(
    engine: Engine,
    run: Run,
    scenario: Scenario,
    drive: Drive,
    warmup_s: float,
    *,
    until_answered: bool = False,
    label: str = "",
) -> Measured:
    """Run a load and read its figures after `warmup_s`, up to the end of the drive (or, `until_answered`,
    up to the last answer: a batch sent before the end may take many seconds). When the harness started
    the server, its CPU time over the load is read too, and profiled as `label` when the run keeps
    profiles."""
    pids = run.target.server_pids
    cpu_before_s = sum(process_cpu_s(pid) for pid in pids)
    written_before = sum(process_written_bytes(pid) for pid in pids)
    started_s, started_unix_s = time.monotonic(), time.time()
    recording: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if run.profiles is not None and pids and label:
        recording = run.profiles.recording(label, pids)
    with recording:
        segment = load(engine, run, drive, scenario)
    server = None
    if pids:
        whole = segment.series.window(0, segment.series.seconds)
        cpu_s = sum(process_cpu_s(pid) for pid in pids) - cpu_before_s
        written = sum(process_written_bytes(pid) for pid in pids) - written_before
        server = ServerUse(cpu_s, written, time.monotonic() - started_s, whole.ok + whole.error_count)
    first, end = int(warmup_s), segment.series.seconds if until_answered else int(drive.duration_s)
    ticks = tuple(segment.series.ticks_in(first, end))
    slowest = segment.series.slowest_seconds(first, end, bounds.slowest_seconds_listed_max)
    return Measured(segment.series.window(first, end), segment.tally, server, ticks, started_unix_s, slowest)


def only(scenario: Scenario, kind: str, **changes: object) -> Scenario:
    """The scenario with one kind of request in its mix."""
    return dataclasses.replace(scenario, mix=((kind, 1),), **changes)  # type: ignore[arg-type]


def unary_figures(
    engine: Engine, run: Run, plan: PaymentsPlan, backend: str, name: str
) -> tuple[list[Figure], Tally]:
    """`<name>_per_s` (unary transfers, closed loop, random payer and payee), the server's CPU per
    transfer (`<name>_server_cpu_us_per_call`) and, on SQLite, the bytes it wrote per transfer
    (`<name>_server_written_bytes_per_call`)."""
    closed = ClosedLoop(plan.concurrency, plan.warmup_s + plan.seconds)
    unary = measure(engine, run, spread_transfers(run), closed, plan.warmup_s, label=f"{name}-{backend}")
    return [
        figure(
            f"{name}_per_s",
            round(unary.window.achieved_per_s),
            "transfers/s",
            backend,
            f"{_where(run, engine)} x {plan.concurrency} in flight, random payer and payee; "
            f"{unary.errors_note()}",
        ),
        *unary.cpu_figure(f"{name}_server_cpu_us_per_call", backend),
        *unary.written_figure(f"{name}_server_written_bytes_per_call", backend),
    ], unary.tally


def spread_transfers(run: Run) -> Scenario:
    """Unary transfers between random customers and merchants, no hot merchant."""
    return only(run.scenario, "transfer", accounts=dataclasses.replace(run.scenario.accounts, hot_share=0.0))


def _where(run: Run, engine: Engine) -> str:
    accounts = run.scenario.accounts
    return (
        f"{accounts.customers:,} customers paying {accounts.merchants:,} merchants, "
        f"{engine.workers} client processes"
    )


def payments_figures(
    engine: Engine, run: Run, plan: PaymentsPlan, backend: str
) -> tuple[list[Figure], Tally]:
    total_s = plan.warmup_s + plan.seconds
    hot_accounts = dataclasses.replace(run.scenario.accounts, hot_merchants=1, hot_share=1.0)
    closed = ClosedLoop(plan.concurrency, total_s)
    unary_found, unary_tally = unary_figures(engine, run, plan, backend, "payments_transfer_unary")
    unary_rate = unary_found[0]["value"]
    hot_load = only(run.scenario, "transfer", accounts=hot_accounts)
    hot = measure(engine, run, hot_load, closed, plan.warmup_s, label=f"payments_transfer_hot-{backend}")
    paced_found, paced_tally = paced_figures(engine, run, plan, backend, float(unary_rate))
    batch_found, batch_tally = batch_figures(engine, run, plan, backend)
    figures = [
        *unary_found,
        figure(
            "payments_transfer_hot_per_s",
            round(hot.window.achieved_per_s),
            "transfers/s",
            backend,
            f"{_where(run, engine)} x {plan.concurrency} in flight, every payee one merchant account; "
            f"{hot.errors_note()}",
        ),
        *paced_found,
        *batch_found,
    ]
    return figures, Tally.merge([unary_tally, batch_tally, paced_tally, hot.tally])


def paced_figures(
    engine: Engine, run: Run, plan: PaymentsPlan, backend: str, unary_per_s: float
) -> tuple[list[Figure], Tally]:
    """Latency at half the unary peak (`unary_per_s`), open loop for `plan.paced_s` (300 s in the full
    bench): p50, p99, the longest transfer, and the machine's own longest stall in those seconds."""
    half_rate = round(unary_per_s / 2, 1)
    paced_drive = OpenLoop(Profile.constant(half_rate, plan.warmup_s + plan.paced_s))
    with machine_stalls() as machine:
        paced = measure(
            engine, run, spread_transfers(run), paced_drive, plan.warmup_s, label=f"payments_paced-{backend}"
        )
    paced_note = (
        f"open loop at {half_rate:.0f}/s (half the unary peak) for {plan.paced_s:.0f} s after a warm-up, "
        "latency from the scheduled send"
    )
    return [
        figure(
            "payments_transfer_p50_ms",
            round(paced.window.latency_ms[0], 2),
            "ms",
            backend,
            f"{paced_note}; {paced.errors_note()}",
        ),
        figure("payments_transfer_p99_ms", round(paced.window.p99_ms, 2), "ms", backend, paced_note),
        {
            **figure(
                "payments_transfer_stall_max_ms",
                round(paced.window.latency_ms[3], 1),
                "ms",
                backend,
                "the longest a transfer took in the same load (target: under 100 ms over 300 s, make "
                "bench-full); machine_stall_max_ms is the machine's own longest stall in those seconds; "
                "slowest_seconds: where in the load the longest ones were",
            ),
            "slowest_seconds": slowest_seconds_json(paced),
        },
        figure(
            "machine_stall_max_ms",
            round(machine.max_ms, 1),
            "ms",
            backend,
            "the longest a process that only sleeps 10 ms at a time (loadtest/canary.py) woke late during "
            "payments_transfer_stall_max_ms's load: what the machine itself (other processes on its cores, "
            "the disk) made every process wait",
        ),
    ], paced.tally


def slowest_seconds_json(measured: Measured) -> list[dict[str, object]]:
    """The load's seconds with the longest transfers, the slowest first, each with its wall time."""
    return [
        {
            "second": second,
            "at": datetime.datetime.fromtimestamp(measured.started_unix_s + second, datetime.UTC).isoformat(
                timespec="seconds"
            ),
            "max_ms": round(window.latency_ms[3], 1),
            "p99_ms": round(window.p99_ms, 1),
            "ok": window.ok,
        }
        for second, window in measured.slowest
    ]


def batch_figures(engine: Engine, run: Run, plan: PaymentsPlan, backend: str) -> tuple[list[Figure], Tally]:
    """`payments_transfer_batch_per_s`: transfers committed through BatchCreateTransfers of `batch_size`
    (closed loop), counted until the last batch answered."""
    batches = only(run.scenario, "batch", batch_size=batch_size, deadline_ms=batch_deadline_ms)
    callers = max(1, batch_callers // engine.workers)
    drive = ClosedLoop(callers, plan.warmup_s + plan.seconds)
    label = f"payments_transfer_batch-{backend}"
    batched = measure(engine, run, batches, drive, plan.warmup_s, until_answered=True, label=label)
    found = [
        figure(
            "payments_transfer_batch_per_s",
            round(batched.window.transfers_per_s),
            "transfers/s",
            backend,
            f"BatchCreateTransfers of {batch_size:,}, {callers * engine.workers} callers over "
            f"{engine.workers} client processes, random payer and payee, counted until the last batch "
            f"answered; {batched.errors_note()} (batches)",
        ),
    ]
    server = batched.server
    if server is not None:
        found.append(
            figure(
                "payments_transfer_batch_server_cpu_us_per_transfer",
                round(server.us_per_call / batch_size),
                "us/transfer",
                backend,
                f"{server.note()}; every call a batch of {batch_size:,}",
            )
        )
    written = "payments_transfer_batch_server_written_bytes_per_transfer"
    found += batched.written_figure(written, backend, batch_size)
    return found, batched.tally
