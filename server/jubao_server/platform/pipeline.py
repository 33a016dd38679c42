"""The per-call pipeline every product RPC passes through, in this order:

1. telemetry: a SERVER span (parent taken from the caller's W3C `traceparent`), call counter, latency
   histogram and in-flight gauge, labelled by method, tenant and status code;
2. draining: once shutdown began, new calls get UNAVAILABLE (DRAINING) so clients retry elsewhere;
3. authentication: the credential resolves the tenant (`tenancy.auth`);
4. authorization: the service's policy (operator only, or a product the tenant must have enabled);
5. admission: the tenant's rate and concurrency quota (`tenancy.quotas`);
6. deadline: the client's deadline, or the default, capped at the maximum;
7. parsing: gRPC hands the pipeline the request's bytes (no deserializer of its own, which would answer
   UNKNOWN before any of this ran); bytes that are not a message of the method's request type get
   INVALID_ARGUMENT (MALFORMED_REQUEST), for unary and streaming methods alike;
8. the servicer, with the caller in a context variable; `ApiError` becomes a rich `google.rpc.Status`,
   `StorageError` UNAVAILABLE, anything else INTERNAL (logged with its trace id).

Services without a policy (health, reflection) are not wrapped: standard tools reach them without a key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError
from grpc_status import rpc_status
from jubao.reasons import Reason
from opentelemetry import propagate, trace

from jubao_server.config import ServerSettings
from jubao_server.errors import ApiError, ErrorCode, HeldElsewhere, internal, permission_denied, unavailable
from jubao_server.invariants import InvariantViolation, ensure
from jubao_server.platform.context import reset_caller, set_caller
from jubao_server.platform.forwarding import ForwardedError, Forwarder
from jubao_server.storage.contract import StorageError
from jubao_server.telemetry import Telemetry
from jubao_server.tenancy.auth import Authenticator, Caller, metadata_credentials, require_product
from jubao_server.tenancy.model import Product, TenantKind
from jubao_server.tenancy.quotas import QuotaGate

log = structlog.get_logger("jubao.rpc")

Context = grpc.aio.ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]
Parse = Callable[[bytes], Any]


@dataclasses.dataclass(frozen=True)
class ServicePolicy:
    """Who may call a service: operators only, or tenants with `product` enabled, or any tenant."""

    operator_only: bool = False
    product: Product | None = None


@dataclasses.dataclass
class _Call:
    """What the pipeline learns about one call while it runs."""

    method: str
    tenant_id: str = "-"
    code: grpc.StatusCode = grpc.StatusCode.OK


class CallPipeline(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: Authenticator,
        gate: QuotaGate,
        telemetry: Telemetry,
        settings: ServerSettings,
        *,
        forwarder: Forwarder,
    ) -> None:
        self._policies: dict[str, ServicePolicy] = {}
        self.forwarder = forwarder
        self._auth = authenticator
        self._gate = gate
        self._telemetry = telemetry
        self._default_timeout_s = settings.deadline_default_ms / 1000
        self._max_timeout_s = settings.deadline_max_ms / 1000
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self.draining = False

    def guard(self, service: str, policy: ServicePolicy) -> None:
        """Put every method of `service` (its full name) behind the pipeline, with its policy. Services
        the pipeline does not guard (health, reflection) pass without a credential."""
        ensure(service not in self._policies, f"{service} is guarded twice")
        self._policies[service] = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        policy = self._policies.get(method.lstrip("/").split("/")[0])
        if handler is None or policy is None:
            return handler
        wrapped = self._wrap(handler, method, policy)
        self._handlers[method] = wrapped
        return wrapped

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, policy: ServicePolicy
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The method's handler behind the pipeline. It takes the request's bytes (no deserializer), so
        that the pipeline parses them itself and forwards them as they came."""
        parse = handler.request_deserializer
        ensure(parse is not None, f"{method} has no request deserializer")
        if handler.unary_unary is not None:
            serialize = handler.response_serializer
            ensure(serialize is not None, f"{method} has no response serializer")
            return grpc.unary_unary_rpc_method_handler(
                self._unary(cast(UnaryBehavior, handler.unary_unary), method, policy, cast(Parse, parse)),
                response_serializer=lambda r: r if isinstance(r, bytes) else serialize(r),
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(cast(StreamBehavior, handler.unary_stream), method, policy, cast(Parse, parse)),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(
        self, behavior: UnaryBehavior, method: str, policy: ServicePolicy, parse: Parse
    ) -> UnaryBehavior:
        async def call(body: bytes, context: Context) -> Any:
            state = _Call(method)
            with self._observe(state, context):
                try:
                    caller = await self._admit(state, context, policy)
                    try:
                        return await self._run_unary(behavior, parse, body, context, caller)
                    except HeldElsewhere as held:
                        return await self._forward(method, body, context, held)
                except BaseException as error:
                    await self._fail(state, context, error)
            return None

        return call

    def _stream(
        self, behavior: StreamBehavior, method: str, policy: ServicePolicy, parse: Parse
    ) -> StreamBehavior:
        async def call(body: bytes, context: Context) -> AsyncIterator[Any]:
            state = _Call(method)
            with self._observe(state, context):
                try:
                    caller = await self._admit(state, context, policy)
                    admission = self._gate.admit(caller.tenant)
                    token = set_caller(caller)
                    closed = False
                    try:
                        async for response in behavior(_parsed(parse, body), context):
                            yield response
                    except GeneratorExit:
                        # The client went away: the stream is closed from outside the call's context,
                        # where there is no caller to reset.
                        closed = True
                        raise
                    finally:
                        admission.release()
                        if not closed:
                            reset_caller(token)
                except BaseException as error:
                    await self._fail(state, context, error)

        return call

    async def _admit(self, state: _Call, context: Context, policy: ServicePolicy) -> Caller:
        if self.draining:
            raise unavailable(Reason.DRAINING, "the server is shutting down; retry on another server")
        metadata = tuple(context.invocation_metadata() or ())
        pem = None if any(k == "authorization" for k, _ in metadata) else _peer_certificate(context)
        caller = await self._auth.authenticate(metadata_credentials(metadata, pem))
        state.tenant_id = caller.tenant.tenant_id
        trace.get_current_span().set_attribute("jubao.tenant_id", state.tenant_id)
        _authorize(caller, policy)
        return caller

    async def _run_unary(
        self, behavior: UnaryBehavior, parse: Parse, body: bytes, context: Context, caller: Caller
    ) -> Any:
        admission = self._gate.admit(caller.tenant)
        token = set_caller(caller)
        try:
            request = _parsed(parse, body)
            async with asyncio.timeout(self._timeout_s(context)):
                return await behavior(request, context)
        finally:
            reset_caller(token)
            admission.release()

    async def _forward(self, method: str, body: bytes, context: Context, held: HeldElsewhere) -> bytes:
        return await self.forwarder.forward(method, body, context, held.address, self._timeout_s(context))

    def _timeout_s(self, context: Context) -> float:
        remaining_s = context.time_remaining()
        if remaining_s is None:
            return self._default_timeout_s
        return min(float(remaining_s), self._max_timeout_s)

    async def _fail(self, state: _Call, context: Context, error: BaseException) -> None:
        if isinstance(error, asyncio.CancelledError | grpc.aio.AbortError | GeneratorExit):
            state.code = grpc.StatusCode.CANCELLED
            raise error
        if isinstance(error, ForwardedError):
            state.code = error.failure.code()
            failure = error.failure
            trailers = tuple(failure.trailing_metadata() or ())
            await context.abort(failure.code(), failure.details() or "", trailers)
        api_error = _api_error(error, state)
        state.code = grpc.StatusCode[api_error.code.name]
        await context.abort_with_status(rpc_status.to_status(api_error.to_status()))

    def _observe(self, state: _Call, context: Context) -> _Observation:
        return _Observation(self._telemetry, state, context)


class _Observation:
    """Span, metrics and the in-flight gauge around one call."""

    def __init__(self, telemetry: Telemetry, state: _Call, context: Context) -> None:
        self._telemetry = telemetry
        self._state = state
        carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self._span_cm = telemetry.tracer.start_as_current_span(
            state.method.lstrip("/"),
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": state.method},
        )
        self._started_s = 0.0

    def __enter__(self) -> None:
        self._span = self._span_cm.__enter__()
        self._started_s = time.perf_counter()
        self._telemetry.in_flight.add(1, {"rpc.method": self._state.method})

    def __exit__(self, *exc: object) -> None:
        state = self._state
        elapsed_ms = (time.perf_counter() - self._started_s) * 1000
        labels = {
            "rpc.method": state.method,
            "jubao.tenant_id": state.tenant_id,
            "rpc.grpc.status_code": state.code.name,
        }
        self._telemetry.in_flight.add(-1, {"rpc.method": state.method})
        self._telemetry.calls.add(1, labels)
        self._telemetry.duration_ms.record(elapsed_ms, labels)
        self._span.set_attribute("rpc.grpc.status_code", state.code.value[0])
        if state.code is not grpc.StatusCode.OK:
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, state.code.name))
        self._span_cm.__exit__(None, None, None)


