"""`python -m loadtest chaos [--short]` (`make chaos`): the Double 11 mix at a constant rate against two
jubao servers on the three-node cluster, while a schedule of faults runs, then the harness's check.

The faults, one after another, each followed by a time to recover:
1. node kill: SIGKILL a Cassandra node, keep it down, start it again (it rejoins; hinted handoff gives it
   the writes it missed, see ARCHITECTURE.md);
2. server kill: SIGKILL a jubao server, start it again on its port (its shards go to the other server once
   their leases run out);
3. server pause: SIGSTOP a server past its lease, then SIGCONT (the other takes its shards; the paused one,
   fenced by the higher epoch, must write nothing when it wakes);
4. node and server kill: both at once.

After each fault's recovery time the next fault (or the end of the load) waits until throughput is back
to `recovered_share_min` of the rate before the first fault, for `back_wait_max_s` at most: on a slow
machine a node's start and its hints take minutes, and a fault on top of a half-recovered cluster is two
faults at once, which RF 3 at QUORUM does not promise to survive.

Per fault the report gives the requests that failed from its start to the next fault's (by status), the
tenant's longest time without a successful call, the time until throughput was back to
`recovered_share_min` of the rate before the first fault, and the money lost or duplicated (the check of
the whole run: 0, or the run fails). JSON and a PNG (faults marked on the time axis) go to
loadtest/results/, the table to stdout; when the check fails, the table ends with a digest of what the
servers and the nodes logged during the run (`loadtest.logs`)."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from loadtest import bounds, logs
from loadtest.check import CheckReport
from loadtest.cluster import (
    NODES,
    ClusterError,
    ClusterServers,
    cluster_dir,
    cluster_lock,
    cluster_servers,
    fresh_keyspace,
    node_command,
    nodes_up,
    wait_s,
)
from loadtest.engine import Engine, OpenLoop, Segment, Target
from loadtest.harness import Run, load, prepare, verify
from loadtest.report import (
    check_json,
    machine,
    now_iso,
    progress_line,
    seconds_json,
    window_json,
    write_report,
)
from loadtest.scenario import Accounts, Profile, Scenario, load_scenario
from loadtest.server_process import BENCH_QUOTA, provision_key
from loadtest.stats import Series, Window
from loadtest.tally import Tally

SCENARIO: Final = "double11_short"  # the Double 11 mix, at the plan's constant rate, on fewer accounts:
ACCOUNTS: Final = Accounts(customers=200, merchants=20, hot_merchants=3, hot_share=0.3)
# The server's default deadline rather than the scenario's 5 s: on a busy cluster a call that would succeed
# can take longer, and each one that times out is sent again, adding to the load.
DEADLINE_MS: Final = 10_000
recovered_share_min: Final = 0.8
recovery_window_s: Final = 3
back_wait_max_s: Final = 600.0
back_poll_s: Final = 1.0
# The first seconds of the load (connections, caches) do not count towards the rate before the faults.
warm_up_s: Final = 2
load_start_timeout_s: Final = bounds.worker_start_timeout_s + 30.0
REPAIR_NOTE: Final = (
    "no nodetool repair: the nodes run without JMX, which nodetool needs. None is needed: hinted handoff "
    "replays the writes a node missed while down (its window, 3 h, is far longer than the outage), and "
    "every read at QUORUM overlaps every acknowledged write, repairing the replica it finds stale"
)


@dataclasses.dataclass(frozen=True)
class ChaosPlan:
    """How long each part of a chaos run lasts; a node's start takes what it takes on top."""

    name: str
    rate_per_s: float
    lease_ms: int
    baseline_s: float  # load before the first fault
    node_down_s: float
    server_down_s: float
    pause_s: float  # past the lease, so the other server takes the paused one's shards
    recover_s: float  # after each fault's last action, before the next fault (or the end)
    load_max_s: float  # the load ends when the schedule does; this bounds it

    def __post_init__(self) -> None:
        if self.pause_s * 1000 <= self.lease_ms:
            raise ValueError(f"a pause of {self.pause_s} s does not outlast the {self.lease_ms} ms lease")


