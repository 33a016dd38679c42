"""Typed settings of the payments ledger."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jubao_server import limits


class PaymentsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Ledger shards per tenant. Accounts hash into them; changing it needs a data migration, so a
    # tenant's count is recorded on first use and a different setting is refused (see ledger.py).
    shard_count: int = Field(16, gt=0, le=limits.ledger_shards_max)
    # Commands one shard commits in one storage batch.
    group_commit_max: int = Field(128, gt=0, le=limits.ledger_group_commit_max)
    # Commands waiting for one shard before callers get RESOURCE_EXHAUSTED.
    shard_queue_max: int = Field(4096, gt=0, le=limits.ledger_shard_queue_max)
    # How long write-ahead records stay after they are materialized into the journal.
    wal_ttl_s: int = Field(24 * 3600, gt=0, le=limits.row_ttl_s_max)
    # How long a request id is remembered (AIP-155); a transfer id also stays unique after that.
    request_ttl_s: int = Field(7 * 24 * 3600, gt=0, le=limits.row_ttl_s_max)
    # How long after its creation a transfer can be refunded; a leg's refund tally is kept that long.
    refund_window_s: int = Field(180 * 24 * 3600, gt=0, le=limits.row_ttl_s_max)
    # How long a process holds a shard without renewing it; another process takes the shard over only
    # once the lease has run out (so the failover time after a crash), and forwards to it meanwhile.
    shard_lease_ms: int = Field(
        10_000, ge=limits.ledger_shard_lease_ms_min, le=limits.ledger_shard_lease_ms_max
    )
    # How often an owner looks again for credits other processes left in a shard's inbox while they keep
    # coming (it looks about once a second otherwise).
    inbox_poll_ms: int = Field(200, gt=0, le=limits.ledger_inbox_poll_ms_max)
