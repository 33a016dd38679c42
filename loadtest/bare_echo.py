"""The bench's bare gRPC ceiling (`grpc_bare_echo_per_s`): MetaService.Ping served by a minimal `grpc.aio`
server, in a process of its own like the real server (so it does not share a client's GIL), with no call
pipeline, no authentication, no telemetry and no logging: what Python gRPC itself gives on this machine.
The harness's clients call it exactly as they call jubao's Ping (they send their API key; it is ignored).

`python -m loadtest.bare_echo PORT` serves until SIGTERM (`harness.bare_echo` starts it). It imports
nothing of the harness, so its process holds no more than the server needs.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any, Final

import grpc
from jubao.meta.v1 import meta_pb2

SERVICE: Final = "jubao.meta.v1.MetaService"


async def ping(
    request: meta_pb2.PingRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> meta_pb2.PingResponse:
    return meta_pb2.PingResponse(payload=request.payload)


async def serve(port: int) -> None:
    """Ping alone, registered as the generated code registers a servicer's methods."""
    server = grpc.aio.server()
    handlers = {
        "Ping": grpc.unary_unary_rpc_method_handler(
            ping,
            request_deserializer=meta_pb2.PingRequest.FromString,
            response_serializer=meta_pb2.PingResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(None)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
