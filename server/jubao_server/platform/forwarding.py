"""Forwarding: a call that needs a ledger shard another server of the cluster holds goes to that server.

Several servers may share one Cassandra. Each shard is leased by one of them (shards/actor.py; the
call raised `errors.HeldElsewhere`, `shards.node.ShardElsewhere` for a shard);
a server that gets a call for a shard it does not hold sends the same call, with the caller's metadata
(so the owner authenticates the same tenant from the same credential), to the holder's address, and
answers with the holder's answer or error, status details included; when the call is traced, its span's
context goes with it, so the holder's span is its child. A forwarded call carries
`x-jubao-forwarded-by`; a server that gets a forwarded call for a shard it does not hold either answers
UNAVAILABLE (`SHARD_MOVED`, the lease moved meanwhile: the client retries) instead of forwarding again.
Client-certificate callers cannot be forwarded (the certificate stays with the first server): they get
UNAVAILABLE `SHARD_MOVED` too.
"""

from __future__ import annotations

import collections
from typing import Any, Final

import grpc
from jubao.reasons import Reason
from opentelemetry import propagate

from jubao_server import limits
from jubao_server.config import ServerSettings
from jubao_server.errors import unavailable

FORWARDED_BY: Final = "x-jubao-forwarded-by"
# Metadata that belongs to the connection, not to the call.
_TRANSPORT_KEYS: Final = frozenset({"user-agent", "content-type", "te", "grpc-accept-encoding"})

Context = grpc.aio.ServicerContext[Any, Any]


class ForwardedError(Exception):
    """The holder's error, to be answered as it is (code, message, status details)."""

    def __init__(self, failure: grpc.aio.AioRpcError) -> None:
        super().__init__(failure.details())
        self.failure = failure


class Forwarder:
    def __init__(self, settings: ServerSettings) -> None:
        self._credentials = (
            grpc.ssl_channel_credentials(settings.tls.cert_path.read_bytes())
            if settings.tls.enabled and settings.tls.cert_path is not None
            else None
        )
        self._channels: collections.OrderedDict[str, grpc.aio.Channel] = collections.OrderedDict()
        self.address = ""

    async def forward(
        self, method: str, request: bytes, context: Context, address: str, timeout_s: float
    ) -> bytes:
        """The holder's answer to `method(request)`, serialized; raises its error as ForwardedError."""
        metadata = tuple(context.invocation_metadata() or ())
        if any(key == FORWARDED_BY for key, _ in metadata) or not any(
            k == "authorization" for k, _ in metadata
        ):
            raise unavailable(Reason.SHARD_MOVED, "the ledger shard is held by another server; retry")
        # A traced call's span is the forwarded call's parent, in place of the caller's trace context.
        trace_context: dict[str, str] = {}
        propagate.inject(trace_context)
        passed = [
            (k, v)
            for k, v in metadata
            if not k.startswith((":", "grpc-")) and k not in _TRANSPORT_KEYS and k not in trace_context
        ]
        channel = await self._channel(address)
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        try:
            answer: bytes = await call(
                request,
                metadata=[*passed, *trace_context.items(), (FORWARDED_BY, self.address)],
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as failure:
            if failure.code() is grpc.StatusCode.UNAVAILABLE and not failure.trailing_metadata():
                raise unavailable(
                    Reason.SHARD_MOVED,
                    f"the server holding the ledger shard ({address}) is unreachable; retry",
                ) from failure
            raise ForwardedError(failure) from failure
        return answer

    async def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            while len(self._channels) >= limits.forward_channels_max:
                _, oldest = self._channels.popitem(last=False)
                await oldest.close()
            channel = (
                grpc.aio.secure_channel(address, self._credentials)
                if self._credentials is not None
                else grpc.aio.insecure_channel(address)
            )
            self._channels[address] = channel
        self._channels.move_to_end(address)
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