def _parsed(parse: Parse, body: bytes) -> Any:
    try:
        return parse(body)
    except DecodeError:
        raise ApiError(
            ErrorCode.INVALID_ARGUMENT,
            Reason.MALFORMED_REQUEST,
            "the request body is not a valid message of this method's request type",
        ) from None


def _authorize(caller: Caller, policy: ServicePolicy) -> None:
    tenant = caller.tenant
    if policy.operator_only and tenant.kind is not TenantKind.OPERATOR:
        raise permission_denied(Reason.OPERATOR_ONLY, "only operator tenants may call this service")
    if policy.product is not None:
        require_product(caller, policy.product)


def _api_error(error: BaseException, state: _Call) -> ApiError:
    if isinstance(error, ApiError):
        if error.code is not ErrorCode.RESOURCE_EXHAUSTED:
            log.info("rpc rejected", method=state.method, tenant_id=state.tenant_id, reason=error.reason)
        return error
    if isinstance(error, TimeoutError):
        return ApiError(ErrorCode.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED, "the call ran out of time")
    if isinstance(error, StorageError):
        log.warning("storage unavailable", method=state.method, tenant_id=state.tenant_id, error=str(error))
        return unavailable(
            Reason.STORAGE_UNAVAILABLE, "storage is unavailable; retry with the same request_id"
        )
    level = "invariant violated" if isinstance(error, InvariantViolation) else "unexpected error"
    log.error(level, method=state.method, tenant_id=state.tenant_id, exc_info=error)
    return internal("internal error; it has been logged")


def _peer_certificate(context: Context) -> bytes | None:
    certificates = list(context.auth_context().get("x509_pem_cert", ()))
    return certificates[0] if certificates else None
