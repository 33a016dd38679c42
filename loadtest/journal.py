"""A synthetic journal written straight to storage in the ledger's layout (accounts in their shard rows,
entries in `payments_entries`), for measuring and testing the statement export at sizes the ledger would
take many minutes to reach transfer by transfer. The export reads storage only, so what it measures is
the same; nothing else may use these accounts (their journals have no counterpart: they do not reconcile).
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa
from jubao.bulk import schemas
from jubao_server import limits
from jubao_server.payments.machine import ACCOUNT, account_values
from jubao_server.payments.model import Account, AccountKind, AccountPolicy
from jubao_server.payments.state import AccountState
from jubao_server.payments.statements import stored_shard_count
from jubao_server.payments.tables import ENTRIES, SHARDS, TENANT_CONFIG
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import Batch, Put, RowAbsent, StorageBackend, write_all

SHARD_COUNT: Final = 16
START_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS: Final = 10


def expected_entries(account_ids: list[str], per_account: int) -> pa.Table:
    """The journal `write_journal` writes, as the export must return it (schemas.ENTRIES)."""
    rows = len(account_ids) * per_account
    seqs = [seq for _ in account_ids for seq in range(1, per_account + 1)]
    return pa.table(
        {
            "account_id": [a for a in account_ids for _ in range(per_account)],
            "entry_seq": pa.array(seqs, pa.int64()),
            "transfer_id": [f"tr_{a}_{seq}" for a in account_ids for seq in range(1, per_account + 1)],
            "leg_index": pa.array([0] * rows, pa.int32()),
            "kind": ["credit"] * rows,
            "amount_minor": pa.array([_amount(seq) for seq in seqs], pa.int64()),
            "currency": ["CNY"] * rows,
            "balance_after_minor": pa.array([_balance(seq) for seq in seqs], pa.int64()),
            "time": pa.array([START_MS + seq * STEP_MS for seq in seqs], pa.timestamp("ms", tz="UTC")),
        },
        schema=schemas.ENTRIES,
    )


def _amount(seq: int) -> int:
    return seq


def _balance(seq: int) -> int:
    """The running balance after entry `seq`: the sum of the amounts 1..seq."""
    return seq * (seq + 1) // 2


async def write_journal(
    backend: StorageBackend, tenant_id: str, account_ids: list[str], per_account: int
) -> None:
    """Accounts with `per_account` credit entries each, as the ledger would have materialized them."""
    config = Put((), {"shard_count": SHARD_COUNT, "create_time_ms": START_MS})
    await backend.write(Batch(TENANT_CONFIG.partition(tenant_id), (config,), conditions=(RowAbsent(()),)))
    shard_count = await stored_shard_count(backend, tenant_id)
    for account_id in account_ids:
        account = Account(
            account_id, "CNY", AccountKind.CUSTOMER, AccountPolicy(), account_id, START_MS, START_MS, 1
        )
        state = AccountState(account, _balance(per_account), 0, per_account)
        shard = shard_of(account_id, shard_count)
        await backend.write(
            Batch(
                SHARDS.partition(tenant_id, shard), (Put((ACCOUNT, account_id), account_values(state, None)),)
            )
        )
        partition = ENTRIES.partition(tenant_id, account_id)
        step = limits.batch_rows_max
        batches = [
            Batch(
                partition,
                tuple(_entry(account_id, s) for s in range(first, min(first + step, per_account + 1))),
            )
            for first in range(1, per_account + 1, step)
        ]
        await write_all(backend, batches)


def _entry(account_id: str, seq: int) -> Put:
    return Put(
        (seq,),
        {
            "transfer_id": f"tr_{account_id}_{seq}",
            "leg_index": 0,
            "entry_kind": "credit",
            "amount_minor": _amount(seq),
            "balance_after_minor": _balance(seq),
            "time_ms": START_MS + seq * STEP_MS,
        },
    )
