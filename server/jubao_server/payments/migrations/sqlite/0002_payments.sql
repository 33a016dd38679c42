-- Payments ledger tables (server/jubao_server/payments/tables.py holds their Table specs).

CREATE TABLE IF NOT EXISTS payments_shards (
    scope TEXT NOT NULL,
    shard INTEGER NOT NULL,
    row_kind TEXT NOT NULL,
    row_key TEXT NOT NULL,
    record BLOB,
    currency TEXT,
    account_kind TEXT,
    display_name TEXT,
    allow_negative INTEGER,
    debits_frozen INTEGER,
    credits_frozen INTEGER,
    single_payment_limit_minor INTEGER,
    daily_outflow_limit_minor INTEGER,
    ledger_minor INTEGER,
    held_minor INTEGER,
    entry_seq INTEGER,
    outflow_day INTEGER,
    outflow_minor INTEGER,
    create_time_ms INTEGER,
    update_time_ms INTEGER,
    version INTEGER,
    open_request_id TEXT,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, shard, row_kind, row_key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS payments_shards__static (
    scope TEXT NOT NULL,
    shard INTEGER NOT NULL,
    epoch INTEGER,
    last_seq INTEGER,
    materialized_seq INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, shard)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS payments_entries (
    scope TEXT NOT NULL,
    account_id TEXT NOT NULL,
    entry_seq INTEGER NOT NULL,
    transfer_id TEXT,
    leg_index INTEGER,
    entry_kind TEXT,
    amount_minor INTEGER,
    balance_after_minor INTEGER,
    time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, account_id, entry_seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS payments_transfers (
    scope TEXT NOT NULL,
    transfer_id TEXT NOT NULL,
    request_id TEXT,
    body_sha256 TEXT,
    currency TEXT,
    legs TEXT,
    memo TEXT,
    state TEXT,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, transfer_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS payments_requests (
    scope TEXT NOT NULL,
    request_id TEXT NOT NULL,
    operation TEXT,
    body_sha256 TEXT,
    target_id TEXT,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, request_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS payments_tenant_config (
    scope TEXT NOT NULL,
    shard_count INTEGER,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope)
) WITHOUT ROWID;
