"""Run `jubao-server serve` as a child process on a free loopback port, and stop it with SIGTERM."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO: Final = Path(__file__).resolve().parent.parent
start_timeout_s: Final = 60.0
stop_timeout_s: Final = 30.0
poll_interval_s: Final = 0.2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, env: dict[str, str]) -> ServerProcess:
        """Start a server with `env` (JUBAO_* settings) added, and wait until health says SERVING."""
        port = free_port()
        settings = {
            "JUBAO_SERVER__PORT": str(port),
            "JUBAO_TELEMETRY__PROMETHEUS_PORT": str(free_port()),
            **env,
        }
        command = [sys.executable, "-m", "jubao_server", "serve"]
        process = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **settings}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        server = cls(process, port)
        server.wait_serving()
        return server

    def wait_serving(self) -> None:
        deadline_s = time.monotonic() + start_timeout_s
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline_s:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited {self.process.returncode}: {self.stderr_text()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    time.sleep(poll_interval_s)
        self.kill()
        raise RuntimeError("server did not become SERVING in time")

    def terminate(self) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(stop_timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stderr_text(self) -> str:
        stream = self.process.stderr
        return (
            stream.read().decode(errors="replace")
            if stream is not None and self.process.poll() is not None
            else ""
        )
