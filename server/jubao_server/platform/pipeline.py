"""The per-call pipeline every product RPC passes through, in this order:

1. telemetry: the call counter, latency histogram and in-flight gauge, labelled by method, tenant and
   status code, on every call; a SERVER span when the head sampler traces the call (the caller's W3C
   `traceparent` decides and is its parent; without one, `traces_sample_ratio` of the calls), and for a
   call it did not trace that fails on the server's side (`telemetry/calls.py`);
2. draining: once shutdown began, new calls get UNAVAILABLE (DRAINING) so clients retry elsewhere;
3. authentication: the credential resolves the tenant (`tenancy.auth`; a cached resolution without a
   suspension);
4. authorization: the service's policy (operator only, or a product the tenant must have enabled);
5. admission: the tenant's rate and concurrency quota (`tenancy.quotas`);
6. deadline: a client's deadline within the maximum bounds the call in gRPC itself (a call past it is
   cancelled there, and counted DEADLINE_EXCEEDED); without one the default, and past the maximum the
   maximum, bound it here (DEADLINE_EXCEEDED);
7. parsing: gRPC hands the pipeline the request's bytes (no deserializer of its own, which would answer
   UNKNOWN before any of this ran); bytes that are not a message of the method's request type get
   INVALID_ARGUMENT (MALFORMED_REQUEST), for unary and streaming methods alike;
8. the servicer, with the caller in a context variable; `ApiError` becomes a rich `google.rpc.Status`,
   `StorageError` UNAVAILABLE, anything else INTERNAL (logged with its trace id).

What is known of a method before any call (its policy, parser, span name and attributes) is worked out
once, when its handler is first wrapped. Services without a policy (health, reflection) are not wrapped:
standard tools reach them without a key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError
from grpc_status import rpc_status
from jubao.reasons import Reason
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.util.types import AnyValue

from jubao_server.config import ServerSettings
from jubao_server.errors import ApiError, ErrorCode, HeldElsewhere, internal, permission_denied, unavailable
from jubao_server.invariants import InvariantViolation, ensure
from jubao_server.platform.context import reset_caller, set_caller
from jubao_server.platform.forwarding import ForwardedError, Forwarder
from jubao_server.storage.contract import StorageError
from jubao_server.telemetry import Telemetry
from jubao_server.telemetry.calls import STATUS_CODE, TRACED_ERRORS
from jubao_server.tenancy.auth import Authenticator, Caller, Credentials, require_product
from jubao_server.tenancy.model import Product, TenantKind
from jubao_server.tenancy.quotas import QuotaGate

log = structlog.get_logger("jubao.rpc")

Context = grpc.aio.ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]
Parse = Callable[[bytes], Any]
# A call's metadata, read once (gRPC builds it anew each time it is asked).
Metadata = Collection[tuple[str, str | bytes]]
TRACEPARENT = "traceparent"
# The parent of a call whose caller sent no trace context: none (a root span).
_ROOT = otel_context.Context()


@dataclasses.dataclass(frozen=True)
class ServicePolicy:
    """Who may call a service: operators only, or tenants with `product` enabled, or any tenant."""

    operator_only: bool = False
    product: Product | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Method:
    """What the pipeline knows of a method before any call, worked out once when it is wrapped."""

    name: str  # "/package.Service/Method"
    policy: ServicePolicy
    parse: Parse
    span_name: str
    span_attributes: Mapping[str, AnyValue]

    @classmethod
    def of(cls, name: str, policy: ServicePolicy, parse: Parse) -> _Method:
        attributes = {"rpc.system": "grpc", "rpc.method": name}
        return cls(name, policy, parse, name.lstrip("/"), attributes)


class _Call:
    """One call while it runs: what the pipeline learns of it, and its span when it is traced."""

    __slots__ = ("closed", "code", "method", "parent", "span", "started_s", "tenant_id", "token")

    def __init__(self, method: _Method) -> None:
        self.method = method
        self.tenant_id = "-"
        self.code = grpc.StatusCode.OK
        self.started_s = time.perf_counter()
        self.parent: otel_context.Context = _ROOT
        self.span: trace.Span | None = None
        self.token: object = None
        # Closed from outside its context (a stream the client left): its context variables stay set.
        self.closed = False


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
        self._tracer = telemetry.tracer
        self._sampler = telemetry.sampler
        self._metrics = telemetry.calls
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
        self, handler: grpc.RpcMethodHandler[Any, Any], name: str, policy: ServicePolicy
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The method's handler behind the pipeline. It takes the request's bytes (no deserializer), so
        that the pipeline parses them itself and forwards them as they came."""
        parse = handler.request_deserializer
        ensure(parse is not None, f"{name} has no request deserializer")
        method = _Method.of(name, policy, cast(Parse, parse))
        if handler.unary_unary is not None:
            serialize = handler.response_serializer
            ensure(serialize is not None, f"{name} has no response serializer")
            return grpc.unary_unary_rpc_method_handler(
                self._unary(cast(UnaryBehavior, handler.unary_unary), method),
                response_serializer=lambda r: r if isinstance(r, bytes) else serialize(r),
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(cast(StreamBehavior, handler.unary_stream), method),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, behavior: UnaryBehavior, method: _Method) -> UnaryBehavior:
        async def call(body: bytes, context: Context) -> Any:
            metadata = context.invocation_metadata() or ()
            state = self._begin(method, metadata)
            try:
                caller = await self._admit(state, context, metadata)
                try:
                    return await self._run_unary(behavior, method, body, context, caller)
                except HeldElsewhere as held:
                    return await self._forward(method.name, body, context, held)
            except BaseException as error:
                await self._fail(state, context, error)
            finally:
                self._end(state)
            return None

        return call

    def _stream(self, behavior: StreamBehavior, method: _Method) -> StreamBehavior:
        async def call(body: bytes, context: Context) -> AsyncIterator[Any]:
            metadata = context.invocation_metadata() or ()
            state = self._begin(method, metadata)
            try:
                caller = await self._admit(state, context, metadata)
                admission = self._gate.admit(caller.tenant)
                token = set_caller(caller)
                try:
                    async for response in behavior(_parsed(method.parse, body), context):
                        yield response
                except GeneratorExit:
                    # The client went away: the stream is closed from outside the call's context,
                    # where there is no caller (nor span) to reset.
                    state.closed = True
                    raise
                finally:
                    admission.release()
                    if not state.closed:
                        reset_caller(token)
            except BaseException as error:
                await self._fail(state, context, error)
            finally:
                self._end(state)

        return call

    def _begin(self, method: _Method, metadata: Metadata) -> _Call:
        """The call's metrics start; its span too when the head sampler traces it (the caller's trace
        context decides, or `traces_sample_ratio`)."""
        state = _Call(method)
        self._metrics.started(method.name)
        if any(key == TRACEPARENT for key, _ in metadata):
            state.parent = propagate.extract({k: v for k, v in metadata if isinstance(v, str)})
        elif not self._sampler.traces_root():
            return state
        span = self._tracer.start_span(
            method.span_name, state.parent, trace.SpanKind.SERVER, method.span_attributes
        )
        if span.is_recording():
            self._trace(state, span)
        return state

    def _trace(self, state: _Call, span: trace.Span) -> None:
        state.span = span
        state.token = otel_context.attach(trace.set_span_in_context(span, state.parent))

    def _end(self, state: _Call) -> None:
        """The call's metrics (while its span, if any, is current: an exemplar links them), then its span
        ends."""
        elapsed_ms = (time.perf_counter() - state.started_s) * 1000
        code = state.code
        self._metrics.finished(state.method.name, state.tenant_id, code.name, elapsed_ms)
        span = state.span
        if span is None:
            return
        span.set_attribute(STATUS_CODE, code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))
        span.end()
        if not state.closed:
            otel_context.detach(cast(Any, state.token))

    def _trace_failure(self, state: _Call) -> None:
        """A call the head sampler did not trace gets a span when it fails on the server's side, from its
        start, with its parent; it is current from here on, so what is logged carries its trace id."""
        code = state.code.value[0]
        if state.span is not None or code not in TRACED_ERRORS:
            return
        attributes = {**state.method.span_attributes, STATUS_CODE: code, "jubao.tenant_id": state.tenant_id}
        started_ns = time.time_ns() - int((time.perf_counter() - state.started_s) * 1e9)
        span = self._tracer.start_span(
            state.method.span_name, state.parent, trace.SpanKind.SERVER, attributes, start_time=started_ns
        )
        self._trace(state, span)

    async def _admit(self, state: _Call, context: Context, metadata: Metadata) -> Caller:
        if self.draining:
            raise unavailable(Reason.DRAINING, "the server is shutting down; retry on another server")
        credentials = _credentials(context, metadata)
        caller = self._auth.cached(credentials) or await self._auth.authenticate(credentials)
        state.tenant_id = caller.tenant.tenant_id
        if state.span is not None:
            state.span.set_attribute("jubao.tenant_id", state.tenant_id)
        _authorize(caller, state.method.policy)
        return caller

    async def _run_unary(
        self, behavior: UnaryBehavior, method: _Method, body: bytes, context: Context, caller: Caller
    ) -> Any:
        admission = self._gate.admit(caller.tenant)
        token = set_caller(caller)
        try:
            request = _parsed(method.parse, body)
            timeout_s = self._timeout_s(context)
            if timeout_s is None:
                return await behavior(request, context)
            async with asyncio.timeout(timeout_s):
                return await behavior(request, context)
        finally:
            reset_caller(token)
            admission.release()

    async def _forward(self, method: str, body: bytes, context: Context, held: HeldElsewhere) -> bytes:
        return await self.forwarder.forward(method, body, context, held.address, self._deadline_s(context))

    def _timeout_s(self, context: Context) -> float | None:
        """The pipeline's own bound on a unary call: the default without a client deadline, the maximum
        past it; None when the client's deadline is within the maximum (gRPC itself ends the call then)."""
        remaining_s = context.time_remaining()
        if remaining_s is None:
            return self._default_timeout_s
        return self._max_timeout_s if remaining_s > self._max_timeout_s else None

    def _deadline_s(self, context: Context) -> float:
        remaining_s = context.time_remaining()
        if remaining_s is None:
            return self._default_timeout_s
        return min(float(remaining_s), self._max_timeout_s)

    async def _fail(self, state: _Call, context: Context, error: BaseException) -> None:
        if isinstance(error, asyncio.CancelledError | grpc.aio.AbortError | GeneratorExit):
            remaining_s = context.time_remaining()
            expired = remaining_s is not None and remaining_s <= 0
            state.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            if not state.closed:
                self._trace_failure(state)
            raise error
        if isinstance(error, ForwardedError):
            failure = error.failure
            state.code = failure.code()
            self._trace_failure(state)
            trailers = tuple(failure.trailing_metadata() or ())
            await context.abort(failure.code(), failure.details() or "", trailers)
        api_error = _api_error(error)
        state.code = grpc.StatusCode[api_error.code.name]
        self._trace_failure(state)
        _log(error, api_error, state)
        await context.abort_with_status(rpc_status.to_status(api_error.to_status()))


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


