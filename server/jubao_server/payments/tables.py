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

# The kind of a shard's apply-once markers of the credit messages it applied (`records.CreditMessage`).
CREDIT_MARKERS = "credit"

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
        # The outbox entry owing a debited transfer's credits: its shard and key (`journal.py`).
        "owed_shard": T.BIGINT,
        "owed_entry": T.TEXT,
    },
)

# The ledger's request claims before `payments_claims`: read, never written, while a tenant's claims of
# then may live (`CLAIMS_MOVED`).
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

# The ledger's request claims (`platform.idempotency`, `Ledger._claims`), bucketed: a tenant's claims
# spread over `CLAIM_BUCKETS_PER_SHARD` partitions per shard of the tenant, by the request id's hash, so a
# batch's claims of one bucket are one conditional batch (one Paxos round on Cassandra) rather than one
# each. A bucket holds a 1/(4 x shards) share of the tenant's claims of `request_ttl_s`. The count is part
# of the layout: changing it would look for claims in the wrong partitions.
CLAIM_BUCKETS_PER_SHARD = 4
CLAIMS = Table(
    name="payments_claims",
    partition_key=("bucket",),
    clustering_key=("request_id",),
    columns={
        "bucket": T.BIGINT,
        "request_id": T.TEXT,
        "operation": T.TEXT,
        "body_sha256": T.TEXT,
        "target_id": T.TEXT,
        "create_time_ms": T.BIGINT,
        "attempt": T.BIGINT,
    },
)

# When a tenant's claims moved from `payments_requests` (one partition per request id, as versions before
# `payments_claims` kept them) to `payments_claims`: written by the data migration
# `0001_payments_claim_buckets` for the tenants that had a ledger then, absent for later ones. Until that
# time plus `request_ttl_s`, a claim looks for an earlier claim of its request id there first.
CLAIMS_MOVED = Table(
    name="payments_claims_moved",
    partition_key=(),
    columns={"since_ms": T.BIGINT},
)

TENANT_CONFIG = Table(
    name="payments_tenant_config",
    partition_key=(),
    columns={"shard_count": T.BIGINT, "create_time_ms": T.BIGINT},
)
