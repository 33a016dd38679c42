-- Fund transfer agency tables (server/jubao_server/fundta/tables.py holds their Table specs).

CREATE TABLE IF NOT EXISTS fundta_fund_codes (
    scope TEXT NOT NULL,
    fund_code TEXT NOT NULL,
    manager_id TEXT,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, fund_code)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fundta_funds (
    scope TEXT NOT NULL,
    fund_code TEXT NOT NULL,
    row_kind TEXT NOT NULL,
    row_key TEXT NOT NULL,
    record BLOB,
    version INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, fund_code, row_kind, row_key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fundta_tenant_funds (
    scope TEXT NOT NULL,
    fund_code TEXT NOT NULL,
    manager_id TEXT,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, fund_code)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fundta_investors (
    scope TEXT NOT NULL,
    trading_account_id TEXT NOT NULL,
    record BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, trading_account_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fundta_holders (
    scope TEXT NOT NULL,
    fund_code TEXT NOT NULL,
    shard INTEGER NOT NULL,
    row_kind TEXT NOT NULL,
    row_key TEXT NOT NULL,
    record BLOB,
    version INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, fund_code, shard, row_kind, row_key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fundta_requests (
    scope TEXT NOT NULL,
    request_id TEXT NOT NULL,
    operation TEXT,
    body_sha256 TEXT,
    response BLOB,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, request_id)
) WITHOUT ROWID;
