"""Tables of the tenancy context: the tenant registry (one platform partition) and each tenant's keys."""

from __future__ import annotations

from jubao_server.storage.contract import ColumnType, Table

T = ColumnType

TENANTS = Table(
    name="tenancy_tenants",
    partition_key=(),
    clustering_key=("tenant_id",),
    columns={
        "tenant_id": T.TEXT,
        "display_name": T.TEXT,
        "kind": T.TEXT,
        "products": T.TEXT,
        "requests_per_s": T.BIGINT,
        "burst_requests": T.BIGINT,
        "concurrent_calls_max": T.BIGINT,
        "state": T.TEXT,
        "disabled_reason": T.TEXT,
        "create_time_ms": T.BIGINT,
        "update_time_ms": T.BIGINT,
        "version": T.BIGINT,
    },
)

API_KEYS = Table(
    name="tenancy_api_keys",
    partition_key=(),
    clustering_key=("key_id",),
    columns={
        "key_id": T.TEXT,
        "display_name": T.TEXT,
        "secret_sha256": T.TEXT,
        "state": T.TEXT,
        "create_time_ms": T.BIGINT,
        "revoke_time_ms": T.BIGINT,
        "request_id": T.TEXT,
    },
)

CLIENT_CERTIFICATES = Table(
    name="tenancy_client_certs",
    partition_key=(),
    clustering_key=("cert_sha256",),
    columns={"cert_sha256": T.TEXT, "tenant_id": T.TEXT, "create_time_ms": T.BIGINT},
)
