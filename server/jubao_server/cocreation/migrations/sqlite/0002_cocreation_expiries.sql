-- Collaborations by expiry (server/jubao_server/cocreation/tables.py holds the Table spec).

CREATE TABLE IF NOT EXISTS cocreation_expiries (
    scope TEXT NOT NULL,
    expire_time_ms INTEGER NOT NULL,
    collaboration_id TEXT NOT NULL,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, expire_time_ms, collaboration_id)
) WITHOUT ROWID;
