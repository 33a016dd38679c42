"""`make bench`: measure and write `loadtest/results/latest.json`, and the double11 find-peak report and
plot of each backend beside it.

Format: `{"machine": {...}, "started_at": "...", "mode": "quick|full", "figures": [{"name", "value", "unit",
"backend", "notes"}]}`. Every run measures the empty-RPC ceiling (`grpc_empty_rpc_per_s`: authenticated
Ping calls through the same server, pipeline and SDK) so that other figures read as fractions of it, the
bare ceiling of Python gRPC beside it (`grpc_bare_echo_per_s`: the same clients against a minimal server,
`bare_echo.py`, in windows alternating with the empty RPC's), the server's CPU per call of each and of a
unary transfer (`*_server_cpu_us_per_call`), and ghz's ceiling on the same call as a check of the harness.
Every backend's loads are checked against its ledger at the end: a lost or duplicated payment fails the
bench.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.config import CassandraSettings, SqliteSettings, StorageSettings
from jubao_server.storage.contract import StorageBackend, StorageError
from jubao_server.storage.factory import open_backend

from loadtest.bulk_bench import BulkPlan, BulkRun, bulk_figures
from loadtest.cocreation_bench import BENCH_ROWS, cocreation_figures
from loadtest.cocreation_train_bench import run_cocreation_train_bench
from loadtest.commands import find_peak, print_step
from loadtest.engine import ClosedLoop, Engine
from loadtest.fundta_bench import run_fundta_bench
from loadtest.fundta_orders import order_accept_figures
from loadtest.ghz import GhzLoad, ghz_figure
from loadtest.harness import Run, bare_echo, prepare, scratch_dir, serving, verify
from loadtest.ledger_bench import LedgerPlan, run_ledger_bench
from loadtest.payments_bench import (
    Measured,
    PaymentsPlan,
    batch_figures,
    measure,
    only,
    paced_figures,
    payments_figures,
    unary_figures,
)
from loadtest.profile import Profiles
from loadtest.report import Figure, check_json, figure, machine, now_iso, write_report
from loadtest.scenario import SCENARIOS, Scenario, load_scenario
from loadtest.server_process import REPO, free_port
from loadtest.stats import PairedRounds
from loadtest.storage_bench import run_storage_bench
from loadtest.tally import Tally

RESULTS: Final = REPO / "loadtest" / "results"
BENCH_KEYSPACE: Final = "jubao_bench"
PER_CORE_KEYSPACE: Final = "jubao_bench_cores"
# double11_peak_sustained_per_s: the highest rate of the double11 mix within these bounds.
DOUBLE11_P99_MAX_MS: Final = 50.0
DOUBLE11_ERROR_RATE_MAX: Final = 0.001
# make bench-full reads payments_transfer_stall_max_ms over 5 minutes at half the unary peak.
STALL_RUN_S: Final = 300.0
# grpc_empty_rpc_of_bare_echo: the bare echo and the pipeline take turns, this many windows each, so that
# each round's two windows see about the same host speed; a shared 2-core host drifts between windows
# minutes apart (one after the other, the same code read 0.418, then 0.918 twenty minutes later).
RPC_ROUNDS: Final = 4


class BenchCheckFailed(RuntimeError):
    """The ledger does not agree with what the bench's loads were told: a payment was lost or doubled."""


