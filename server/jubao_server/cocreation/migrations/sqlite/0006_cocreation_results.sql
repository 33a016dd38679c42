-- Query results too large for their response, kept for their analyst (cocreation/tables.py holds the Table
-- spec).

CREATE TABLE IF NOT EXISTS cocreation_results (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    result_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    row_count INTEGER,
    chunk_count INTEGER,
    data BLOB,
    sha256 BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, result_id, seq)
) WITHOUT ROWID;
