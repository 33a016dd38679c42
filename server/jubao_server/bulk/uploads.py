"""Receiving an upload (in the Flight process): each message is checked, its rows numbered, refused rows
kept with their reasons, and the rest stored as chunks, durably, before the progress is acknowledged.

Exactly once: a chunk is stored only where the upload's durable row count says it starts (a conditional
batch on the upload's partition), so rows below that count are skipped when a broken upload is sent again,
and two uploads of one batch id racing each other never store a row twice. Within an upload each row's
id (its request id) appears once: a repeat is refused, naming the row it repeats.
"""

from __future__ import annotations

import dataclasses
from typing import Final

import pyarrow as pa
from jubao.bulk.v1 import bulk_pb2
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.bulk.arrow import ROW_COLUMN, conformed, from_ipc, to_ipc, with_rows
from jubao_server.bulk.datasets import UploadDataset
from jubao_server.bulk.store import BulkStore, Chunk, Upload, UploadState
from jubao_server.errors import ApiError, ErrorCode, already_exists, failed_precondition, invalid

# Rows refused at validation, as a chunk keeps them.
REJECTIONS: Final = pa.schema(
    [
        pa.field(ROW_COLUMN, pa.int64(), nullable=False),
        pa.field("row_id", pa.string(), nullable=True),
        pa.field("message", pa.string(), nullable=False),
    ]
)


def progress_of(upload: Upload) -> bulk_pb2.UploadProgress:
    return bulk_pb2.UploadProgress(
        rows_received=upload.rows_received,
        rows_rejected=upload.rows_rejected,
        committed=upload.state is not UploadState.RECEIVING,
    )


@dataclasses.dataclass
class UploadSession:
    """One DoPut's view of an upload: the upload as last stored and the row ids it holds."""

    store: BulkStore
    tenant_id: str
    dataset: UploadDataset
    upload: Upload
    seen: dict[str, int]

    @classmethod
    async def open(
        cls, store: BulkStore, tenant_id: str, dataset: UploadDataset, command: bytes
    ) -> UploadSession:
        """The upload of the command's batch id, created if new; ALREADY_EXISTS (REQUEST_ID_REUSED) when
        the batch id names an upload of another command."""
        batch_id = dataset.batch_id(command)
        upload = await store.create(tenant_id, batch_id, dataset.name, command)
        if (upload.dataset, upload.command) != (dataset.name, command):
            raise already_exists(
                Reason.REQUEST_ID_REUSED,
                f"batch_id {batch_id} names an upload of another command ({upload.dataset})",
                batch_id=batch_id,
            )
        seen: dict[str, int] = {}
        if upload.state is UploadState.RECEIVING:
            data_schema = with_rows(dataset.schemas.rows)
            async for chunk in store.chunks(tenant_id, batch_id):
                table = from_ipc(chunk.data, data_schema)
                ids = table.column(dataset.schemas.row_id_column).to_pylist()
                seen.update(zip(ids, table.column(ROW_COLUMN).to_pylist(), strict=True))
        return cls(store, tenant_id, dataset, upload, seen)

    @property
    def schema(self) -> pa.Schema:
        return self.dataset.schemas.rows

    @property
    def rows_received(self) -> int:
        return self.upload.rows_received

    async def receive(self, batch: pa.RecordBatch, first_row: int) -> bulk_pb2.UploadProgress:
        """Store the rows of one message that are not stored yet; the durable progress."""
        upload = self.upload
        closed = None
        if upload.state is not UploadState.RECEIVING:
            closed = failed_precondition(
                Reason.UPLOAD_COMMITTED,
                f"upload {upload.batch_id} was committed with {upload.rows_total} rows; row"
                f" {first_row + batch.num_rows - 1} is past its end",
                batch_id=upload.batch_id,
            )
        rows = fresh_rows(batch, first_row, upload.rows_received, closed)
        if rows is None:
            return progress_of(upload)
        _check_upload_bounds(upload, rows)
        rows = conformed(rows, self.dataset.schemas.rows, upload.rows_received)
        problems = self._problems(rows, upload.rows_received)
        step = chunk_rows(rows)
        for start in range(0, rows.num_rows, step):
            await self._store_chunk(rows.slice(start, step), start, problems)
        return progress_of(self.upload)

    async def commit(self, rows_total: int) -> bulk_pb2.UploadProgress:
        """Commit the upload for its apply; a commit repeated with the same row count is acknowledged."""
        upload = self.upload
        if upload.state is UploadState.RECEIVING:
            if rows_total != upload.rows_received:
                raise failed_precondition(
                    Reason.UPLOAD_ROWS_MISSING,
                    f"the commit counts {rows_total} rows but {upload.rows_received} were received",
                    rows_received=str(upload.rows_received),
                )
            committed = await self.store.commit(self.tenant_id, upload)
            self.upload = committed if committed is not None else self._conflict()
        elif rows_total != upload.rows_total:
            raise failed_precondition(
                Reason.UPLOAD_COMMITTED,
                f"upload {upload.batch_id} was committed with {upload.rows_total} rows, not {rows_total}",
                batch_id=upload.batch_id,
            )
        elif upload.state is UploadState.APPLYING:
            await self.store.add_job(self.tenant_id, upload.batch_id)
        return progress_of(self.upload)

    def _problems(self, rows: pa.RecordBatch, first_row: int) -> dict[int, tuple[str, str]]:
        """Refused rows by index in `rows`: their row id (or "") and why."""
        id_column = self.dataset.schemas.row_id_column
        ids = rows.column(id_column).to_pylist()
        problems = {
            p.index: (ids[p.index] or "", f"{p.column}: {p.message}") for p in self.dataset.row_problems(rows)
        }
        earlier: dict[str, int] = {}
        for index, row_id in enumerate(ids):
            if index in problems:
                continue
            repeated = self.seen.get(row_id, earlier.get(row_id))
            if repeated is not None:
                problems[index] = (row_id, f"{id_column}: repeats row {repeated}")
            else:
                earlier[row_id] = first_row + index
        return problems

    async def _store_chunk(
        self, rows: pa.RecordBatch, offset: int, problems: dict[int, tuple[str, str]]
    ) -> None:
        upload = self.upload
        first_row = upload.rows_received
        accepted = [i for i in range(rows.num_rows) if offset + i not in problems]
        refused = [offset + i for i in range(rows.num_rows) if offset + i in problems]
        data = b""
        if accepted:
            kept = pa.Table.from_batches([rows]).take(pa.array(accepted, pa.int64()))
            numbers = pa.array([first_row + i for i in accepted], pa.int64())
            data = to_ipc(kept.add_column(0, pa.field(ROW_COLUMN, pa.int64(), nullable=False), numbers))
        rejections = b""
        if refused:
            rejections = to_ipc(
                pa.table(
                    {
                        ROW_COLUMN: pa.array([first_row + i - offset for i in refused], pa.int64()),
                        "row_id": pa.array([problems[i][0] for i in refused], pa.string()),
                        "message": pa.array([problems[i][1] for i in refused], pa.string()),
                    },
                    schema=REJECTIONS,
                )
            )
        chunk = Chunk(upload.chunk_count, first_row, rows.num_rows, data, rejections)
        stored = await self.store.append_chunk(
            self.tenant_id, upload, chunk, rejected_count=len(refused), data_bytes=rows.nbytes
        )
        self.upload = stored if stored is not None else self._conflict()
        ids = rows.column(self.dataset.schemas.row_id_column).to_pylist()
        self.seen.update((ids[i], first_row + i) for i in accepted)

    def _conflict(self) -> Upload:
        raise ApiError(
            ErrorCode.ABORTED,
            Reason.UPLOAD_CONFLICT,
            f"another upload of batch_id {self.upload.batch_id} stored rows meanwhile; resume it",
            metadata={"batch_id": self.upload.batch_id},
        )


