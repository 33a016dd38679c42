-- Conformance suite tables (tests/storage/tables.py), following storage/sqlite conventions.

CREATE TABLE IF NOT EXISTS conf_ledger (
    scope TEXT NOT NULL,
    account TEXT NOT NULL,
    seq INTEGER NOT NULL,
    amount INTEGER,
    note TEXT,
    flag INTEGER,
    payload BLOB,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, account, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS conf_ledger__static (
    scope TEXT NOT NULL,
    account TEXT NOT NULL,
    balance INTEGER,
    epoch INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, account)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS conf_kv (
    scope TEXT NOT NULL,
    k TEXT NOT NULL,
    v TEXT,
    n INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, k)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS conf_events (
    scope TEXT NOT NULL,
    stream TEXT NOT NULL,
    ts INTEGER NOT NULL,
    id TEXT NOT NULL,
    body TEXT,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, stream, ts, id)
) WITHOUT ROWID;