# The servers' default lease (10 s): a shorter one looks quicker to fail over, but on a busy machine a
# renewal (a Paxos write on the cluster) can take seconds, the lease runs out under a live owner and the
# shards go back and forth between the servers with no fault at all (seen at 3 s, load average 40).
FULL: Final = ChaosPlan(
    "chaos",
    rate_per_s=20,
    lease_ms=10_000,
    baseline_s=30,
    node_down_s=45,
    server_down_s=10,
    pause_s=20,
    recover_s=40,
    load_max_s=1_500,
)
SHORT: Final = ChaosPlan(
    "chaos_short",
    rate_per_s=10,
    lease_ms=10_000,
    baseline_s=8,
    node_down_s=5,
    server_down_s=2,
    pause_s=13,
    recover_s=10,
    load_max_s=900,
)


@dataclasses.dataclass
class Fault:
    """A fault as it ran: when it started, each action (seconds since the load's start), when it ended."""

    name: str
    description: str
    started_s: float
    actions: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    ended_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class ChaosOutcome:
    document: dict[str, Any]
    report: CheckReport
    json_path: Path
    png_path: Path

    @property
    def passed(self) -> bool:
        return self.report.passed and self.document["money"]["lost_or_duplicated_minor"] == 0


class LoadWatch:
    """The load's successes per second as the progress lines report them (from the engine's thread), for
    the schedule to see whether throughput is back before its next step."""

    def __init__(self, baseline_s: float) -> None:
        self._baseline_end = int(baseline_s)
        self._ok: dict[int, int] = {}
        self._lock = threading.Lock()

    def record(self, second: int, window: Window) -> None:
        with self._lock:
            self._ok[second] = window.ok

    def back(self) -> bool:
        """Whether the last `recovery_window_s` whole seconds are back by `recovered_after_s`'s measure
        against the baseline (the seconds from `warm_up_s` to the first fault); the second under way
        is not whole yet."""
        with self._lock:
            last = max(self._ok, default=-1)
            ok_per_s = [self._ok.get(second, 0) for second in range(last)]
        baseline = ok_per_s[warm_up_s : self._baseline_end]
        if not baseline or last < self._baseline_end + recovery_window_s:
            return True
        baseline_per_s = sum(baseline) / len(baseline)
        return recovered_after_s(ok_per_s, last - recovery_window_s, last, baseline_per_s) is not None


