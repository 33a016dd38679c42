"""Applying committed uploads, in the gRPC server processes (they own the ledger shards the rows need).

Every server polls the jobs partition. A job is claimed with a conditional write (its `version` + 1, an
owner and a lease), then the upload itself is fenced with that version (`apply_epoch`): from then on the
results of each chunk are stored, with the upload's counters, only if the upload still carries this
epoch and the chunk is the next one. A server that crashed or stalled past its lease is taken over by
the next claim, whose fence makes any late write of the old one fail; the rows of a chunk whose results
were not stored are applied again, and the product answers them as the retries they are (payments: the
request id of each row, AIP-155), so nothing is applied twice and every row gets its one result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from jubao.bulk.schemas import APPLIED, UploadSchemas

from jubao_server import limits
from jubao_server.bulk.arrow import ROW_COLUMN, from_ipc, to_ipc, with_rows
from jubao_server.bulk.config import BulkSettings
from jubao_server.bulk.datasets import Apply, rejected_results
from jubao_server.bulk.store import BulkStore, Chunk, Job, StoredResult, Upload, UploadState
from jubao_server.bulk.uploads import REJECTIONS
from jubao_server.clock import Clock
from jubao_server.errors import ApiError
from jubao_server.storage.contract import StorageError

log = structlog.get_logger("jubao.bulk.apply")


@dataclasses.dataclass(frozen=True)
class Applier:
    """How the rows of one upload dataset are applied."""

    schemas: UploadSchemas
    apply: Apply


class LeaseLost(Exception):
    """Another server took the job (this one stalled past its lease)."""


class ApplyWorker:
    def __init__(
        self,
        store: BulkStore,
        appliers: Mapping[str, Applier],
        settings: BulkSettings,
        clock: Clock,
        *,
        owner: str = "",
    ) -> None:
        self._store = store
        self._appliers = appliers
        self._clock = clock
        self._poll_s = settings.job_poll_ms / 1000
        self._lease_ms = settings.job_lease_ms
        # Who holds a job: this process (a label, e.g. its address, and an id of its own).
        self.owner = f"{owner}#{uuid.uuid4().hex[:16]}"
        self._task: asyncio.Task[None] | None = None
        # Jobs this server applies now, by key: at most `bulk_jobs_in_flight_max`, so one long upload
        # does not hold up the others.
        self._running: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bulk-apply")

    async def stop(self) -> None:
        for task in [self._task, *self._running.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except (StorageError, ApiError) as error:
                log.warning("bulk apply paused", error=str(error))
            await self._clock.sleep(self._poll_s)

    async def poll(self) -> None:
        """Start applying the jobs that are free (never claimed, or their lease ran out), as many as
        `bulk_jobs_in_flight_max` allows."""
        now_ms = self._store.now_ms()
        for job in await self._store.pending_jobs():
            if len(self._running) >= limits.bulk_jobs_in_flight_max:
                return
            if job.key in self._running or (job.owner and job.lease_until_ms > now_ms):
                continue
            self._running[job.key] = asyncio.create_task(self._apply_logged(job), name=f"bulk {job.key}")

    async def _apply_logged(self, job: Job) -> None:
        try:
            await self.apply(job)
        except Exception:
            log.exception("bulk apply failed; the job is taken up again after its lease", job=job.key)
        finally:
            self._running.pop(job.key, None)

    async def apply(self, job: Job) -> None:
        leased = await self._store.lease(job, self.owner, self._lease_ms)
        if leased is None:
            return
        holder = [leased]
        renewal = asyncio.create_task(self._renew(holder))
        try:
            done = await self._apply_upload(job.tenant_id, job.batch_id, leased.version, renewal)
        except (StorageError, ApiError) as error:
            log.warning(
                "bulk apply interrupted", tenant_id=job.tenant_id, batch_id=job.batch_id, error=str(error)
            )
            done = False
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLost):
                await renewal
        if done:
            await self._store.remove_job(holder[0])

    async def _renew(self, holder: list[Job]) -> None:
        """Renew the lease a third of the way through it, for as long as the apply runs."""
        while True:
            await self._clock.sleep(self._lease_ms / 3000)
            renewed = await self._store.lease(holder[0], self.owner, self._lease_ms)
            if renewed is None:
                raise LeaseLost
            holder[0] = renewed

    async def _apply_upload(
        self, tenant_id: str, batch_id: str, epoch: int, renewal: asyncio.Task[None]
    ) -> bool:
        """Apply the upload's chunks that have no results yet; True when the job is over (the upload is
        done or gone), False when it must be applied again later."""
        upload = await self._store.get(tenant_id, batch_id, serial=True)
        if upload is None or upload.state is UploadState.DONE:
            return True
        if upload.state is UploadState.RECEIVING:
            return False
        applier = self._appliers.get(upload.dataset)
        if applier is None:
            log.error("no applier for the dataset", dataset=upload.dataset, batch_id=batch_id)
            return False
        fenced = await self._store.fence(tenant_id, upload, epoch)
        if fenced is None:
            return False
        upload = fenced
        if upload.chunk_count == 0:
            return await self._store.finish_empty(tenant_id, upload) is not None
        async for chunk in self._store.chunks(tenant_id, batch_id, upload.chunks_applied):
            if renewal.done():
                return False
            result = await self._apply_chunk(tenant_id, applier, chunk)
            advanced = await self._store.record_results(tenant_id, upload, result)
            if advanced is None:
                return False
            upload = advanced
        log.info(
            "upload applied",
            tenant_id=tenant_id,
            batch_id=batch_id,
            rows_applied=upload.rows_applied,
            rows_failed=upload.rows_failed,
        )
        return _done(upload)

    async def _apply_chunk(self, tenant_id: str, applier: Applier, chunk: Chunk) -> StoredResult:
        rows = from_ipc(chunk.data, with_rows(applier.schemas.rows))
        parts = []
        for start in range(0, rows.num_rows, limits.bulk_apply_rows_max):
            parts.append(await applier.apply(tenant_id, rows.slice(start, limits.bulk_apply_rows_max)))
        refused = from_ipc(chunk.rejections, REJECTIONS)
        parts.append(
            rejected_results(
                applier.schemas,
                refused.column(ROW_COLUMN).to_pylist(),
                [row_id or "" for row_id in refused.column("row_id").to_pylist()],
                refused.column("message").to_pylist(),
            )
        )
        results = pa.concat_tables(parts).sort_by(ROW_COLUMN)
        applied = int(pc.sum(pc.equal(results.column("status"), APPLIED)).as_py() or 0)
        return StoredResult(chunk.seq, to_ipc(results), applied, results.num_rows - applied)


def _done(upload: Upload) -> bool:
    return upload.state is UploadState.DONE
