-- The data migrations applied (platform/data_migrations.py DATA_MIGRATIONS): by set and version, once each
-- ran to its end.

CREATE TABLE IF NOT EXISTS data_migrations (
    scope TEXT NOT NULL,
    set_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT,
    rows_written INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, set_name, version)
) WITHOUT ROWID;
