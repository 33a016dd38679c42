"""`python -m loadtest noisy [--short]` (`make noisy-neighbour`): one tenant floods the servers far above its
quota while another, the victim, runs the Double 11 mix at a steady rate, on the three-node cluster (two
servers, as the chaos run). The victim runs the same load twice in one run, first alone and then under
the flood; the report gives its p99 and error rate in both, the flooder's answers by status, and the
check of the victim's ledger.

The flooder is a tenant created through TenantAdmin with a low quota (the demo tenants' are high); it sends
from its own process with `flood_callers` callers that ignore the RetryInfo of the refusals and together
offer `flood_rate_per_s`, many times its quota. The rate is paced: refusals come back at once, and callers
sending again as soon as answered spun at 600-700 calls a second, whose client CPU on the two cores the
servers share (not the servers' queues) raised the victim's p99 to 1.7-2.8 s."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import multiprocessing
import uuid
from pathlib import Path
from typing import Any, Final

from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.client import AsyncClient, ClientConfig, JubaoError
from jubao.payments.v1 import payments_pb2 as pb

from loadtest.chaos import chaos_scenario
from loadtest.cluster import cluster_lock, cluster_servers, fresh_keyspace
from loadtest.engine import Engine, OpenLoop, Segment, Target
from loadtest.harness import load, prepare, verify
from loadtest.report import check_json, machine, now_iso, window_json, write_json
from loadtest.scenario import Profile
from loadtest.server_process import BENCH_QUOTA, provision_key
from loadtest.stats import OK
from loadtest.tally import Tally

# The flooder's quota, per server process: 5 calls a second, 2 at once. Its client, on the same two cores,
# sent from 47 to 462 calls a second in a run: a flood must be far above the quota whatever the load.
FLOOD_QUOTA: Final = admin_pb.Quota(requests_per_s=5, burst_requests=5, concurrent_calls_max=2)
flood_deadline_s: Final = 5.0
flood_stop_timeout_s: Final = 60.0
flood_calls_per_caller_max: Final = 10_000_000
LEASE_MS: Final = 10_000


# The flood comes from this machine: with 32 callers its client process took a core of the two the servers
# and Cassandra share (635 calls a second) and the victim's p99 grew 7 times from that alone; paced at 150
# a second, the flood is 15 times the quota of the two servers.
@dataclasses.dataclass(frozen=True)
class NoisyPlan:
    name: str
    victim_rate_per_s: float
    phase_s: float  # the victim's load alone, then as long under the flood
    flood_callers: int
    flood_rate_per_s: float  # of all callers together


FULL: Final = NoisyPlan(
    "noisy_neighbour", victim_rate_per_s=20, phase_s=60, flood_callers=16, flood_rate_per_s=300
)
SHORT: Final = NoisyPlan(
    "noisy_neighbour_short", victim_rate_per_s=10, phase_s=15, flood_callers=8, flood_rate_per_s=150
)


@dataclasses.dataclass(frozen=True)
class NoisyOutcome:
    document: dict[str, Any]
    passed: bool
    json_path: Path


def run_noisy(plan: NoisyPlan, workers: int, output_dir: Path, keyspace: str | None = None) -> NoisyOutcome:
    """The run, holding the cluster's lock (no node is killed, but a chaos run's faults would blur the
    figures): a keyspace of its own (`keyspace`, kept, or a fresh one, dropped), two fresh tenants."""
    started_at = now_iso()
    scenario = chaos_scenario()
    chosen = keyspace or fresh_keyspace("jubao_noisy")
    suffix = uuid.uuid4().hex[:12]
    with cluster_lock(), cluster_servers(chosen, LEASE_MS, drop=keyspace is None) as servers:
        address = servers.addresses[0]
        victim_key = provision_key(address, f"victim-{suffix}", BENCH_QUOTA, f"create-victim-{suffix}")
        flooder_key = provision_key(address, f"flooder-{suffix}", FLOOD_QUOTA, f"create-flooder-{suffix}")
        target = Target(address, victim_key, members=servers.addresses)
        run, setup = prepare(target, scenario)
        profile = Profile.constant(plan.victim_rate_per_s, plan.phase_s)
        with Engine(workers) as engine:
            quiet = load(engine, run, OpenLoop(profile))
            flood = _start_flood(Target(address, flooder_key, members=servers.addresses), plan)
            try:
                flooded = load(engine, run, OpenLoop(profile))
            finally:
                flood_counts = _stop_flood(flood)
        tally = Tally.merge([setup, quiet.tally, flooded.tally])
        report = verify(target, tally, run.names.every())
    document = {
        "command": "noisy-neighbour",
        "scenario": plan.name,
        "backend": "cassandra cluster (3 nodes, RF 3, QUORUM/SERIAL), 2 servers",
        "plan": dataclasses.asdict(plan),
        "flooder_quota": {"requests_per_s": FLOOD_QUOTA.requests_per_s, "per": "server process"},
        "workers": workers,
        "started_at": started_at,
        "machine": machine(),
        "keyspace": chosen,
        "victim": {"alone": _victim(quiet), "flooded": _victim(flooded)},
        "flooder": _flooder(flood_counts, plan.phase_s),
        "check": check_json(report, tally),
    }
    json_path = write_json(document, output_dir, plan.name)
    return NoisyOutcome(document, report.passed, json_path)


def _victim(segment: Segment) -> dict[str, Any]:
    window = segment.series.window(0, segment.series.seconds)
    return window_json(window) | {"error_rate": round(window.error_rate, 6), "p99_ms": window.p99_ms}


def _flooder(counts: dict[str, int], duration_s: float) -> dict[str, Any]:
    sent = sum(counts.values())
    return {
        "answers": counts,
        "sent_per_s": round(sent / duration_s, 1),
        "ok_per_s": round(counts.get(OK, 0) / duration_s, 1),
    }


@dataclasses.dataclass
class _Flood:
    process: multiprocessing.process.BaseProcess
    stop: Any  # multiprocessing Event
    results: Any  # multiprocessing Queue of the counts


def _start_flood(target: Target, plan: NoisyPlan) -> _Flood:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results = context.Queue()
    process = context.Process(
        target=flood_main,
        args=(target.dial, target.api_key, plan, stop, results),
        daemon=True,
    )
    process.start()
    return _Flood(process, stop, results)


def _stop_flood(flood: _Flood) -> dict[str, int]:
    flood.stop.set()
    counts: dict[str, int] = flood.results.get(timeout=flood_stop_timeout_s)
    flood.process.join(flood_stop_timeout_s)
    return counts


def flood_main(endpoint: str, api_key: str, plan: NoisyPlan, stop: Any, results: Any) -> None:
    """The flooder's process: `plan.flood_callers` callers of ListAccounts offering `plan.flood_rate_per_s`
    together until `stop` is set; hands its answers' counts by status to `results`."""
    results.put(asyncio.run(_flood(endpoint, api_key, plan.flood_callers, plan.flood_rate_per_s, stop)))