class Schedule:
    """Runs the faults on the servers and nodes, timing every action from the load's start."""

    def __init__(self, servers: ClusterServers, plan: ChaosPlan, start_s: float, watch: LoadWatch) -> None:
        self.servers = servers
        self.plan = plan
        self.start_s = start_s
        self.watch = watch
        self.faults: list[Fault] = []

    def now_s(self) -> float:
        return time.monotonic() - self.start_s

    def act(self, fault: Fault, what: str, action: Callable[[], None]) -> None:
        at_s = self.now_s()
        print(f"  >> {at_s:7.1f}s  {fault.name}: {what}", flush=True)
        action()
        fault.actions.append((round(at_s, 2), what))

    def run(self, stop: Callable[[], None]) -> None:
        """Every fault in turn, each followed by its recovery, then `stop()`."""
        wait_s(self.start_s + self.plan.baseline_s)
        for fault in (self.node_kill, self.server_kill, self.server_pause, self.node_and_server_kill):
            done = fault()
            done.ended_s = round(self.now_s(), 2)
            self.faults.append(done)
            wait_s(self.start_s + done.ended_s + self.plan.recover_s)
            self.wait_back()
        stop()

    def wait_back(self) -> None:
        """Wait until the load is back (`LoadWatch.back`), `back_wait_max_s` at most."""
        if self.watch.back():
            return
        for _ in range(int(back_wait_max_s / back_poll_s)):
            time.sleep(back_poll_s)
            if self.watch.back():
                print(f"  >> {self.now_s():7.1f}s  load back", flush=True)
                return
        print(f"  >> {self.now_s():7.1f}s  load not back after {back_wait_max_s:g} s; going on", flush=True)

    def begin(self, name: str, description: str) -> Fault:
        return Fault(name, description, round(self.now_s(), 2))

    def node_kill(self) -> Fault:
        node = 3
        fault = self.begin(
            "node kill", f"SIGKILL Cassandra node {node}, {self.plan.node_down_s:g} s down, start it again"
        )
        self.act(fault, f"SIGKILL node {node}", lambda: node_command("down", node, kill=True))
        wait_s(self.start_s + fault.started_s + self.plan.node_down_s)
        self.act(fault, f"start node {node}", lambda: nodes_up(node))
        fault.actions.append((round(self.now_s(), 2), f"node {node} answers"))
        return fault

    def server_kill(self) -> Fault:
        fault = self.begin(
            "server kill", f"SIGKILL server 1, {self.plan.server_down_s:g} s down, start it again on its port"
        )
        self.act(fault, "SIGKILL server 1", lambda: self.servers.kill(1))
        wait_s(self.start_s + fault.started_s + self.plan.server_down_s)
        self.act(fault, "start server 1", lambda: self.servers.restart(1))
        fault.actions.append((round(self.now_s(), 2), "server 1 serving"))
        return fault

    def server_pause(self) -> Fault:
        lease_s = self.plan.lease_ms / 1000
        fault = self.begin(
            "server pause",
            f"SIGSTOP server 0 for {self.plan.pause_s:g} s (its lease: {lease_s:g} s), SIGCONT",
        )
        self.act(fault, "SIGSTOP server 0", lambda: self.servers.pause(0))
        wait_s(self.start_s + fault.started_s + self.plan.pause_s)
        self.act(fault, "SIGCONT server 0", lambda: self.servers.resume(0))
        return fault

    def node_and_server_kill(self) -> Fault:
        node = 2
        plan = self.plan
        fault = self.begin(
            "node + server kill",
            f"SIGKILL Cassandra node {node} and server 1 at once; server 1 back after "
            f"{plan.server_down_s:g} s, the node after {plan.node_down_s:g} s",
        )

        def kill_both() -> None:
            node_command("down", node, kill=True)
            self.servers.kill(1)

        self.act(fault, f"SIGKILL node {node} and server 1", kill_both)
        wait_s(self.start_s + fault.started_s + plan.server_down_s)
        self.act(fault, "start server 1", lambda: self.servers.restart(1))
        wait_s(self.start_s + fault.started_s + plan.node_down_s)
        self.act(fault, f"start node {node}", lambda: nodes_up(node))
        fault.actions.append((round(self.now_s(), 2), f"node {node} answers"))
        return fault


def run_chaos(plan: ChaosPlan, workers: int, output_dir: Path, keyspace: str | None = None) -> ChaosOutcome:
    """The whole run, holding the cluster's lock: a keyspace of its own (`keyspace`, kept, or a fresh one,
    dropped at the end), a fresh tenant, the load and the faults, the check, the report."""
    started_at = now_iso()
    scenario = chaos_scenario()
    chosen = keyspace or fresh_keyspace("jubao_chaos")
    with cluster_lock(), cluster_servers(chosen, plan.lease_ms, drop=keyspace is None) as servers:
        nodes_dir = cluster_dir()
        node_logs = {} if nodes_dir is None else logs.node_logs(nodes_dir, NODES)
        marks = logs.mark(node_logs.values())
        tenant_id = f"chaos-{uuid.uuid4().hex[:12]}"
        api_key = provision_key(servers.addresses[0], tenant_id, BENCH_QUOTA, f"create-{tenant_id}")
        target = Target(servers.addresses[0], api_key, members=servers.addresses)
        run, setup = prepare(target, scenario)
        print(
            f"{plan.name}: tenant {tenant_id} in keyspace {chosen}, {len(run.names.every()):,} accounts; "
            f"{plan.rate_per_s:g}/s of the {scenario.name} mix from {workers} workers, servers "
            f"{', '.join(servers.addresses)}",
            flush=True,
        )
        segment, faults = _load_under_faults(run, servers, plan, workers)
        tally = Tally.merge([setup, segment.tally])
        report = verify(target, tally, run.names.every())
        diagnosis = [] if report.passed else _diagnosis(servers.scratch, node_logs, marks)
    document = chaos_document(plan, scenario, segment, faults, (report, tally)) | {
        "diagnosis": diagnosis,
        "workers": workers,
        "started_at": started_at,
        "machine": machine(),
        "keyspace": chosen,
        "tenant": tenant_id,
    }
    json_path, png_path = write_report(document, output_dir, plan.name)
    return ChaosOutcome(document, report, json_path, png_path)


