"""jubao.meta.v1.MetaService: the caller's own session. Ping is the benchmark's empty RPC."""

from __future__ import annotations

from typing import Any

import grpc
from jubao.meta.v1 import meta_pb2 as pb
from jubao.meta.v1 import meta_pb2_grpc as pb_grpc

from jubao_server import limits
from jubao_server.errors import invalid
from jubao_server.platform.context import current_caller

Context = grpc.aio.ServicerContext[Any, Any]


class MetaService(pb_grpc.MetaServiceServicer):
    async def Ping(self, request: pb.PingRequest, context: Context) -> pb.PingResponse:
        if len(request.payload) > limits.ping_payload_max_bytes:
            raise invalid("payload", f"at most {limits.ping_payload_max_bytes} bytes")
        return pb.PingResponse(payload=request.payload)

    async def GetCaller(self, request: pb.GetCallerRequest, context: Context) -> pb.GetCallerResponse:
        caller = current_caller()
        tenant = caller.tenant
        return pb.GetCallerResponse(
            tenant_id=tenant.tenant_id,
            display_name=tenant.display_name,
            kind=tenant.kind.value,
            products=sorted(p.value for p in tenant.products),
            auth_method=caller.auth_method,
            key_id=caller.key_id,
        )
