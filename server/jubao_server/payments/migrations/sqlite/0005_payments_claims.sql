-- The ledger's request claims, bucketed (payments/tables.py CLAIMS), and when a tenant's claims moved
-- there (CLAIMS_MOVED).

CREATE TABLE IF NOT EXISTS payments_claims (
    scope TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    operation TEXT,
    body_sha256 TEXT,
    target_id TEXT,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, bucket, request_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS payments_claims_moved (
    scope TEXT NOT NULL,
    since_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope)
) WITHOUT ROWID;