def _diagnosis(scratch: Path, node_logs: dict[str, Path], marks: dict[Path, int]) -> list[str]:
    """What the servers (their logs in `scratch`) and the nodes (since `marks`) logged, as table lines."""
    digests = [logs.digest_server(path.stem, path) for path in sorted(scratch.glob("server-*.log"))]
    digests += [logs.digest_node(name, path, marks[path]) for name, path in node_logs.items()]
    return [line for digest in digests for line in digest.lines()]


def chaos_scenario() -> Scenario:
    """The Double 11 mix of the chaos and noisy-neighbour runs (their rates are their plans')."""
    return dataclasses.replace(load_scenario(Path(SCENARIO)), accounts=ACCOUNTS, deadline_ms=DEADLINE_MS)


def _load_under_faults(
    run: Run, servers: ClusterServers, plan: ChaosPlan, workers: int
) -> tuple[Segment, list[Fault]]:
    """The load in a thread, the schedule here; the load stops once the schedule is done."""
    started = threading.Event()
    start_s = [0.0]
    profile = Profile.constant(plan.rate_per_s, plan.load_max_s)
    watch = LoadWatch(plan.baseline_s)

    def progress(second: int, window: Window) -> None:
        if not started.is_set():
            start_s[0] = time.monotonic() - (second + 1)
            started.set()
        watch.record(second, window)
        print(progress_line(second, window, plan.rate_per_s), flush=True)

    outcome: list[Segment] = []
    failure: list[BaseException] = []
    with Engine(workers, progress) as engine:

        def drive() -> None:
            try:
                outcome.append(load(engine, run, OpenLoop(profile)))
            except BaseException as error:  # handed to the main thread
                failure.append(error)
                started.set()

        loader = threading.Thread(target=drive, name="chaos-load")
        loader.start()
        schedule: Schedule | None = None
        try:
            if not started.wait(load_start_timeout_s) or failure:
                raise ClusterError(f"the load did not start: {failure}")
            schedule = Schedule(servers, plan, start_s[0], watch)
            schedule.run(engine.stop)
        finally:
            engine.stop()
            loader.join()
    if failure:
        raise failure[0]
    if schedule is None:
        raise ClusterError("the load did not start")
    return outcome[0], schedule.faults


def chaos_document(
    plan: ChaosPlan,
    scenario: Scenario,
    segment: Segment,
    faults: list[Fault],
    checked: tuple[CheckReport, Tally],
) -> dict[str, Any]:
    report, tally = checked
    series = segment.series
    baseline = series.window(warm_up_s, int(plan.baseline_s))
    money = {
        "lost_or_duplicated_minor": report.balances_off_minor,
        "missing_movements": report.missing_total,
        "duplicated_movements": report.duplicated_total,
    }
    rows = fault_rows(series, faults, baseline.achieved_per_s, money["lost_or_duplicated_minor"])
    return {
        "command": "chaos",
        "scenario": plan.name,
        "description": f"the {scenario.name} mix at {plan.rate_per_s:g}/s under a fault schedule",
        "backend": "cassandra cluster (3 nodes, RF 3, QUORUM/SERIAL), 2 servers",
        "plan": dataclasses.asdict(plan),
        "baseline_ok_per_s": round(baseline.achieved_per_s, 1),
        "faults": rows,
        "money": money,
        "repair": REPAIR_NOTE,
        "totals": window_json(series.window(0, series.seconds)),
        "by_kind": {kind: window_json(window) for kind, window in segment.kinds},
        "seconds": seconds_json(segment, Profile.constant(plan.rate_per_s, series.seconds)),
        "check": check_json(report, tally),
    }


