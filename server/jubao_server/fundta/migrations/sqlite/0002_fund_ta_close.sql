-- Holder shards are sealed and closed by day-closes (fundta/tables.py HOLDERS "sealed_date", "closed_date").

CREATE TABLE IF NOT EXISTS fundta_holders__static (
    scope TEXT NOT NULL,
    fund_code TEXT NOT NULL,
    shard INTEGER NOT NULL,
    sealed_date TEXT,
    closed_date TEXT,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, fund_code, shard)
) WITHOUT ROWID;