async def _flood(endpoint: str, api_key: str, callers: int, rate_per_s: float, stop: Any) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    config = ClientConfig(endpoint=endpoint, api_key=api_key, retry_attempts_max=1)
    async with AsyncClient(config) as client:
        interval_s = callers / rate_per_s

        async def caller(index: int) -> None:
            request = pb.ListAccountsRequest(page_size=1)
            loop = asyncio.get_running_loop()
            due_s = loop.time() + index * interval_s / callers
            for _ in range(flood_calls_per_caller_max):
                await asyncio.sleep(max(0.0, due_s - loop.time()))
                if stop.is_set():
                    return
                # A caller behind its pace sends at once, without bursting to catch up.
                due_s = max(due_s, loop.time()) + interval_s
                try:
                    await client.payments.ListAccounts(request, timeout=flood_deadline_s)
                    counts[OK] += 1
                except JubaoError as error:
                    counts[error.code.name] += 1

        await asyncio.gather(*(caller(index) for index in range(callers)))
    return dict(counts)


def summary(document: dict[str, Any]) -> str:
    lines = [f"{document['scenario']}: the victim's load alone, then under the flood"]
    for phase, figures in document["victim"].items():
        lines.append(
            f"  victim {phase:<8} ok {figures['ok']:>6}  p50 {figures['latency_ms']['p50']:8.1f} ms  "
            f"p99 {figures['p99_ms']:8.1f} ms  error rate {figures['error_rate']:.4%}  {figures['errors']}"
        )
    flooder = document["flooder"]
    quota_per_s = document["flooder_quota"]["requests_per_s"]
    lines.append(
        f"  flooder sent {flooder['sent_per_s']:g}/s (quota {quota_per_s}/s per server), "
        f"ok {flooder['ok_per_s']:g}/s: {flooder['answers']}"
    )
    return "\n".join(lines)
