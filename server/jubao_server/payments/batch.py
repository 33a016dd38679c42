"""The ledger's batch path, shared by `BatchCreateTransfers` and bulk uploads: the batch is the unit of
work (`LedgerApi.create_transfers`: its request ids claimed in one storage call, one command per payer shard);
each item gets its own outcome."""

from __future__ import annotations

from collections.abc import Sequence

from jubao_server.errors import ApiError, HeldElsewhere
from jubao_server.payments.api import Idempotency, LedgerApi, TransferCommand
from jubao_server.payments.model import Transfer

# A transfer, the error of that transfer alone, or the server that holds its payer's shard.
Outcome = Transfer | ApiError | HeldElsewhere


async def create_transfers(
    ledger: LedgerApi, tenant_id: str, items: Sequence[tuple[TransferCommand, Idempotency]]
) -> list[Outcome]:
    """The outcome of each item, in order. The items' request ids must differ (the caller checks)."""
    return await ledger.create_transfers(tenant_id, items)
