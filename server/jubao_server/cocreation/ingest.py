"""A dataset's rows arriving over Arrow Flight (`UploadDatasetRows`, an ingest dataset of the bulk plane,
in the Flight process): only its owner uploads, while the dataset is receiving; every message must have
the dataset's schema and join keys that are tokens; rows are stored as chunks in the owner's scope where
the stored rows end (a broken upload resumes; nothing is stored twice); the commit makes the dataset
ready."""

from __future__ import annotations

import dataclasses
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from jubao.bulk.v1 import bulk_pb2
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao.reasons import FieldViolation, Reason

from jubao_server import limits
from jubao_server.bulk.arrow import conformed, to_ipc
from jubao_server.bulk.datasets import Ingest, parse
from jubao_server.bulk.uploads import chunk_rows, fresh_rows
from jubao_server.clock import Clock
from jubao_server.cocreation.model import (
    Ability,
    ColumnType,
    Dataset,
    DatasetState,
    collaboration_not_found,
    id_violations,
    raise_if_any,
)
from jubao_server.cocreation.store import CocreationStore, RowsState
from jubao_server.errors import ApiError, ErrorCode, failed_precondition, invalid_fields
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.model import Product

UPLOAD_DATASET_ROWS: Final = pb.UploadDatasetRows.DESCRIPTOR.full_name
_ARROW_TYPES: Final = {ColumnType.STRING: pa.string(), ColumnType.INT64: pa.int64()}
TOKEN_PATTERN: Final = "^[0-9a-f]{64}$"


def arrow_schema(dataset: Dataset) -> pa.Schema:
    """The Arrow schema of a dataset's rows: its columns in order, none nullable."""
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.type], nullable=False) for c in dataset.columns])


@dataclasses.dataclass(frozen=True)
class DatasetRowsUpload:
    """`jubao.cocreation.v1.UploadDatasetRows`: the rows of a registered dataset."""

    name: str = UPLOAD_DATASET_ROWS
    product: Product = Product.COCREATION

    async def open(self, backend: StorageBackend, clock: Clock, tenant_id: str, command: bytes) -> Ingest:
        request: pb.UploadDatasetRows = parse(pb.UploadDatasetRows, command, "descriptor.cmd")  # type: ignore[assignment]
        raise_if_any(
            id_violations("collaboration_id", request.collaboration_id)
            + id_violations("dataset_id", request.dataset_id)
        )
        store = CocreationStore(backend, clock)
        room = await store.load(request.collaboration_id)
        if room is None:
            raise collaboration_not_found(request.collaboration_id)
        room.open_to(tenant_id, store.now_ms())
        room.active_member(tenant_id, Ability.CONTRIBUTE)
        dataset = room.owned_dataset(tenant_id, request.dataset_id)
        state = await store.rows_state(tenant_id, dataset.collaboration_id, dataset.dataset_id)
        return DatasetIngest(store, dataset, state)


class DatasetIngest:
    """One DoPut of a dataset's rows."""

    def __init__(self, store: CocreationStore, dataset: Dataset, state: RowsState) -> None:
        self._store = store
        self._dataset = dataset
        self._state = state
        self._schema = arrow_schema(dataset)

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    @property
    def rows_received(self) -> int:
        return self._state.rows_received

    async def receive(self, batch: pa.RecordBatch, first_row: int) -> bulk_pb2.UploadProgress:
        dataset = self._dataset
        rows = fresh_rows(batch, first_row, self._state.rows_received, _closed(dataset))
        if rows is None:
            return self._progress()
        if self._state.rows_received + rows.num_rows > limits.cocreation_dataset_rows_max:
            raise invalid_fields(
                (FieldViolation("upload", f"more than {limits.cocreation_dataset_rows_max} rows"),)
            )
        rows = conformed(rows, self._schema, self._state.rows_received)
        _check_tokens(rows, dataset.join_key, self._state.rows_received)
        step = chunk_rows(rows, limits.cocreation_chunk_rows_max)
        for start in range(0, rows.num_rows, step):
            part = rows.slice(start, step)
            data = to_ipc(pa.Table.from_batches([part]))
            stored = await self._store.append_chunk(dataset, self._state, data, part.num_rows)
            self._state = stored if stored is not None else await self._conflict()
        return self._progress()

    async def commit(self, rows_total: int) -> bulk_pb2.UploadProgress:
        dataset = self._dataset
        if rows_total != self._state.rows_received:
            raise failed_precondition(
                Reason.UPLOAD_ROWS_MISSING,
                f"the commit counts {rows_total} rows but {self._state.rows_received} were received",
                rows_received=str(self._state.rows_received),
            )
        change = await self._store.change(
            dataset.collaboration_id,
            lambda room: room.committed(dataset.dataset_id, rows_total, self._store.now_ms()),
        )
        self._dataset = change.room.dataset(dataset.dataset_id)
        if self._dataset.state is DatasetState.WITHDRAWN:
            raise _withdrawn(dataset)
        return self._progress()

    def _progress(self) -> bulk_pb2.UploadProgress:
        return bulk_pb2.UploadProgress(
            rows_received=self._state.rows_received,
            committed=self._dataset.state is DatasetState.READY,
        )

    async def _conflict(self) -> RowsState:
        dataset = self._dataset
        state = await self._store.rows_state(dataset.owner, dataset.collaboration_id, dataset.dataset_id)
        if state.withdrawn:
            raise _withdrawn(dataset)
        raise ApiError(
            ErrorCode.ABORTED,
            Reason.UPLOAD_CONFLICT,
            f"another upload of dataset {dataset.dataset_id} stored rows meanwhile; resume it",
            metadata={"dataset_id": dataset.dataset_id},
        )


def _closed(dataset: Dataset) -> ApiError | None:
    """Why the dataset takes no more rows, if it takes none."""
    if dataset.state is DatasetState.WITHDRAWN:
        return _withdrawn(dataset)
    if dataset.state is DatasetState.READY:
        return failed_precondition(
            Reason.UPLOAD_COMMITTED,
            f"dataset {dataset.dataset_id} was committed with {dataset.row_count} rows",
            dataset_id=dataset.dataset_id,
        )
    return None


def _withdrawn(dataset: Dataset) -> ApiError:
    return failed_precondition(
        Reason.DATASET_WITHDRAWN, f"dataset {dataset.dataset_id} was withdrawn", dataset_id=dataset.dataset_id
    )


def _check_tokens(rows: pa.RecordBatch, column: str, first_row: int) -> None:
    """Join keys arrive as tokens (HMAC-SHA256 in hex), never in clear: else the message is refused."""
    valid = pc.match_substring_regex(rows.column(column), TOKEN_PATTERN)
    if not pc.all(valid).as_py():
        first = pc.index(valid, False).as_py()
        raise invalid_fields(
            (
                FieldViolation(
                    column,
                    f"row {first_row + first} is not a token (64 lowercase hex characters: HMAC-SHA256,"
                    " see jubao.bulk.cocreation.tokenize)",
                ),
            )
        )
