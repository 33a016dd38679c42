"""What every call goes through, sync or asyncio: credentials, trace context, deadline, request id, errors.

`CallPolicy` holds the logic; `SyncInterceptor` and `AsyncInterceptor` only adapt it to the two gRPC
interceptor APIs.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final, NamedTuple, TypeAlias, TypeVar

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from opentelemetry import propagate

from jubao.client.config import ClientConfig
from jubao.errors import error_from_rpc

if TYPE_CHECKING:
    from grpc import _CallFuture

AUTHORIZATION_KEY: Final = "authorization"
REQUEST_ID_FIELD: Final = "request_id"

Metadatum: TypeAlias = tuple[str, str | bytes]
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class PreparedCall(NamedTuple):
    timeout_s: float
    metadata: list[Metadatum]


@dataclasses.dataclass(frozen=True)
class CallPolicy:
    """Turns the caller's call settings into what goes on the wire."""

    api_key: str | None = dataclasses.field(repr=False)
    default_timeout_s: float

    @classmethod
    def of(cls, config: ClientConfig) -> CallPolicy:
        return cls(api_key=config.api_key, default_timeout_s=config.default_timeout_ms / 1000)

    def prepare(
        self, request: object, timeout_s: float | None, metadata: Iterable[Metadatum] | None
    ) -> PreparedCall:
        """Fill the request id, default the deadline, and add authorization and trace context metadata."""
        fill_request_id(request)
        timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
        return PreparedCall(timeout_s, self.metadata(metadata))

    def metadata(self, metadata: Iterable[Metadatum] | None) -> list[Metadatum]:
        """The caller's metadata plus authorization and trace context."""
        items = list(metadata or ())
        present = {key for key, _ in items}
        if self.api_key is not None and AUTHORIZATION_KEY not in present:
            items.append((AUTHORIZATION_KEY, f"Bearer {self.api_key}"))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        items.extend((key, value) for key, value in carrier.items() if key not in present)
        return items


def fill_request_id(request: object) -> None:
    """Give a request with an empty string `request_id` field (AIP-155) a fresh UUID4, in place.

    The caller's message keeps the id, so resending the same message object repeats it too.
    """
    if not isinstance(request, Message):
        return
    field = request.DESCRIPTOR.fields_by_name.get(REQUEST_ID_FIELD)
    if field is None or field.type != FieldDescriptor.TYPE_STRING or field.is_repeated:
        return
    if not getattr(request, REQUEST_ID_FIELD):
        setattr(request, REQUEST_ID_FIELD, str(uuid.uuid4()))


@dataclasses.dataclass(frozen=True)
class _SyncCallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[Metadatum, ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class SyncInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Applies `CallPolicy` to a call of a sync channel and raises failures as typed `JubaoError`s.

    The error is raised when the call ends, so a stub's `.future()` form returns only once it is done.
    """

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, RequestT], _CallFuture[ResponseT]],
        client_call_details: grpc.ClientCallDetails,
        request: RequestT,
    ) -> _CallFuture[ResponseT]:
        details = client_call_details
        prepared = self._policy.prepare(request, details.timeout, details.metadata)
        outcome = continuation(
            _SyncCallDetails(
                method=details.method,
                timeout=prepared.timeout_s,
                metadata=tuple(prepared.metadata),
                credentials=details.credentials,
                wait_for_ready=details.wait_for_ready,
                compression=details.compression,
            ),
            request,
        )
        error = outcome.exception()
        if isinstance(error, grpc.RpcError):
            raise error_from_rpc(error) from error
        return outcome


class AsyncInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Applies `CallPolicy` to a call of an asyncio channel; awaiting a failed call raises a `JubaoError`."""

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, RequestT], Awaitable[grpc.aio.UnaryUnaryCall[RequestT, ResponseT]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: RequestT,
    ) -> ResponseT | grpc.aio.UnaryUnaryCall[RequestT, ResponseT]:
        details = client_call_details
        prepared = self._policy.prepare(request, details.timeout, details.metadata)
        metadata = grpc.aio.Metadata(*prepared.metadata)
        call = await continuation(
            grpc.aio.ClientCallDetails(
                details.method, prepared.timeout_s, metadata, details.credentials, details.wait_for_ready
            ),
            request,
        )
        try:
            await call
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from error
        return call


class AsyncStreamInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    """Applies `CallPolicy` to a server-streaming call of an asyncio channel (no default deadline: a
    stream lives as long as the caller reads it); a failure while reading raises a `JubaoError`."""

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, RequestT], Awaitable[grpc.aio.UnaryStreamCall[RequestT, ResponseT]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: RequestT,
    ) -> AsyncIterator[ResponseT]:
        details = client_call_details
        metadata = grpc.aio.Metadata(*self._policy.metadata(details.metadata))
        call = await continuation(
            grpc.aio.ClientCallDetails(
                details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
            ),
            request,
        )
        return _typed_errors(call)


async def _typed_errors(call: grpc.aio.UnaryStreamCall[RequestT, ResponseT]) -> AsyncIterator[ResponseT]:
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as error:
        raise error_from_rpc(error) from error
    finally:
        call.cancel()


class SyncStreamInterceptor(grpc.UnaryStreamClientInterceptor):
    """`AsyncStreamInterceptor` for a sync channel: iterating a failed stream raises a `JubaoError`."""

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy

    def intercept_unary_stream(  # type: ignore[override]  # gRPC accepts any iterator of responses
        self,
        continuation: Callable[[grpc.ClientCallDetails, RequestT], Iterator[ResponseT]],
        client_call_details: grpc.ClientCallDetails,
        request: RequestT,
    ) -> Iterator[ResponseT]:
        details = client_call_details
        prepared = _SyncCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=tuple(self._policy.metadata(details.metadata)),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
            compression=details.compression,
        )
        return _typed_sync_errors(continuation(prepared, request))


def _typed_sync_errors(responses: Iterator[ResponseT]) -> Iterator[ResponseT]:
    try:
        yield from responses
    except grpc.RpcError as error:
        raise error_from_rpc(error) from error
