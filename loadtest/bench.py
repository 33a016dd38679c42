"""`make bench`: measure and write `loadtest/results/latest.json`.

Format: `{"machine": {...}, "started_at": "...", "mode": "quick|full", "figures": [{"name", "value", "unit",
"backend", "notes"}]}`. Every run measures the empty-RPC ceiling (`grpc_empty_rpc_per_s`: authenticated
Ping calls through the same server, pipeline and SDK) so that other figures read as fractions of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
import platform
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Final

from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.client import Client, ClientConfig
from jubao_server.storage.cassandra.testing import NodeUnavailable
from jubao_server.storage.config import CassandraSettings, SqliteSettings, StorageSettings
from jubao_server.storage.contract import StorageBackend, StorageError
from jubao_server.storage.factory import migrate_product, open_backend

from loadtest.payments_bench import PaymentsPlan, payments_figures
from loadtest.report import Figure, figure
from loadtest.rpc_bench import RpcLoad, measure
from loadtest.server_process import REPO, ServerProcess
from loadtest.storage_bench import run_storage_bench

RESULTS: Final = REPO / "loadtest" / "results"
BENCH_TENANT: Final = "bench-tenant"
BENCH_KEYSPACE: Final = "jubao_bench"


@dataclasses.dataclass(frozen=True)
class BenchPlan:
    mode: str
    rpc_seconds: float
    rpc_warmup_s: float
    rpc_concurrency: int
    rpc_workers: int
    storage_seconds: float
    payments: PaymentsPlan

    @classmethod
    def of(cls, quick: bool) -> BenchPlan:
        workers = os.cpu_count() or 1
        if quick:
            return cls("quick", 8.0, 2.0, 32, workers, 3.0, PaymentsPlan(2_000, 8.0, 2.0, 32, workers))
        return cls("full", 30.0, 5.0, 64, workers, 15.0, PaymentsPlan(10_000, 30.0, 5.0, 64, workers))


def machine() -> dict[str, Any]:
    load_1m, load_5m, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_1m_at_start": round(load_1m, 2),
        "load_average_5m_at_start": round(load_5m, 2),
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine()
    )


def provision_bench_key(address: str) -> str:
    """Create (once) a tenant with quotas far above what the bench offers, and issue it a key."""
    demo = dict(
        line.split(" ", 1)
        for line in (REPO / "tenants" / "demo-keys.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    quota = admin_pb.Quota(requests_per_s=100_000, burst_requests=100_000, concurrent_calls_max=10_000)
    tenant = admin_pb.Tenant(
        tenant_id=BENCH_TENANT,
        display_name="Benchmark",
        kind=admin_pb.TENANT_KIND_PLATFORM,
        quota=quota,
        products=[admin_pb.PRODUCT_PAYMENTS, admin_pb.PRODUCT_FUND_TA, admin_pb.PRODUCT_COCREATION],
    )
    with Client(ClientConfig(endpoint=address, api_key=demo["demo-operator"])) as operator:
        operator.admin.CreateTenant(admin_pb.CreateTenantRequest(request_id="bench-create", tenant=tenant))
        issued = operator.admin.IssueApiKey(admin_pb.IssueApiKeyRequest(tenant_id=BENCH_TENANT))
    return issued.secret


def rpc_figures(plan: BenchPlan, address: str, api_key: str) -> list[Figure]:
    load = RpcLoad(
        address, api_key, plan.rpc_seconds, plan.rpc_warmup_s, plan.rpc_concurrency, plan.rpc_workers
    )
    result = measure(load)
    notes = (
        f"MetaService.Ping with API key auth, quota and telemetry; {load.workers} client processes x "
        f"{load.concurrency} in flight (closed loop); {result.calls} calls, {result.errors} errors in "
        f"{load.seconds:.0f} s"
    )
    return [
        figure("grpc_empty_rpc_per_s", round(result.calls_per_s), "calls/s", "none", notes),
        figure(
            "grpc_empty_rpc_p50_ms", round(result.percentile_ms(50), 3), "ms", "none", "at the ceiling load"
        ),
        figure(
            "grpc_empty_rpc_p99_ms", round(result.percentile_ms(99), 3), "ms", "none", "at the ceiling load"
        ),
    ]


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
            await migrate_product(backend)
            figures += await run_storage_bench(backend, plan.storage_seconds)
        finally:
            await backend.close()
    return figures


async def _open_or_none(settings: StorageSettings) -> StorageBackend | None:
    try:
        return await open_backend(settings)
    except (StorageError, NodeUnavailable, ConnectionError, OSError) as error:
        print(f"bench: {settings.backend}: {error}")
        return None


def run(quick: bool, output: Path) -> dict[str, Any]:
    plan = BenchPlan.of(quick)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    report: dict[str, Any] = {
        "machine": machine(),
        "started_at": started_at,
        "mode": plan.mode,
        "figures": [],
    }
    scratch = Path(tempfile.mkdtemp(prefix="jubao-bench-", dir=_scratch_root()))
    cassandra = cassandra_reachable()
    try:
        if cassandra:
            drop_bench_keyspace()
        report["figures"] += server_figures(
            plan, {"JUBAO_STORAGE__SQLITE__PATH": str(scratch / "server.db")}, "sqlite"
        )
        if cassandra:
            settings = {
                "JUBAO_STORAGE__BACKEND": "cassandra",
                "JUBAO_STORAGE__CASSANDRA__KEYSPACE": BENCH_KEYSPACE,
            }
            report["figures"] += server_figures(plan, settings, "cassandra")
        report["figures"] += asyncio.run(storage_figures(plan, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return report


def server_figures(plan: BenchPlan, settings: dict[str, str], backend: str) -> list[Figure]:
    """Figures measured through a server process on `backend`; the empty-RPC ceiling on the first."""
    server = ServerProcess.start({**settings, "JUBAO_TELEMETRY__LOG_LEVEL": "warning"})
    try:
        key = provision_bench_key(server.address)
        figures = rpc_figures(plan, server.address, key) if backend == "sqlite" else []
        return figures + payments_figures(plan.payments, server.address, key, backend)
    finally:
        server.terminate()


def cassandra_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 9042), timeout=1):
            return True
    except OSError:
        print("bench: no Cassandra node on 127.0.0.1:9042; its figures are left out (make cassandra-up)")
        return False


def drop_bench_keyspace() -> None:
    """Every run starts from an empty bench keyspace."""
    from cassandra.cluster import Cluster  # noqa: PLC0415 (only the bench drops keyspaces)

    cluster = Cluster(["127.0.0.1"], protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {BENCH_KEYSPACE}", timeout=60)
    finally:
        cluster.shutdown()


def _scratch_root() -> Path:
    root = REPO / "var" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    return root