@dataclasses.dataclass(frozen=True)
class BenchPlan:
    mode: str
    rpc_seconds: float
    rpc_warmup_s: float
    rpc_concurrency: int
    workers: int
    storage_seconds: float
    payments: PaymentsPlan
    double11: Path
    bulk: BulkPlan
    # The fund TA's day-close: holders of the fund and orders of its trade date.
    fundta_holders: int = 100_000
    fundta_orders: int = 10_000
    # Co-creation's joint model: the orders and policies of the 运费险 case it is trained on.
    cocreation_orders: int = 100_000
    cocreation_policies: int = 20_000
    # The ledger in this process, without gRPC: the ceiling of the payments figures.
    ledger: LedgerPlan = dataclasses.field(default_factory=LedgerPlan)

    @classmethod
    def of(cls, quick: bool) -> BenchPlan:
        workers = os.cpu_count() or 1
        if quick:
            payments = PaymentsPlan(8.0, 2.0, 32, 8.0)
            double11 = SCENARIOS / "double11_short.toml"
            return cls("quick", 8.0, 2.0, 32, workers, 3.0, payments, double11, BulkPlan.of(quick))
        payments = PaymentsPlan(30.0, 5.0, 64, STALL_RUN_S)
        double11 = SCENARIOS / "double11.toml"
        return cls(
            "full", 30.0, 5.0, 64, workers, 15.0, payments, double11, BulkPlan.of(quick), 1_000_000, 100_000,
            1_000_000, 200_000, LedgerPlan(batches=50, unary_transfers=10_000),
        )  # fmt: skip

    @property
    def rpc_window_s(self) -> float:
        """Each ceiling's window of a round (`rpc_figures`), in whole seconds as a load's are read."""
        return float(self.rpc_seconds // RPC_ROUNDS)

    def scenario(self) -> Scenario:
        scenario = load_scenario(self.double11)
        peak = dataclasses.replace(
            scenario.peak, p99_max_ms=DOUBLE11_P99_MAX_MS, error_rate_max=DOUBLE11_ERROR_RATE_MAX
        )
        return dataclasses.replace(scenario, peak=peak)


def rpc_figures(engine: Engine, run: Run, plan: BenchPlan) -> list[Figure]:
    """The empty-RPC ceiling through the whole pipeline and, with the same clients and load, the bare
    ceiling of Python gRPC (a minimal server of its own) in windows alternating with it (`alternating`),
    with the server's CPU per call of each."""
    pings = only(run.scenario, "ping")
    with bare_echo(run.target.api_key) as bare_target:
        runs = (("grpc_bare_echo", dataclasses.replace(run, target=bare_target)), ("grpc_empty_rpc", run))
        bare_loads, empty_loads = alternating(engine, runs, pings, plan)
    # Each target's first load is its warm-up: its CPU counts, it has no window.
    rounds = PairedRounds(_per_s(bare_loads[1:]), _per_s(empty_loads[1:]))
    bare, empty = Measured.combined(bare_loads), Measured.combined(empty_loads)
    bare_per_s, empty_per_s = rounds.reference_median_per_s, rounds.measured_median_per_s
    clients = f"{engine.workers} client processes x {plan.rpc_concurrency} in flight (closed loop)"
    windows = (
        f"the median of {RPC_ROUNDS} windows of {plan.rpc_window_s:g} s alternating with "
        f"the other ceiling's, after a {plan.rpc_warmup_s:g} s warm-up of each"
    )
    notes = (
        f"MetaService.Ping with API key auth, quota and telemetry; {clients}; {windows} "
        f"({_rates(rounds.measured_per_s)}); {empty.errors_note()}"
    )
    bare_notes = (
        f"MetaService.Ping on a bare grpc.aio server in a process of its own (no pipeline, no auth, no "
        f"telemetry), the same clients as grpc_empty_rpc_per_s: {clients}; {windows} "
        f"({_rates(rounds.reference_per_s)}); {bare.errors_note()}"
    )
    ratios = ", ".join(f"{ratio:.3f}" for ratio in rounds.ratios)
    latency = f"at the ceiling load, over its {RPC_ROUNDS} windows"
    figures = [
        figure("grpc_bare_echo_per_s", round(bare_per_s), "calls/s", "none", bare_notes),
        *bare.cpu_figure("grpc_bare_echo_server_cpu_us_per_call", "none"),
        figure("grpc_empty_rpc_per_s", round(empty_per_s), "calls/s", "none", notes),
        figure(
            "grpc_empty_rpc_of_bare_echo",
            round(rounds.ratio_median, 3),
            "ratio",
            "none",
            "what the call pipeline leaves of Python gRPC's ceiling (target: at least 0.75): the median over "
            f"{RPC_ROUNDS} rounds of a round's grpc_empty_rpc window over the same round's grpc_bare_echo "
            f"window, so the host's drift between rounds divides out (per round: {ratios})",
        ),
        *empty.cpu_figure("grpc_empty_rpc_server_cpu_us_per_call", "none"),
        figure("grpc_empty_rpc_p50_ms", round(empty.window.latency_ms[0], 3), "ms", "none", latency),
        figure("grpc_empty_rpc_p99_ms", round(empty.window.p99_ms, 3), "ms", "none", latency),
    ]
    load = GhzLoad(plan.rpc_seconds, plan.rpc_concurrency * engine.workers, engine.workers)
    ghz = ghz_figure(run.target, load, empty_per_s)
    return figures if ghz is None else [*figures, ghz]


def alternating(
    engine: Engine, runs: Sequence[tuple[str, Run]], scenario: Scenario, plan: BenchPlan
) -> list[list[Measured]]:
    """Loads of `scenario` on each of `runs` in turn: a warm-up of each (`rpc_warmup_s`, no window), then
    `RPC_ROUNDS` rounds of a window of each (`rpc_window_s`, profiled as `<label>-<round>`).
    Per run, its warm-up's load and then its windows' loads."""
    warmup = ClosedLoop(plan.rpc_concurrency, plan.rpc_warmup_s)
    window = ClosedLoop(plan.rpc_concurrency, plan.rpc_window_s)
    loads = [[measure(engine, each, scenario, warmup, plan.rpc_warmup_s)] for _, each in runs]
    for round_number in range(1, RPC_ROUNDS + 1):
        for (label, each), measured in zip(runs, loads, strict=True):
            measured.append(measure(engine, each, scenario, window, 0.0, label=f"{label}-{round_number}"))
    return loads


def _per_s(loads: Sequence[Measured]) -> tuple[float, ...]:
    return tuple(load.window.achieved_per_s for load in loads)


def _rates(rates_per_s: Sequence[float]) -> str:
    return "per window " + ", ".join(f"{rate_per_s:.0f}" for rate_per_s in rates_per_s) + " calls/s"


async def storage_figures(plan: BenchPlan, scratch: Path) -> list[Figure]:
    figures: list[Figure] = []
    settings = [StorageSettings(backend="sqlite", sqlite=SqliteSettings(path=scratch / "storage-bench.db"))]
    settings.append(
        StorageSettings(backend="cassandra", cassandra=CassandraSettings(keyspace=BENCH_KEYSPACE))
    )
    for choice in settings:
        backend = await _open_or_none(choice)
        if backend is None:
            print(f"bench: {choice.backend} is not reachable; its figures are left out (make cassandra-up)")
            continue
        try:
            await migrate(backend)
            figures += await run_storage_bench(backend, plan.storage_seconds)
            print(f"bench: the ledger in process on {choice.backend}")
            figures += await run_ledger_bench(backend, SYSTEM_CLOCK, plan.ledger)
            print(f"bench: fund TA day-close on {choice.backend}")
            figures += await run_fundta_bench(backend, SYSTEM_CLOCK, plan.fundta_holders, plan.fundta_orders)
            print(f"bench: co-creation training on {choice.backend}")
            figures += await run_cocreation_train_bench(
                backend, SYSTEM_CLOCK, plan.cocreation_orders, plan.cocreation_policies
            )
        finally:
            await backend.close()
    return figures


async def _open_or_none(settings: StorageSettings) -> StorageBackend | None:
    try:
        return await open_backend(settings)
    except (StorageError, ConnectionError, OSError) as error:
        print(f"bench: {settings.backend}: {error}")
        return None


def latency_figures(engine: Engine, run: Run, plan: PaymentsPlan, backend: str) -> tuple[list[Figure], Tally]:
    """The unary peak, then the latencies and stalls at half of it (`bench --full --only
    payments_transfer_p99_ms`: the 5-minute stall run alone)."""
    unary, unary_tally = unary_figures(engine, run, plan, backend, "payments_transfer_unary")
    paced, paced_tally = paced_figures(engine, run, plan, backend, float(unary[0]["value"]))
    return [*unary, *paced], Tally.merge([unary_tally, paced_tally])


# The figures `bench --only` measures alone, each through a server of its own with its ledger checked.
SelectedFigures = Callable[[Engine, Run, PaymentsPlan, str], tuple[list[Figure], Tally]]
SELECTABLE: Final[dict[str, SelectedFigures]] = {
    "payments_transfer_batch_per_s": batch_figures,
    "payments_transfer_unary_per_s": lambda engine, run, plan, backend: unary_figures(
        engine, run, plan, backend, "payments_transfer_unary"
    ),
    "payments_transfer_p99_ms": latency_figures,
}
# Measured alone through a server with its Flight process (`--only` too), its ledger checked the same way.
COCREATION_JOIN: Final = "cocreation_join_aggregate_rows_per_s"
# The empty-RPC ceiling beside the bare one (`--only` too: the pipeline's share of Python gRPC alone).
EMPTY_RPC: Final = "grpc_empty_rpc_per_s"
ONLY_CHOICES: Final = (*SELECTABLE, COCREATION_JOIN, EMPTY_RPC)
BACKENDS: Final = ("sqlite", "cassandra")


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a bench run measures: everything, or only some figures (`--only`) on some backends
    (`--backend`); with `profiles`, a py-spy profile of the server per load."""

    only: tuple[str, ...] = ()
    backends: tuple[str, ...] = BACKENDS
    profiles: Profiles | None = None


def run(quick: bool, output: Path, selection: Selection = Selection()) -> dict[str, Any]:
    plan = BenchPlan.of(quick)
    report: dict[str, Any] = {"machine": machine(), "started_at": now_iso(), "mode": plan.mode, "figures": []}
    scratch = scratch_dir("bench")
    cassandra = "cassandra" in selection.backends and cassandra_reachable()
    try:
        if cassandra:
            drop_bench_keyspace()
        chosen = [StorageSettings(backend="sqlite", sqlite=SqliteSettings(path=scratch / "server.db"))]
        chosen = chosen if "sqlite" in selection.backends else []
        if cassandra:
            chosen.append(
                StorageSettings(backend="cassandra", cassandra=CassandraSettings(keyspace=BENCH_KEYSPACE))
            )
        for storage in chosen:
            if selection.only:
                report["figures"] += selected_figures(plan, storage, selection)
            else:
                report["figures"] += server_figures(plan, storage, output.parent, selection.profiles)
        if not selection.only:
            report["figures"] += asyncio.run(storage_figures(plan, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return report


def selected_figures(plan: BenchPlan, storage: StorageSettings, selection: Selection) -> list[Figure]:
    """Only the figures `selection` names, through a server process on `storage`, its ledger checked."""
    backend = storage.backend
    bulk_port = free_port()
    settings = {**_storage_env(storage), "JUBAO_BULK__PORT": str(bulk_port)}
    with serving(None, None, settings) as target, Engine(plan.workers) as engine:
        run, setup = prepare(target, plan.scenario(), selection.profiles)
        figures: list[Figure] = []
        tallies = [setup]
        for name in selection.only:
            if name == COCREATION_JOIN:
                location = f"grpc+tcp://127.0.0.1:{bulk_port}"
                figures += cocreation_figures(target.endpoint, location, target.api_key, BENCH_ROWS, backend)
                continue
            if name == EMPTY_RPC:
                figures += rpc_figures(engine, run, plan)
                continue
            found, moved = SELECTABLE[name](engine, run, plan.payments, backend)
            figures += found
            tallies.append(moved)
        check = verify(target, Tally.merge(tallies), run.names.every())
    print(f"bench: {backend}: {check.summary()}")
    if not check.passed:
        raise BenchCheckFailed(check.summary())
    return figures


def server_figures(
    plan: BenchPlan, storage: StorageSettings, results: Path, profiles: Profiles | None = None
) -> list[Figure]:
    """Figures measured through a server process on `storage` (the empty-RPC ceilings on SQLite), then
    the check of its ledger against every load's tally, then the bulk plane's figures."""
    backend = storage.backend
    scenario = plan.scenario()
    bulk_port = free_port()
    settings = {**_storage_env(storage), "JUBAO_BULK__PORT": str(bulk_port)}
    with serving(None, None, settings) as target, Engine(plan.workers) as engine:
        run, setup = prepare(target, scenario, profiles)
        figures = rpc_figures(engine, run, plan) if backend == "sqlite" else []
        payments, moved = payments_figures(engine, run, plan.payments, backend)
        print(f"bench: fund TA orders on {backend}")
        payments += order_accept_figures(engine, run, plan.payments, backend)
        print(f"bench: find-peak of {scenario.name} on {backend}")
        peak = find_peak(engine, run, print_step)
        tally = Tally.merge([setup, moved, peak.tally])
        check = verify(target, tally, run.names.every())
        print(f"bench: bulk plane on {backend}")
        bulk_run = BulkRun(
            f"grpc+tcp://127.0.0.1:{bulk_port}", target.api_key, f"bb{run.run_id}", plan.bulk, backend
        )
        bulk = bulk_figures(target.endpoint, storage, bulk_run)
        print(f"bench: co-creation join on {backend}")
        location = f"grpc+tcp://127.0.0.1:{bulk_port}"
        bulk += cocreation_figures(target.endpoint, location, target.api_key, BENCH_ROWS, backend)
    document = {
        "command": "find-peak",
        "scenario": scenario.name,
        "description": scenario.description,
        "backend": backend,
        "workers": plan.workers,
        "started_at": now_iso(),
        "machine": machine(),
        **peak.document,
        "check": check_json(check, tally),
    }
    per_core = per_core_figures(plan, storage, backend)
    json_path, png_path = write_report(document, results, f"{scenario.name}-find-peak-{backend}")
    print(f"bench: {check.summary()}\nbench: wrote {json_path} and {png_path}")
    if not check.passed:
        raise BenchCheckFailed(check.summary())
    steps = ", ".join(f"{s.rate_per_s:g}/s {'ok' if s.passed else 'over'}" for s in peak.steps)
    notes = (
        f"find-peak on the {scenario.name} mix ({_mix(scenario)}): the highest constant rate with p99 <= "
        f"{DOUBLE11_P99_MAX_MS:g} ms and errors <= {DOUBLE11_ERROR_RATE_MAX:.1%} over "
        f"{scenario.peak.step_s:g} s steps ({steps}); {plan.workers} client processes; ledger checked "
        f"({check.movements_checked:,} movements); plot {png_path.name}"
    )
    peak_figure = figure(
        "double11_peak_sustained_per_s", round(peak.peak_per_s, 1), "requests/s", backend, notes
    )
    return [*figures, *payments, *per_core, peak_figure, *bulk]


def per_core_figures(plan: BenchPlan, storage: StorageSettings, backend: str) -> list[Figure]:
    """Unary transfers through `jubao-server serve` running one gRPC process per core on a store of their
    own (a fresh SQLite file or keyspace: the bulk bench's synthetic journal does not reconcile), the
    clients' calls round robin over the processes, beside the figures of one process; the ledger is
    checked against the load."""
    if storage.backend == "sqlite":
        own_file = storage.sqlite.model_copy(update={"path": storage.sqlite.path.with_suffix(".cores.db")})
        storage = storage.model_copy(update={"sqlite": own_file})
    else:
        own_keyspace = storage.cassandra.model_copy(update={"keyspace": PER_CORE_KEYSPACE})
        storage = storage.model_copy(update={"cassandra": own_keyspace})
    settings = {**_storage_env(storage), "JUBAO_SERVER__PROCESSES": "0", "JUBAO_BULK__ENABLED": "false"}
    with serving(None, None, settings) as target, Engine(plan.workers) as engine:
        run, setup = prepare(target, plan.scenario())
        name = "payments_transfer_unary_per_core_processes"
        figures, moved = unary_figures(engine, run, plan.payments, backend, name)
        check = verify(target, Tally.merge([setup, moved]), run.names.every())
    print(f"bench: one process per core on {backend}: {check.summary()}")
    if not check.passed:
        raise BenchCheckFailed(check.summary())
    processes = f"{len(target.server_pids)} gRPC processes of one jubao-server serve"
    return [{**found, "notes": f"{processes}; {found['notes']}"} for found in figures]


def _storage_env(storage: StorageSettings) -> dict[str, str]:
    """The JUBAO_* variables that point a server process at `storage`."""
    if storage.backend == "cassandra":
        keyspace = storage.cassandra.keyspace
        return {"JUBAO_STORAGE__BACKEND": "cassandra", "JUBAO_STORAGE__CASSANDRA__KEYSPACE": keyspace}
    return {"JUBAO_STORAGE__SQLITE__PATH": str(storage.sqlite.path)}


def _mix(scenario: Scenario) -> str:
    return ", ".join(f"{kind} {weight}" for kind, weight in scenario.mix)


def cassandra_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 9042), timeout=1):
            return True
    except OSError:
        print("bench: no Cassandra node on 127.0.0.1:9042; its figures are left out (make cassandra-up)")
        return False


def drop_bench_keyspace() -> None:
    """Every run starts from empty bench keyspaces."""
    from cassandra.cluster import Cluster  # noqa: PLC0415 (only the bench drops keyspaces)

    cluster = Cluster(["127.0.0.1"], protocol_version=5)
    try:
        session = cluster.connect()
        for keyspace in (BENCH_KEYSPACE, PER_CORE_KEYSPACE):
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        cluster.shutdown()
