-- Platform tables: the tenant registry, API keys and the request log (AIP-155 idempotency).
-- Conventions (see storage/sqlite/backend.py): `scope` leads every primary key; `_expires_at_ms` carries
-- the row TTL; booleans are INTEGER 0/1; WITHOUT ROWID keeps rows clustered by primary key.

CREATE TABLE IF NOT EXISTS tenancy_tenants (
    scope TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    display_name TEXT,
    kind TEXT,
    products TEXT,
    requests_per_s INTEGER,
    burst_requests INTEGER,
    concurrent_calls_max INTEGER,
    state TEXT,
    disabled_reason TEXT,
    create_time_ms INTEGER,
    update_time_ms INTEGER,
    version INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, tenant_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tenancy_api_keys (
    scope TEXT NOT NULL,
    key_id TEXT NOT NULL,
    display_name TEXT,
    secret_sha256 TEXT,
    state TEXT,
    create_time_ms INTEGER,
    revoke_time_ms INTEGER,
    request_id TEXT,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, key_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS request_log (
    scope TEXT NOT NULL,
    request_id TEXT NOT NULL,
    method TEXT,
    body_sha256 TEXT,
    response BLOB,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, request_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tenancy_client_certs (
    scope TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    tenant_id TEXT,
    create_time_ms INTEGER,
    _expires_at_ms INTEGER,
    PRIMARY KEY (scope, cert_sha256)
) WITHOUT ROWID;
