-- Co-creation's models (server/jubao_server/cocreation/tables.py holds the Table spec).

CREATE TABLE IF NOT EXISTS cocreation_models (
    scope TEXT NOT NULL,
    collaboration_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    record BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, collaboration_id, model_id)
) WITHOUT ROWID;
