"""The ledger's batch path, shared by `BatchCreateTransfers` and bulk uploads: every transfer of a batch
runs through the ledger, at most `batch_transfers_concurrency_max` at once; each gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from jubao_server import limits
from jubao_server.errors import ApiError, HeldElsewhere
from jubao_server.payments.api import Idempotency, LedgerApi, TransferCommand
from jubao_server.payments.model import Transfer

# A transfer, the error of that transfer alone, or the server that holds its payer's shard.
Outcome = Transfer | ApiError | HeldElsewhere


async def create_transfers(
    ledger: LedgerApi, tenant_id: str, items: Sequence[tuple[TransferCommand, Idempotency]]
) -> list[Outcome]:
    """The outcome of each item, in order. The items' request ids must differ (the caller checks)."""
    outcomes: list[Outcome | None] = [None] * len(items)
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, (command, key) in queue:
            try:
                outcomes[index] = await ledger.create_transfer(tenant_id, command, key)
            except (ApiError, HeldElsewhere) as error:
                outcomes[index] = error

    async with asyncio.TaskGroup() as group:
        for _ in range(min(limits.batch_transfers_concurrency_max, len(items))):
            group.create_task(worker())
    return [outcome for outcome in outcomes if outcome is not None]
