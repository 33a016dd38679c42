"""A real jubao server on an ephemeral port, on SQLite in a temp folder, with in-memory telemetry."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from jubao.admin.v1 import tenant_admin_pb2_grpc
from jubao.meta.v1 import meta_pb2_grpc
from jubao_server.app import SETTINGS
from jubao_server.app.grpc_server import Jubao
from jubao_server.clock import SYSTEM_CLOCK, Clock
from jubao_server.config import Settings
from jubao_server.telemetry import setup_telemetry
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "tenants"


def demo_keys() -> dict[str, str]:
    lines = (CATALOGUE / "demo-keys.txt").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def settings_for(db_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "server": {"port": 0, "shutdown_grace_ms": 2_000},
        "storage": {"backend": "sqlite", "sqlite": {"path": str(db_path)}},
        "tenancy": {"catalogue_dir": str(CATALOGUE)},
        "telemetry": {"prometheus_port": None},
    }
    for section, value in overrides.items():
        values[section] = {**values.get(section, {}), **value} if isinstance(value, dict) else value
    return SETTINGS(**values)


@dataclasses.dataclass
class Running:
    server: Jubao
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    channel: grpc.aio.Channel

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def admin(self) -> tenant_admin_pb2_grpc.TenantAdminAsyncStub:
        return tenant_admin_pb2_grpc.TenantAdminStub(self.channel)

    @property
    def meta(self) -> meta_pb2_grpc.MetaServiceAsyncStub:
        return meta_pb2_grpc.MetaServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        await self.server.stop(grace_ms=500)


async def start(
    settings: Settings,
    channel_credentials: grpc.ChannelCredentials | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Running:
    spans = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    telemetry = setup_telemetry(
        settings.telemetry, span_processor=SimpleSpanProcessor(spans), metric_reader=metrics
    )
    server = await Jubao.start(settings, telemetry, clock=clock)
    address = f"127.0.0.1:{server.port}"
    options: Sequence[tuple[str, Any]] = [("grpc.ssl_target_name_override", "localhost")]
    if channel_credentials is None:
        channel = grpc.aio.insecure_channel(address)
    else:
        channel = grpc.aio.secure_channel(address, channel_credentials, options=options)
    return Running(server, spans, metrics, channel)
