"""AIP-155 request ids: a retried mutation with the same id and body returns the first response; the same
id with another body is ALREADY_EXISTS (REQUEST_ID_REUSED). Entries expire after `request_log_ttl_s`."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.errors import already_exists, invalid
from jubao_server.storage.contract import Batch, ColumnType, Put, RowAbsent, StorageBackend, Table, Value

REQUEST_LOG = Table(
    name="request_log",
    partition_key=("request_id",),
    columns={
        "request_id": ColumnType.TEXT,
        "method": ColumnType.TEXT,
        "body_sha256": ColumnType.TEXT,
        "response": ColumnType.BLOB,
        "create_time_ms": ColumnType.BIGINT,
    },
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

R = TypeVar("R", bound=Message)


def check_request_id(request_id: str) -> None:
    if request_id and not _REQUEST_ID.match(request_id):
        raise invalid("request_id", f"1 to {limits.request_id_length_max} characters of [A-Za-z0-9._:-]")


def body_sha256(request: Message) -> str:
    """Hash of the request without its request_id, stable across processes."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


class RequestLog:
    def __init__(self, backend: StorageBackend) -> None:
        self._backend = backend

    async def run(
        self,
        scope: str,
        method: str,
        request: Message,
        response_type: type[R],
        apply: Callable[[], Awaitable[R]],
        *,
        redact: Callable[[R], R] = lambda response: response,
    ) -> R:
        """Apply a mutation once per request id. `redact` strips what must not be stored (secrets)."""
        request_id: str = getattr(request, "request_id")  # noqa: B009
        check_request_id(request_id)
        if not request_id:
            return await apply()
        body = body_sha256(request)
        stored = await self._replay(scope, request_id, method, body)
        if stored is not None:
            return response_type.FromString(stored)
        response = await apply()
        await self._record(scope, request_id, method, body, redact(response).SerializeToString())
        return response

    async def _replay(self, scope: str, request_id: str, method: str, body: str) -> bytes | None:
        row = await self._backend.read_row(REQUEST_LOG.partition(scope, request_id))
        if row is None:
            return None
        if row["method"] != method or row["body_sha256"] != body:
            raise already_exists(
                Reason.REQUEST_ID_REUSED, f"request_id {request_id} was used for a different request"
            )
        response = row["response"]
        return response if isinstance(response, bytes) else b""

    async def _record(self, scope: str, request_id: str, method: str, body: str, response: bytes) -> None:
        values: dict[str, Value] = {
            "method": method,
            "body_sha256": body,
            "response": response,
            "create_time_ms": _now_ms(),
        }
        put = Put((), values, ttl_s=limits.request_log_ttl_s)
        await self._backend.write(
            Batch(REQUEST_LOG.partition(scope, request_id), (put,), conditions=(RowAbsent(()),))
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
