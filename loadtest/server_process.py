"""Run `jubao-server serve` (the supervisor, its gRPC server and its Arrow Flight server) or the bench's bare
echo server as a child process on free loopback ports, and stop it with SIGTERM; find the gRPC server's
process and read the CPU time it used; give the load a tenant of its own with quotas far above what it
offers."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.client import Client, ClientConfig
from jubao_server.platform import supervisor

REPO: Final = Path(__file__).resolve().parent.parent
BENCH_TENANT: Final = "bench-tenant"
start_timeout_s: Final = 60.0
# Past the supervisor's own wait for its children, after which it kills them and exits.
stop_timeout_s: Final = supervisor.stop_timeout_s + 15.0
poll_interval_s: Final = 0.2
log_tail_max_chars: Final = 4000
# Answers whether the server at the channel serves yet (raising grpc.RpcError while it cannot answer).
Probe = Callable[[grpc.Channel], bool]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, env: dict[str, str], log_path: Path, port: int | None = None, timeout_s: float = start_timeout_s
    ) -> ServerProcess:
        """Start a server with `env` (JUBAO_* settings) added, logging to `log_path`, and wait (at most
        `timeout_s`) until health says SERVING; on `port` (a restart where its clients expect it) or a
        free one."""
        port = port or free_port()
        settings = {
            "JUBAO_SERVER__PORT": str(port),
            "JUBAO_BULK__PORT": "0",
            "JUBAO_BULK__PROMETHEUS_PORT": "0",
            "JUBAO_TELEMETRY__PROMETHEUS_PORT": str(free_port()),
            **env,
        }
        command = [sys.executable, "-m", "jubao_server", "serve"]
        server = cls.spawn(command, settings, port, log_path, _health_serving, timeout_s=timeout_s)
        bulk_port = int(settings["JUBAO_BULK__PORT"])
        if bulk_port:
            # gRPC can say SERVING before the Flight process beside it listens: a caller given the bulk
            # port must find it there.
            server.wait_listening(bulk_port, timeout_s)
        return server

    @classmethod
    def spawn(
        cls,
        command: list[str],
        env: dict[str, str],
        port: int,
        log_path: Path,
        ready: Probe,
        *,
        timeout_s: float = start_timeout_s,
    ) -> ServerProcess:
        """Run `command` (a server on `port`) with `env` added, logging to `log_path`, and wait until
        `ready` says it serves."""
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        server = cls(process, port, log_path)
        server.wait_serving(ready, timeout_s)
        for member in server.member_addresses():  # each gRPC process of the machine, on its own port
            dataclasses.replace(server, port=int(member.rpartition(":")[2])).wait_serving(ready, timeout_s)
        return server

    def wait_serving(self, ready: Probe, timeout_s: float = start_timeout_s) -> None:
        deadline_s = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.address) as channel:
            while time.monotonic() < deadline_s:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"server exited {self.process.returncode}: {self.log_text()[-log_tail_max_chars:]}"
                    )
                try:
                    if ready(channel):
                        return
                except grpc.RpcError:
                    time.sleep(poll_interval_s)
        self.kill()
        raise RuntimeError("server did not become SERVING in time")

    def wait_listening(self, port: int, timeout_s: float = start_timeout_s) -> None:
        """Wait (at most `timeout_s`) until something of this server accepts connections on `port`."""
        deadline_s = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / poll_interval_s) + 1):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited {self.process.returncode}: {self.log_text()[-log_tail_max_chars:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), poll_interval_s):
                return
            if time.monotonic() >= deadline_s:
                break
            time.sleep(poll_interval_s)
        self.kill()
        raise RuntimeError(f"server did not listen on port {port} in time")

    def terminate(self) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(stop_timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def serving_pids(self) -> tuple[int, ...]:
        """The processes that answer the calls: the supervisor's gRPC children (`serve-grpc`) when this is
        `jubao-server serve`, else this process."""
        children = self._grpc_children()
        return tuple(children) if children else (self.process.pid,)

    def member_addresses(self) -> tuple[str, ...]:
        """The own addresses of the gRPC children when the supervisor runs several (their `--members`)."""
        for arguments in self._grpc_children().values():
            if "--members" in arguments:
                return tuple(arguments[arguments.index("--members") + 1].split(","))
        return ()

    def _grpc_children(self) -> dict[int, list[str]]:
        children: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _parent_pid(entry) == self.process.pid:
                with contextlib.suppress(OSError):
                    arguments = (entry / "cmdline").read_bytes().decode().split("\0")
                    if "serve-grpc" in arguments:
                        children[int(entry.name)] = arguments
        return children


def _health_serving(channel: grpc.Channel) -> bool:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _parent_pid(process: Path) -> int | None:
    try:
        stat = (process / "stat").read_text()
    except OSError:  # the process ended meanwhile
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (every thread), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces), from the 3rd on: utime is the 14th, stime 15th.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_written_bytes(pid: int) -> int:
    """What a process (every thread) had storage write for it so far (`write_bytes` of /proc/<pid>/io):
    its files' pages as the kernel writes them back or syncs them, whoever ends up writing them."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "write_bytes":
            return int(value)
    raise OSError(f"/proc/{pid}/io has no write_bytes")


def demo_key(tenant_id: str) -> str:
    """The API key of a demo tenant (`tenants/demo-keys.txt`)."""
    demo = dict(
        line.split(" ", 1)
        for line in (REPO / "tenants" / "demo-keys.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    return demo[tenant_id]


# Far above what any load of the harness offers.
BENCH_QUOTA: Final = admin_pb.Quota(
    requests_per_s=100_000, burst_requests=100_000, concurrent_calls_max=10_000
)


def provision_bench_key(address: str) -> str:
    """Create (once) a tenant with quotas far above what the bench offers, and issue it a key."""
    return provision_key(address, BENCH_TENANT, BENCH_QUOTA, "bench-create")


def provision_key(address: str, tenant_id: str, quota: admin_pb.Quota, request_id: str) -> str:
    """Create (once: `request_id` makes the creation a retry) the tenant `tenant_id` with `quota` through
    TenantAdmin, and issue it a key."""
    tenant = admin_pb.Tenant(
        tenant_id=tenant_id,
        display_name=tenant_id,
        kind=admin_pb.TENANT_KIND_PLATFORM,
        quota=quota,
        products=[admin_pb.PRODUCT_PAYMENTS, admin_pb.PRODUCT_FUND_TA, admin_pb.PRODUCT_COCREATION],
    )
    with Client(ClientConfig(endpoint=address, api_key=demo_key("demo-operator"))) as operator:
        operator.admin.CreateTenant(admin_pb.CreateTenantRequest(request_id=request_id, tenant=tenant))
        issued = operator.admin.IssueApiKey(admin_pb.IssueApiKeyRequest(tenant_id=tenant_id))
    return issued.secret
