"""Uploads as the API shows them (`jubao.bulk.v1.Upload`), for the Flight action and the gRPC service."""

from __future__ import annotations

from typing import Final

from google.protobuf import timestamp_pb2
from jubao.bulk.v1 import bulk_pb2

from jubao_server.bulk.store import Upload, UploadState

_STATES: Final = {
    UploadState.RECEIVING: bulk_pb2.Upload.STATE_RECEIVING,
    UploadState.APPLYING: bulk_pb2.Upload.STATE_APPLYING,
    UploadState.DONE: bulk_pb2.Upload.STATE_DONE,
}


def _timestamp(time_ms: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(time_ms)
    return stamp


def upload_to_pb(upload: Upload) -> bulk_pb2.Upload:
    return bulk_pb2.Upload(
        batch_id=upload.batch_id,
        dataset=upload.dataset,
        state=_STATES[upload.state],
        done=upload.state is UploadState.DONE,
        rows_received=upload.rows_received,
        bytes_received=upload.bytes_received,
        rows_rejected=upload.rows_rejected,
        rows_applied=upload.rows_applied,
        rows_failed=upload.rows_failed,
        rows_total=upload.rows_total,
        create_time=_timestamp(upload.create_time_ms),
        update_time=_timestamp(upload.update_time_ms),
    )
