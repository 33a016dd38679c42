-- Co-creation tables (server/jubao_server/cocreation/tables.py holds their Table specs).

CREATE TABLE IF NOT EXISTS cocreation_collaborations (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    row_kind TEXT NOT NULL,
    row_key TEXT NOT NULL,
    record BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, row_kind, row_key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS cocreation_collaborations__static (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    version INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS cocreation_memberships (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS cocreation_rows (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    first_row INTEGER,
    row_count INTEGER,
    data BLOB,
    sha256 BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, dataset_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS cocreation_rows__static (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    rows_received INTEGER,
    chunk_count INTEGER,
    withdrawn INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, dataset_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS cocreation_requests (
    scope TEXT NOT NULL,
    request_id TEXT NOT NULL,
    operation TEXT,
    body_sha256 TEXT,
    answer BLOB,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, request_id)
) WITHOUT ROWID;
