"""Query results too large for their RunQuery response: kept for the member that ran the query, and
downloaded by it over Arrow Flight (`GetQueryResult`, an export dataset of the bulk plane, in the Flight
process).

A result of more than `cocreation_result_inline_groups_max` groups is kept in its analyst's scope
(`cocreation_results`, one partition per result under a random id): Arrow IPC chunks of at most
`cocreation_chunk_rows_max` rows (and `bulk_chunk_bytes_max`), each with its SHA-256, then the head row
that makes it whole; every row expires after `cocreation_result_ttl_s`. Its columns are named as the
response names them (`QueryResult.columns`). The response carries a ticket instead of the rows: a
`GetQueryResult` naming the collaboration and the result. Only its analyst finds it (another tenant's
ticket names a partition of another scope: QUERY_RESULT_NOT_FOUND), and only while an active member with
the receive-results ability of the open collaboration; a result without its head (its keeping was cut
short) or expired is not found either."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Final

import pyarrow as pa
from google.protobuf.message import Message
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.bulk.arrow import to_ipc
from jubao_server.bulk.datasets import pack, parse
from jubao_server.bulk.uploads import chunk_rows
from jubao_server.clock import Clock
from jubao_server.cocreation.model import Ability, id_violations, raise_if_any
from jubao_server.cocreation.query import Download, Result
from jubao_server.cocreation.store import CocreationStore
from jubao_server.errors import ApiError, not_found
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.model import Product

GET_QUERY_RESULT: Final = pb.GetQueryResult.DESCRIPTOR.full_name


async def keep(store: CocreationStore, analyst: str, collaboration_id: str, result: Result) -> Result:
    """Keep a result's groups for `analyst` to download; the result as answered then (its rows left out,
    where they are said)."""
    rows = result.rows.rename_columns(list(result.columns))
    step = chunk_rows(rows.combine_chunks().to_batches()[0], limits.cocreation_chunk_rows_max)
    chunks = [to_ipc(rows.slice(start, step)) for start in range(0, rows.num_rows, step)]
    result_id = uuid.uuid4().hex
    await store.keep_result(analyst, collaboration_id, result_id, chunks, rows.num_rows)
    expire_time_ms = store.now_ms() + limits.cocreation_result_ttl_s * 1000
    download = Download(collaboration_id, result_id, rows.num_rows, expire_time_ms)
    return dataclasses.replace(result, rows=result.rows.slice(0, 0), download=download)


def ticket(download: Download) -> bytes:
    """The Flight ticket of a kept result."""
    return pack(pb.GetQueryResult(collaboration_id=download.collaboration_id, result_id=download.result_id))


def result_not_found(result_id: str) -> ApiError:
    return not_found(
        Reason.QUERY_RESULT_NOT_FOUND, f"no query result {result_id} of yours", result_id=result_id
    )


@dataclasses.dataclass(frozen=True)
class QueryResultsExport:
    name: str = GET_QUERY_RESULT
    product: Product = Product.COCREATION
    # Each result has its own columns: its stream takes the schema of its first chunk.
    schema: pa.Schema | None = None

    def check(self, command: bytes) -> Message:
        request: pb.GetQueryResult = parse(pb.GetQueryResult, command, "ticket")  # type: ignore[assignment]
        raise_if_any(
            id_violations("collaboration_id", request.collaboration_id)
            + id_violations("result_id", request.result_id)
        )
        return request

    async def read(
        self, backend: StorageBackend, clock: Clock, tenant_id: str, command: Message
    ) -> AsyncIterator[pa.RecordBatch]:
        request: pb.GetQueryResult = command  # type: ignore[assignment]
        store = CocreationStore(backend, clock)
        room = await store.open_room(request.collaboration_id, tenant_id)
        room.active_member(tenant_id, Ability.RECEIVE_RESULTS)
        chunks = await store.result_chunks(tenant_id, request.collaboration_id, request.result_id)
        if chunks is None:
            raise result_not_found(request.result_id)
        async for data in chunks:
            for batch in pa.ipc.open_stream(pa.py_buffer(data)):
                yield batch