def fresh_rows(
    batch: pa.RecordBatch, first_row: int, rows_received: int, closed: ApiError | None
) -> pa.RecordBatch | None:
    """The rows of a DoPut message (checked against the message bounds) that are not stored yet, given
    that `rows_received` are; None when all of them are. A message with rows past those stored is refused
    with `closed` when the upload takes no more rows, and with UPLOAD_ROWS_MISSING when it starts past
    them (the client resumes from `rows_received`)."""
    check_message(batch)
    if first_row < 0:
        raise invalid("app_metadata.first_row", "must not be negative")
    if first_row + batch.num_rows <= rows_received:
        return None
    if closed is not None:
        raise closed
    if first_row > rows_received:
        raise failed_precondition(
            Reason.UPLOAD_ROWS_MISSING,
            f"this message starts at row {first_row} but {rows_received} rows are stored:"
            f" resume from row {rows_received}",
            rows_received=str(rows_received),
        )
    return batch.slice(rows_received - first_row)


def check_message(batch: pa.RecordBatch) -> None:
    if batch.num_rows > limits.bulk_message_rows_max:
        raise invalid("message", f"{batch.num_rows} rows; at most {limits.bulk_message_rows_max} per message")
    if batch.nbytes > limits.bulk_message_bytes_max:
        raise invalid("message", f"{batch.nbytes} bytes; at most {limits.bulk_message_bytes_max} per message")


def _check_upload_bounds(upload: Upload, rows: pa.RecordBatch) -> None:
    if upload.rows_received + rows.num_rows > limits.bulk_upload_rows_max:
        raise invalid("upload", f"more than {limits.bulk_upload_rows_max} rows")
    if upload.bytes_received + rows.nbytes > limits.bulk_upload_bytes_max:
        raise invalid("upload", f"more than {limits.bulk_upload_bytes_max} bytes")


def chunk_rows(rows: pa.RecordBatch, rows_max: int = limits.bulk_chunk_rows_max) -> int:
    """Rows per stored chunk (at most `rows_max`), so that a chunk stays under `bulk_chunk_bytes_max`."""
    bytes_per_row = max(1, int(rows.nbytes) // max(1, int(rows.num_rows)))
    return max(1, min(rows_max, limits.bulk_chunk_bytes_max // bytes_per_row))
