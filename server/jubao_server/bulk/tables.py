"""Tables of the bulk plane (see ARCHITECTURE.md, "Bulk plane").

* `bulk_uploads`: one partition per upload (tenant scope, batch id). Its `upload` row holds the upload's
  state and counters; `chunk` rows (seq = chunk number) hold the accepted rows as Arrow IPC streams of at
  most `bulk_chunk_bytes_max`, with a SHA-256 and the rows refused at validation; `result` rows (seq =
  chunk number) hold the result of each row of that chunk once applied. Every change is one conditional
  batch on this partition that also rewrites the `upload` row, conditioned on the counter it advances
  (`rows_received` for a chunk, `apply_epoch` and `chunks_applied` for a result): two writers of one
  upload (a resumed DoPut racing an old one, two servers applying) can never both advance it. Rows expire
  after `bulk_upload_ttl_s`.
* `bulk_upload_index`: the tenant's uploads by batch id (tenant scope, one partition), for listing.
* `bulk_jobs`: uploads committed and not yet applied, in the platform scope (one partition per bucket),
  where every gRPC server looks for work; a job is claimed with a conditional write of `owner`,
  `lease_until_ms` and `version`.
"""

from __future__ import annotations

from typing import Final

from jubao_server.storage.contract import ColumnType, Table

T = ColumnType

UPLOAD_ROW: Final = "upload"
CHUNK_ROW: Final = "chunk"
RESULT_ROW: Final = "result"

UPLOAD_COLUMNS: Final = {
    "dataset": T.TEXT,
    "command": T.BLOB,
    "upload_state": T.TEXT,
    "create_time_ms": T.BIGINT,
    "update_time_ms": T.BIGINT,
    "rows_received": T.BIGINT,
    "rows_rejected": T.BIGINT,
    "bytes_received": T.BIGINT,
    "chunk_count": T.BIGINT,
    "rows_total": T.BIGINT,
    "apply_epoch": T.BIGINT,
    "chunks_applied": T.BIGINT,
    "rows_applied": T.BIGINT,
    "rows_failed": T.BIGINT,
}

UPLOADS: Final = Table(
    name="bulk_uploads",
    partition_key=("batch_id",),
    clustering_key=("row_kind", "seq"),
    columns={
        "batch_id": T.TEXT,
        "row_kind": T.TEXT,
        "seq": T.BIGINT,
        **UPLOAD_COLUMNS,
        "first_row": T.BIGINT,
        "row_count": T.BIGINT,
        "data": T.BLOB,
        "sha256": T.BLOB,
        "rejections": T.BLOB,
    },
)

UPLOAD_INDEX: Final = Table(
    name="bulk_upload_index",
    partition_key=(),
    clustering_key=("batch_id",),
    columns={"batch_id": T.TEXT, "dataset": T.TEXT, "create_time_ms": T.BIGINT},
)

JOBS: Final = Table(
    name="bulk_jobs",
    partition_key=("bucket",),
    clustering_key=("job_key",),
    columns={
        "bucket": T.BIGINT,
        "job_key": T.TEXT,
        "tenant_id": T.TEXT,
        "batch_id": T.TEXT,
        "owner": T.TEXT,
        "lease_until_ms": T.BIGINT,
        "version": T.BIGINT,
        "create_time_ms": T.BIGINT,
    },
)
