"""Tables of the payments ledger (see ARCHITECTURE.md, "Payments ledger").

`payments_shards` holds one partition per (tenant, shard): the static fencing epoch and sequence, the
current state of every account of the shard (kind "account"), write-ahead records not yet expired
(kind "wal"), credits owed to other shards (kind "outbox"), credits received (kind "credit"), credits
other processes left for the owner to apply (kind "inbox"), and the request ids of applied changes that
move no money (kind "request": account updates, disputes; kept `request_ttl_s`, read one at a time by a
retry, never loaded), open holds and escrows (kinds "hold", "escrow"; loaded), closed or refused ones
(kinds "hold_closed", "escrow_closed"; kept `request_ttl_s`, read when needed) and refund tallies (kind
"refunded"; read when needed). The owner's lease is static too: `owner`
(the process holding the shard) and `lease_until_ms`.
A shard's whole change is one conditional batch on this partition. The other tables are materialized
from the write-ahead records: idempotent, and replayed after a crash.
"""

from __future__ import annotations

from jubao_server.storage.contract import ColumnType, Table

T = ColumnType

ACCOUNT_COLUMNS = {
    "currency": T.TEXT,
    "account_kind": T.TEXT,
    "display_name": T.TEXT,
    "allow_negative": T.BOOLEAN,
    "debits_frozen": T.BOOLEAN,
    "credits_frozen": T.BOOLEAN,
    "single_payment_limit_minor": T.BIGINT,
    "daily_outflow_limit_minor": T.BIGINT,
    "ledger_minor": T.BIGINT,
    "held_minor": T.BIGINT,
    "entry_seq": T.BIGINT,
    "outflow_day": T.BIGINT,
    "outflow_minor": T.BIGINT,
    "create_time_ms": T.BIGINT,
    "update_time_ms": T.BIGINT,
    "version": T.BIGINT,
    "open_request_id": T.TEXT,
}

SHARDS = Table(
    name="payments_shards",
    partition_key=("shard",),
    clustering_key=("row_kind", "row_key"),
    columns={
        "shard": T.BIGINT,
        "row_kind": T.TEXT,
        "row_key": T.TEXT,
        "epoch": T.BIGINT,
        "last_seq": T.BIGINT,
        "materialized_seq": T.BIGINT,
        "owner": T.TEXT,
        "lease_until_ms": T.BIGINT,
        "record": T.BLOB,
        **ACCOUNT_COLUMNS,
    },
    static_columns=frozenset({"epoch", "last_seq", "materialized_seq", "owner", "lease_until_ms"}),
)

ENTRIES = Table(
    name="payments_entries",
    partition_key=("account_id",),
    clustering_key=("entry_seq",),
    columns={
        "account_id": T.TEXT,
        "entry_seq": T.BIGINT,
        "transfer_id": T.TEXT,
        "leg_index": T.BIGINT,
        "entry_kind": T.TEXT,
        "amount_minor": T.BIGINT,
        "balance_after_minor": T.BIGINT,
        "time_ms": T.BIGINT,
    },
)

TRANSFERS = Table(
    name="payments_transfers",
    partition_key=("transfer_id",),
    columns={
        "transfer_id": T.TEXT,
        "request_id": T.TEXT,
        "body_sha256": T.TEXT,
        "currency": T.TEXT,
        "legs": T.TEXT,
        "memo": T.TEXT,
        "state": T.TEXT,
        "create_time_ms": T.BIGINT,
        "failure": T.TEXT,
    },
)

REQUESTS = Table(
    name="payments_requests",
    partition_key=("request_id",),
    columns={
        "request_id": T.TEXT,
        "operation": T.TEXT,
        "body_sha256": T.TEXT,
        "target_id": T.TEXT,
        "create_time_ms": T.BIGINT,
    },
)

TENANT_CONFIG = Table(
    name="payments_tenant_config",
    partition_key=(),
    columns={"shard_count": T.BIGINT, "create_time_ms": T.BIGINT},
)
