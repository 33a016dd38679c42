-- The bulk plane (server/jubao_server/bulk/tables.py holds their Table specs).

CREATE TABLE IF NOT EXISTS bulk_uploads (
    scope TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    row_kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    dataset TEXT,
    command BLOB,
    upload_state TEXT,
    create_time_ms INTEGER,
    update_time_ms INTEGER,
    rows_received INTEGER,
    rows_rejected INTEGER,
    bytes_received INTEGER,
    chunk_count INTEGER,
    rows_total INTEGER,
    apply_epoch INTEGER,
    chunks_applied INTEGER,
    rows_applied INTEGER,
    rows_failed INTEGER,
    first_row INTEGER,
    row_count INTEGER,
    data BLOB,
    sha256 BLOB,
    rejections BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, batch_id, row_kind, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bulk_upload_index (
    scope TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    dataset TEXT,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, batch_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bulk_jobs (
    scope TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    job_key TEXT NOT NULL,
    tenant_id TEXT,
    batch_id TEXT,
    owner TEXT,
    lease_until_ms INTEGER,
    version INTEGER,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, bucket, job_key)
) WITHOUT ROWID;
