"""The gRPC host serves methods through generic handlers only (`platform/server.py`): a generated
`add_<Service>Servicer_to_server` given its view of a server adds the service's generic handler, which
serves the calls on a real `grpc.aio` server, and leaves the registration out; a registration with no
generic handler of its service before it is refused, never silently dropped."""

from __future__ import annotations

import re

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from jubao_server.invariants import InvariantViolation
from jubao_server.platform.server import _generic_only


async def test_a_generated_service_added_through_the_view_is_served() -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), _generic_only(server))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)


async def test_a_registration_without_its_generic_handler_is_refused() -> None:
    view = _generic_only(grpc.aio.server())
    check: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        lambda request, context: request
    )
    handlers = {"Check": check}
    with pytest.raises(
        InvariantViolation, match=re.escape("grpc.health.v1.Health: registered without a generic")
    ):
        view.add_registered_method_handlers("grpc.health.v1.Health", handlers)
    view.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health", handlers),))
    view.add_registered_method_handlers("grpc.health.v1.Health", handlers)
