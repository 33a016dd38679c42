"""Health, reflection, draining and graceful shutdown of a real server process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2, meta_pb2_grpc

from loadtest.server_process import ServerProcess
from tests.platform.errors import expect_error
from tests.platform.harness import Running, bearer


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
