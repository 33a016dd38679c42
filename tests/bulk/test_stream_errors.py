"""A download that fails after its first batch ends with the Flight error of its cause and its ErrorInfo
reason, as a failure before the stream does, never as UNKNOWN."""

from __future__ import annotations

import pyarrow as pa
import pytest
from jubao.bulk import schemas
from jubao.errors import DataLoss, Reason
from jubao_server import limits
from jubao_server.bulk.arrow import to_ipc
from jubao_server.bulk.store import BulkStore, StoredResult
from jubao_server.bulk.tables import RESULT_ROW, UPLOADS
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.contract import Batch, Put, StorageBackend

from tests.bulk.support import FlightProcess, batch_id, transfers

DEMO_TENANT = "demo-bank"
CHUNKS = 2


def _results(first_row: int, rows: int) -> pa.Table:
    numbers = range(first_row, first_row + rows)
    return pa.table(
        {
            "row": pa.array(numbers, pa.int64()),
            "request_id": [f"r-{i}" for i in numbers],
            "status": [schemas.APPLIED] * rows,
            "transfer_id": [f"tr-{i}" for i in numbers],
            "state": ["posted"] * rows,
            "code": [""] * rows,
            "reason": [""] * rows,
            "message": [""] * rows,
        },
        schema=schemas.TRANSFER_RESULTS,
    )


async def test_damaged_results_after_the_first_batch_fail_with_their_reason(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    """The results of an upload's first chunk are sound and those of its second damaged: the download
    yields the first batch, then DATA_LOSS (CHECKSUM_MISMATCH)."""
    backend = store[0]
    rows = limits.bulk_chunk_rows_max
    batch = batch_id()
    with flight_process.client(keys[DEMO_TENANT]) as client:
        client.upload_transfers(batch, transfers(CHUNKS * rows))
    bulk = BulkStore(backend, SYSTEM_CLOCK)
    upload = await bulk.get(DEMO_TENANT, batch)
    assert upload is not None and upload.chunk_count == CHUNKS
    upload = await bulk.fence(DEMO_TENANT, upload, upload.apply_epoch + 1)
    for seq in range(CHUNKS):
        assert upload is not None
        stored = StoredResult(seq, to_ipc(_results(seq * rows, rows)), rows, 0)
        upload = await bulk.record_results(DEMO_TENANT, upload, stored)
    damage = Put((RESULT_ROW, CHUNKS - 1), {"sha256": bytes(32)})
    await backend.write(Batch(UPLOADS.partition(DEMO_TENANT, batch), (damage,)))
    with flight_process.client(keys[DEMO_TENANT]) as client:
        batches = iter(client.results(batch))
        first = next(batches)
        assert first.column("row").to_pylist() == list(range(rows))
        with pytest.raises(DataLoss) as failed:
            next(batches)
    assert failed.value.reason == Reason.CHECKSUM_MISMATCH
