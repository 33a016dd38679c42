"""A real bulk plane for the tests: a migrated store with the demo tenants, and the Flight server as its
own process (`python -m jubao_server.app.flight_server`) pointed at it."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pyarrow as pa
from jubao.bulk import schemas
from jubao.bulk.client import BulkClient
from jubao_server.bulk.store import BulkStore
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.contract import StorageBackend

from loadtest.server_process import free_port

REPO: Final = Path(__file__).resolve().parents[2]
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
JOBS_CLEARED_MAX: Final = 1000


@dataclasses.dataclass
class FlightProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    metrics_port: int
    scheme: str = "grpc+tcp"

    @property
    def location(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, env: dict[str, str], log_path: Path, scheme: str = "grpc+tcp") -> FlightProcess:
        """Start the Flight process with `env` (JUBAO_* settings) on a free port; return once it serves
        (at `scheme`: `grpc+tls` when `env` turns TLS on)."""
        read_fd, write_fd = os.pipe()
        command = [sys.executable, "-m", "jubao_server.app.flight_server", "--ready-fd", str(write_fd)]
        metrics_port = free_port()
        settings = {
            "JUBAO_BULK__PORT": "0",
            "JUBAO_BULK__PROMETHEUS_PORT": str(metrics_port),
            "JUBAO_TELEMETRY__LOG_LEVEL": "warning",
            **env,
        }
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**os.environ, **settings},
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
            )
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as ready:
            line = ready.readline()
        if not line:
            process.kill()
            raise RuntimeError(f"the Flight process did not start: {log_path.read_text()[-4000:]}")
        return cls(process, int(line), log_path, metrics_port, scheme)

    def client(self, api_key: str | None) -> BulkClient:
        return BulkClient(self.location, api_key)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(STOP_TIMEOUT_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def loaded_libraries(self) -> str:
        return Path(f"/proc/{self.process.pid}/maps").read_text()

    def metrics(self) -> str:
        """The process's Prometheus exposition."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
            text: str = answer.read().decode()
        return text


async def clear_jobs(backend: StorageBackend) -> None:
    """Forget the jobs earlier tests left in a shared store (Cassandra's test keyspace), so that the
    servers of this test apply its own uploads, as on a fresh SQLite file."""
    store = BulkStore(backend, SYSTEM_CLOCK)
    for _ in range(JOBS_CLEARED_MAX):
        jobs = await store.pending_jobs()
        if not jobs:
            return
        for job in jobs:
            await store.remove_job(job)


def batch_id() -> str:
    return f"b-{uuid.uuid4().hex[:16]}"


def transfers(
    rows: int,
    *,
    payers: Sequence[str] = ("settlement",),
    prefix: str = "r",
    payees: str = "a",
    first: int = 0,
) -> pa.Table:
    """`rows` valid transfers from `payers` in turn to accounts `<payees>0` .. `<payees>9`, 1 to 100 fen
    each."""
    numbers = range(first, first + rows)
    return pa.table(
        {
            "request_id": [f"{prefix}-{i}" for i in numbers],
            "payer": [payers[i % len(payers)] for i in numbers],
            "payee": [f"{payees}{i % 10}" for i in numbers],
            "amount_minor": pa.array([1 + i % 100 for i in numbers], pa.int64()),
            "currency": ["CNY"] * rows,
            "memo": [f"payroll {i}" if i % 3 else None for i in numbers],
        },
        schema=schemas.TRANSFERS,
    )