def _api_error(error: BaseException) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, TimeoutError):
        return ApiError(ErrorCode.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED, "the call ran out of time")
    if isinstance(error, StorageError):
        return unavailable(
            Reason.STORAGE_UNAVAILABLE, "storage is unavailable; retry with the same request_id"
        )
    return internal("internal error; it has been logged")


def _log(error: BaseException, api_error: ApiError, state: _Call) -> None:
    """Refusals at info (quota refusals not at all: a flood of them would flood the log), storage trouble
    as a warning, anything else as an error with its traceback."""
    method, tenant_id = state.method.name, state.tenant_id
    if isinstance(error, ApiError):
        if error.code is not ErrorCode.RESOURCE_EXHAUSTED:
            log.info("rpc rejected", method=method, tenant_id=tenant_id, reason=error.reason)
    elif isinstance(error, StorageError):
        log.warning("storage unavailable", method=method, tenant_id=tenant_id, error=str(error))
    elif api_error.code is ErrorCode.INTERNAL:
        level = "invariant violated" if isinstance(error, InvariantViolation) else "unexpected error"
        log.error(level, method=method, tenant_id=tenant_id, exc_info=error)


def _credentials(context: Context, metadata: Metadata) -> Credentials:
    """The call's `authorization` header (the first), or else its verified client certificate."""
    for key, value in metadata:
        if key == "authorization":
            return Credentials(value.decode() if isinstance(value, bytes) else value, None)
    return Credentials(None, _peer_certificate(context))


def _peer_certificate(context: Context) -> bytes | None:
    certificates = list(context.auth_context().get("x509_pem_cert", ()))
    return certificates[0] if certificates else None
