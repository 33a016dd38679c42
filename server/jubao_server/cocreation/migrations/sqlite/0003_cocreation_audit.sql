-- The co-creation audit log (server/jubao_server/cocreation/tables.py holds the Table spec).

CREATE TABLE IF NOT EXISTS cocreation_audit (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    audit_id TEXT NOT NULL,
    record BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, time_ms, audit_id)
) WITHOUT ROWID;