def fault_rows(
    series: Series, faults: list[Fault], baseline_per_s: float, money_off_minor: int
) -> list[dict[str, Any]]:
    """Each fault's figures over its window: from its start to the next fault's (the last: the end)."""
    ends = [fault.started_s for fault in faults[1:]] + [float(series.seconds)]
    ok_per_s = [series.second(second).ok for second in range(series.seconds)]
    rows = []
    for fault, end_s in zip(faults, ends, strict=True):
        window = series.window(int(fault.started_s), int(end_s))
        rows.append(
            {
                "name": fault.name,
                "description": fault.description,
                "started_s": fault.started_s,
                "ended_s": fault.ended_s,
                "window_end_s": round(end_s, 2),
                "actions": [{"at_s": at_s, "what": what} for at_s, what in fault.actions],
                "failed": dict(window.errors),
                "failed_total": window.error_count,
                "ok": window.ok,
                "longest_ok_gap_s": round(series.longest_ok_gap_s(fault.started_s, end_s), 2),
                "recovered_after_s": recovered_after_s(ok_per_s, fault.started_s, end_s, baseline_per_s),
                "money_lost_or_duplicated_minor": money_off_minor,
            }
        )
    return rows


def recovered_after_s(
    ok_per_s: list[int], start_s: float, end_s: float, baseline_per_s: float
) -> float | None:
    """Seconds from `start_s` until throughput was back for good (within the window): the end of the
    last second whose next `recovery_window_s` seconds average under `recovered_share_min` of the
    baseline; 0 when it never dropped, None when it was not back before `end_s`."""
    threshold = recovered_share_min * baseline_per_s
    last_low: int | None = None
    for second in range(int(start_s), int(end_s) - recovery_window_s + 1):
        ahead = ok_per_s[second : second + recovery_window_s]
        if sum(ahead) < threshold * recovery_window_s:
            last_low = second
    if last_low is None:
        return 0.0
    if last_low + 1 + recovery_window_s > end_s:
        return None
    return round(max(0.0, last_low + 1 - start_s), 2)


def table(document: dict[str, Any]) -> str:
    """The faults' figures as a table, for the end of the run."""
    lines = [
        f"{document['scenario']}: baseline {document['baseline_ok_per_s']:g} ok/s; recovered = back to "
        f"{recovered_share_min:.0%} of it over {recovery_window_s} s",
        f"  {'fault':<20} {'from-to s':>13} {'failed (by status)':<44} {'longest gap s':>13} "
        f"{'recovered s':>11} {'lost/dup':>8}",
    ]
    for row in document["faults"]:
        failed = ", ".join(f"{status} {count}" for status, count in row["failed"].items()) or "none"
        recovered = row["recovered_after_s"]
        span = f"{row['started_s']:.0f}-{row['window_end_s']:.0f}"
        lines.append(
            f"  {row['name']:<20} {span:>13} {failed:<44} {row['longest_ok_gap_s']:>13.2f} "
            f"{'not yet' if recovered is None else f'{recovered:.0f}':>11} "
            f"{row['money_lost_or_duplicated_minor']:>8}"
        )
    money = document["money"]
    lines.append(
        f"  money lost or duplicated: {money['lost_or_duplicated_minor']} minor units "
        f"({money['missing_movements']} movements missing, {money['duplicated_movements']} duplicated)"
    )
    if document.get("diagnosis"):
        lines.append("  what the servers and the nodes logged during the run (warnings and errors):")
        lines += document["diagnosis"]
    return "\n".join(lines)
