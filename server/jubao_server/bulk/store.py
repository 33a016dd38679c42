"""The bulk plane's storage (tables in `bulk/tables.py`): uploads, their chunks and results, and the jobs
that apply them. Every change to an upload is one conditional batch on its partition that rewrites the
`upload` row whole (so its cells share one TTL) under a condition on the counter the change advances."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Mapping
from enum import StrEnum
from typing import Final

from jubao_server import limits
from jubao_server.bulk.tables import CHUNK_ROW, JOBS, RESULT_ROW, UPLOAD_INDEX, UPLOAD_ROW, UPLOADS
from jubao_server.clock import Clock
from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    PLATFORM_SCOPE,
    Batch,
    Bound,
    Consistency,
    Delete,
    PartitionRef,
    Put,
    RowAbsent,
    RowMatches,
    RowQuery,
    StorageBackend,
    Value,
)
from jubao_server.storage.contract.reads import Row

UPLOAD_KEY: Final = (UPLOAD_ROW, 0)
# The jobs partition every server polls (one for now: `bucket` leaves room to spread jobs out).
JOB_BUCKET: Final = 0


class UploadState(StrEnum):
    RECEIVING = "receiving"
    APPLYING = "applying"
    DONE = "done"


@dataclasses.dataclass(frozen=True)
class Upload:
    """The `upload` row of an upload's partition."""

    batch_id: str
    dataset: str
    command: bytes
    state: UploadState
    create_time_ms: int
    update_time_ms: int
    rows_received: int = 0
    rows_rejected: int = 0
    bytes_received: int = 0
    chunk_count: int = 0
    rows_total: int = 0
    apply_epoch: int = 0
    chunks_applied: int = 0
    rows_applied: int = 0
    rows_failed: int = 0

    def values(self) -> dict[str, Value]:
        return {
            "dataset": self.dataset,
            "command": self.command,
            "upload_state": self.state.value,
            "create_time_ms": self.create_time_ms,
            "update_time_ms": self.update_time_ms,
            "rows_received": self.rows_received,
            "rows_rejected": self.rows_rejected,
            "bytes_received": self.bytes_received,
            "chunk_count": self.chunk_count,
            "rows_total": self.rows_total,
            "apply_epoch": self.apply_epoch,
            "chunks_applied": self.chunks_applied,
            "rows_applied": self.rows_applied,
            "rows_failed": self.rows_failed,
        }

    @classmethod
    def from_row(cls, batch_id: str, row: Row) -> Upload:
        command = row["command"]
        ensure(isinstance(command, bytes), "an upload row has its command")
        return cls(
            batch_id=batch_id,
            dataset=row.as_text("dataset"),
            command=command if isinstance(command, bytes) else b"",
            state=UploadState(row.as_text("upload_state")),
            create_time_ms=row.as_int("create_time_ms"),
            update_time_ms=row.as_int("update_time_ms"),
            rows_received=row.as_int("rows_received"),
            rows_rejected=row.as_int("rows_rejected"),
            bytes_received=row.as_int("bytes_received"),
            chunk_count=row.as_int("chunk_count"),
            rows_total=row.as_int("rows_total"),
            apply_epoch=row.as_int("apply_epoch"),
            chunks_applied=row.as_int("chunks_applied"),
            rows_applied=row.as_int("rows_applied"),
            rows_failed=row.as_int("rows_failed"),
        )


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A stored chunk: rows `first_row .. first_row + row_count` of the upload; `data` holds the accepted
    ones (Arrow IPC stream, with their row numbers), `rejections` those refused at validation."""

    seq: int
    first_row: int
    row_count: int
    data: bytes
    rejections: bytes

    @property
    def sha256(self) -> bytes:
        return chunk_digest(self.data, self.rejections)


@dataclasses.dataclass(frozen=True)
class StoredResult:
    """The results of one chunk's rows (Arrow IPC stream in the dataset's results schema)."""

    seq: int
    data: bytes
    applied_count: int
    failed_count: int


@dataclasses.dataclass(frozen=True)
class Job:
    tenant_id: str
    batch_id: str
    owner: str
    lease_until_ms: int
    version: int

    @property
    def key(self) -> str:
        return job_key(self.tenant_id, self.batch_id)


class ChecksumMismatch(Exception):
    """A stored chunk does not match its SHA-256."""


def chunk_digest(data: bytes, rejections: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (data, rejections):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def job_key(tenant_id: str, batch_id: str) -> str:
    return f"{tenant_id}/{batch_id}"


class BulkStore:
    def __init__(self, backend: StorageBackend, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock

    @property
    def clock(self) -> Clock:
        return self._clock

    def now_ms(self) -> int:
        return self._clock.wall_ms()

    # Uploads

    async def get(self, tenant_id: str, batch_id: str, *, serial: bool = False) -> Upload | None:
        consistency = Consistency.SERIAL if serial else Consistency.DEFAULT
        row = await self._backend.read_row(UPLOADS.partition(tenant_id, batch_id), UPLOAD_KEY, consistency)
        return Upload.from_row(batch_id, row) if row is not None and row["dataset"] is not None else None

    async def create(self, tenant_id: str, batch_id: str, dataset: str, command: bytes) -> Upload:
        """The upload of `batch_id`: created now in RECEIVING, or as it already is."""
        now_ms = self.now_ms()
        index = Put(
            (batch_id,), {"dataset": dataset, "create_time_ms": now_ms}, ttl_s=limits.bulk_upload_ttl_s
        )
        await self._backend.write(Batch(UPLOAD_INDEX.partition(tenant_id), (index,)))
        upload = Upload(batch_id, dataset, command, UploadState.RECEIVING, now_ms, now_ms)
        outcome = await self._backend.write(
            Batch(
                UPLOADS.partition(tenant_id, batch_id),
                (self._upload_put(upload),),
                conditions=(RowAbsent(UPLOAD_KEY),),
            )
        )
        if outcome.applied:
            return upload
        current = outcome.current_rows.get(UPLOAD_KEY)
        ensure(current is not None, "a refused IF NOT EXISTS names the existing row")
        return Upload.from_row(batch_id, current) if current is not None else upload

    async def append_chunk(
        self, tenant_id: str, upload: Upload, chunk: Chunk, *, rejected_count: int, data_bytes: int
    ) -> Upload | None:
        """Store `chunk` as the upload's next one and advance its counters; None when another writer
        advanced the upload first (nothing was written)."""
        ensure(chunk.seq == upload.chunk_count, "chunks are stored in order")
        ensure(chunk.first_row == upload.rows_received, "a chunk starts at the rows received")
        advanced = dataclasses.replace(
            upload,
            update_time_ms=self.now_ms(),
            rows_received=upload.rows_received + chunk.row_count,
            rows_rejected=upload.rows_rejected + rejected_count,
            bytes_received=upload.bytes_received + data_bytes,
            chunk_count=upload.chunk_count + 1,
        )
        put = Put(
            (CHUNK_ROW, chunk.seq),
            {
                "first_row": chunk.first_row,
                "row_count": chunk.row_count,
                "data": chunk.data,
                "rejections": chunk.rejections,
                "sha256": chunk.sha256,
            },
            ttl_s=limits.bulk_upload_ttl_s,
        )
        expected: dict[str, Value] = {
            "upload_state": UploadState.RECEIVING.value,
            "rows_received": upload.rows_received,
        }
        return await self._advance(tenant_id, advanced, expected, (put,))

    async def commit(self, tenant_id: str, upload: Upload) -> Upload | None:
        """RECEIVING → APPLYING, after recording the job that will apply it (a job whose upload is not
        committed is skipped, so a crash in between leaves nothing wrong)."""
        await self.add_job(tenant_id, upload.batch_id)
        committed = dataclasses.replace(
            upload, state=UploadState.APPLYING, rows_total=upload.rows_received, update_time_ms=self.now_ms()
        )
        expected: dict[str, Value] = {
            "upload_state": UploadState.RECEIVING.value,
            "rows_received": upload.rows_received,
        }
        return await self._advance(tenant_id, committed, expected, ())

    async def fence(self, tenant_id: str, upload: Upload, epoch: int) -> Upload | None:
        """Take the upload's apply for `epoch` (a job version): later writes of older epochs fail."""
        fenced = dataclasses.replace(upload, apply_epoch=epoch, update_time_ms=self.now_ms())
        return await self._advance(tenant_id, fenced, {"apply_epoch": upload.apply_epoch}, ())

    async def record_results(self, tenant_id: str, upload: Upload, result: StoredResult) -> Upload | None:
        """Store the results of chunk `result.seq` (the next one) and count them; the upload is DONE
        with its last chunk. None when a newer apply took the upload (nothing was written)."""
        ensure(result.seq == upload.chunks_applied, "results are stored in chunk order")
        applied = upload.chunks_applied + 1
        advanced = dataclasses.replace(
            upload,
            state=UploadState.DONE if applied == upload.chunk_count else upload.state,
            update_time_ms=self.now_ms(),
            chunks_applied=applied,
            rows_applied=upload.rows_applied + result.applied_count,
            rows_failed=upload.rows_failed + result.failed_count,
        )
        put = Put(
            (RESULT_ROW, result.seq),
            {
                "data": result.data,
                "sha256": chunk_digest(result.data, b""),
                "row_count": result.applied_count + result.failed_count,
            },
            ttl_s=limits.bulk_upload_ttl_s,
        )
        expected = {"apply_epoch": upload.apply_epoch, "chunks_applied": upload.chunks_applied}
        return await self._advance(tenant_id, advanced, expected, (put,))

    async def finish_empty(self, tenant_id: str, upload: Upload) -> Upload | None:
        """An upload committed without chunks is done at once."""
        done = dataclasses.replace(upload, state=UploadState.DONE, update_time_ms=self.now_ms())
        return await self._advance(tenant_id, done, {"apply_epoch": upload.apply_epoch}, ())

    async def chunks(self, tenant_id: str, batch_id: str, first_seq: int = 0) -> AsyncIterator[Chunk]:
        """The stored chunks from `first_seq` on, checked against their SHA-256."""
        async for row in self._rows(tenant_id, batch_id, CHUNK_ROW, first_seq):
            chunk = Chunk(
                seq=row.as_int("seq"),
                first_row=row.as_int("first_row"),
                row_count=row.as_int("row_count"),
                data=_blob(row, "data"),
                rejections=_blob(row, "rejections"),
            )
            if chunk.sha256 != _blob(row, "sha256"):
                raise ChecksumMismatch(f"chunk {chunk.seq} of upload {batch_id} does not match its SHA-256")
            yield chunk

    async def results(self, tenant_id: str, batch_id: str) -> AsyncIterator[bytes]:
        """The stored results, chunk by chunk (Arrow IPC streams), checked against their SHA-256."""
        async for row in self._rows(tenant_id, batch_id, RESULT_ROW, 0):
            data = _blob(row, "data")
            if chunk_digest(data, b"") != _blob(row, "sha256"):
                raise ChecksumMismatch(f"results {row.as_int('seq')} of upload {batch_id} do not match")
            yield data

    async def list_uploads(
        self, tenant_id: str, after: str | None, limit: int
    ) -> tuple[list[Upload], str | None]:
        """The tenant's uploads by batch id after `after`, and the batch id to continue after (None: the
        end). Index entries whose upload was never created or has expired are skipped."""
        lower = Bound((after,), inclusive=False) if after is not None else None
        page = await self._backend.read_page(
            RowQuery(UPLOAD_INDEX.partition(tenant_id), lower=lower, limit=limit)
        )
        uploads = []
        for row in page.rows:
            upload = await self.get(tenant_id, row.as_text("batch_id"))
            if upload is not None:
                uploads.append(upload)
        last = page.rows[-1].as_text("batch_id") if page.rows and page.next_after is not None else None
        return uploads, last

    # Jobs

    async def add_job(self, tenant_id: str, batch_id: str) -> None:
        values: dict[str, Value] = {
            "tenant_id": tenant_id,
            "batch_id": batch_id,
            "owner": "",
            "lease_until_ms": 0,
            "version": 0,
            "create_time_ms": self.now_ms(),
        }
        key = (job_key(tenant_id, batch_id),)
        batch = Batch(self._jobs_partition(), (Put(key, values),), conditions=(RowAbsent(key),))
        await self._backend.write(batch)

    async def pending_jobs(self) -> list[Job]:
        query = RowQuery(self._jobs_partition(), limit=limits.bulk_jobs_per_poll_max)
        page = await self._backend.read_page(query)
        return [
            Job(
                row.as_text("tenant_id"),
                row.as_text("batch_id"),
                row.as_text("owner"),
                row.as_int("lease_until_ms"),
                row.as_int("version"),
            )
            for row in page.rows
        ]

    async def lease(self, job: Job, owner: str, lease_ms: int) -> Job | None:
        """Claim or renew the job for `owner` until now + `lease_ms` (version + 1); None when another
        server changed it first."""
        leased = dataclasses.replace(
            job, owner=owner, lease_until_ms=self.now_ms() + lease_ms, version=job.version + 1
        )
        put = Put(
            (job.key,),
            {"owner": owner, "lease_until_ms": leased.lease_until_ms, "version": leased.version},
        )
        condition = RowMatches((job.key,), {"version": job.version})
        outcome = await self._backend.write(Batch(self._jobs_partition(), (put,), conditions=(condition,)))
        return leased if outcome.applied else None

    async def remove_job(self, job: Job) -> None:
        """Forget a job whose upload is done (or expired): unconditional, since whoever holds it has
        nothing left to do."""
        await self._backend.write(Batch(self._jobs_partition(), deletes=(Delete((job.key,)),)))

    # Helpers

    def _jobs_partition(self) -> PartitionRef:
        return JOBS.partition(PLATFORM_SCOPE, JOB_BUCKET)

    def _upload_put(self, upload: Upload) -> Put:
        return Put(UPLOAD_KEY, upload.values(), ttl_s=limits.bulk_upload_ttl_s)

    async def _advance(
        self, tenant_id: str, upload: Upload, expected: Mapping[str, Value], puts: tuple[Put, ...]
    ) -> Upload | None:
        batch = Batch(
            UPLOADS.partition(tenant_id, upload.batch_id),
            (*puts, self._upload_put(upload)),
            conditions=(RowMatches(UPLOAD_KEY, expected),),
        )
        return upload if (await self._backend.write(batch)).applied else None

    async def _rows(self, tenant_id: str, batch_id: str, kind: str, first_seq: int) -> AsyncIterator[Row]:
        query = RowQuery(
            UPLOADS.partition(tenant_id, batch_id),
            lower=Bound((kind, first_seq), inclusive=True),
            upper=Bound((kind,), inclusive=True),
            limit=limits.bulk_chunks_per_read_max,
        )
        for _ in range(limits.bulk_upload_rows_max + 1):
            page = await self._backend.read_page(query)
            for row in page.rows:
                yield row
            if page.next_after is None:
                return
            query = query.after(page.next_after)
        ensure(False, "an upload has at most bulk_upload_rows_max chunks")


def _blob(row: Row, column: str) -> bytes:
    value = row[column]
    ensure(value is None or isinstance(value, bytes), f"{column} is a blob")
    return value if isinstance(value, bytes) else b""
