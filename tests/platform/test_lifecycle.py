"""Health, reflection, draining and graceful shutdown of a real server process."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2, meta_pb2_grpc
from jubao_server.app import grpc_server
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.product import PRODUCT as PAYMENTS
from jubao_server.products import ProductContext

from loadtest.server_process import ServerProcess, free_port
from tests.platform.errors import expect_error
from tests.platform.harness import Running, bearer, settings_for, start


async def test_health_serving_and_reflection_lists_the_api(running: Running) -> None:
    health = health_pb2_grpc.HealthStub(running.channel)
    for service in ("", "jubao.admin.v1.TenantAdmin"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    services = set(await asyncio.to_thread(_reflected_services, running.address))
    assert {"jubao.admin.v1.TenantAdmin", "jubao.meta.v1.MetaService", "grpc.health.v1.Health"} <= services


async def test_draining_server_refuses_new_calls_as_unavailable(
    running: Running, keys: dict[str, str]
) -> None:
    running.server.pipeline.draining = True
    call = running.meta.Ping(meta_pb2.PingRequest(), metadata=bearer(keys["demo-bank"]))
    await expect_error(call, grpc.StatusCode.UNAVAILABLE, Reason.DRAINING)
    running.server.pipeline.draining = False


def _reflected_services(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        return list(ProtoReflectionDescriptorDatabase(channel).get_services())


async def test_sigterm_drains_and_exits_cleanly(tmp_path: Path, keys: dict[str, str]) -> None:
    env = {
        "JUBAO_STORAGE__SQLITE__PATH": str(tmp_path / "jubao.db"),
        "JUBAO_SERVER__SHUTDOWN_GRACE_MS": "3000",
    }
    server = await asyncio.to_thread(ServerProcess.start, env, tmp_path / "server.log")
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = meta_pb2_grpc.MetaServiceStub(channel)
            reply = await stub.GetCaller(meta_pb2.GetCallerRequest(), metadata=bearer(keys["demo-bank"]))
            assert reply.tenant_id == "demo-bank"
        assert await asyncio.to_thread(server.terminate) == 0
        logs = server.log_text()
        assert '"event": "shutdown requested"' in logs and '"event": "stopped"' in logs
    finally:
        server.kill()


async def test_a_failed_start_undoes_what_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: dict[str, str]
) -> None:
    """A product that fails to start: the error comes out, and the port, the metrics port and the
    store are free for the next start."""

    async def fail(context: ProductContext[PaymentsSettings]) -> Ledger:
        raise RuntimeError("this product does not start")

    broken = dataclasses.replace(PAYMENTS, start=fail, apis=(), tables=())
    monkeypatch.setattr(grpc_server, "PRODUCTS", (PAYMENTS, broken))
    port, prometheus_port = free_port(), free_port()
    settings = settings_for(
        tmp_path / "jubao.db", server={"port": port}, telemetry={"prometheus_port": prometheus_port}
    )
    with pytest.raises(RuntimeError, match="does not start"):
        await grpc_server.Jubao.start(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # nothing listens there any more
    monkeypatch.setattr(grpc_server, "PRODUCTS", (PAYMENTS,))
    running = await start(settings)
    try:
        reply = await running.meta.GetCaller(meta_pb2.GetCallerRequest(), metadata=bearer(keys["demo-bank"]))
        assert reply.tenant_id == "demo-bank" and running.server.port == port
    finally:
        await running.close()
