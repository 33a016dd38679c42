"""The fund TA's data migrations (`platform/data_migrations.py`), in order."""

from __future__ import annotations

from typing import Final

from jubao_server import limits
from jubao_server.fundta.agency import FUND, account_key, account_kind, scan
from jubao_server.fundta.model import Fund, Order, decode
from jubao_server.fundta.tables import FUNDS, HOLDERS, TENANT_FUNDS
from jubao_server.invariants import InvariantViolation
from jubao_server.platform.data_migrations import DataMigration
from jubao_server.storage.contract import (
    PLATFORM_SCOPE,
    Batch,
    Bound,
    PartitionRef,
    Put,
    RowQuery,
    StorageBackend,
    read_pages,
)
from jubao_server.tenancy.tables import TENANTS

# The row kinds of a holder shard's orders are "order:<trade date>": ":" sorts just before ";".
_ORDERS_FROM: Final = Bound(("order:",), inclusive=True)
_ORDERS_TO: Final = Bound(("order;",), inclusive=False)


async def index_orders(backend: StorageBackend) -> int:
    """The order index (`agency.account_kind`, what a statement reads) of the orders placed before orders
    wrote it: every fund of every manager, holder shard by holder shard. The index rows it writes; those
    already there are written again with the same value."""
    written = 0
    tenants = RowQuery(TENANTS.partition(PLATFORM_SCOPE), limit=limits.storage_page_rows_max)
    async for tenant in scan(backend, tenants, "the tenants"):
        manager_id = tenant.as_text("tenant_id")
        funds = RowQuery(TENANT_FUNDS.partition(manager_id), limit=limits.storage_page_rows_max)
        async for row in scan(backend, funds, f"the funds of {manager_id}"):
            if row.as_text("manager_id") != manager_id:
                continue  # a fund it was granted: its manager's turn indexes it
            fund_row = await backend.read_row(FUNDS.partition(manager_id, row.as_text("fund_code")), FUND)
            if fund_row is None:
                continue  # the fund's registration stopped before its row was written
            fund = decode(fund_row["record"], Fund)
            for shard in range(fund.holder_shard_count):
                written += await _index_shard(backend, HOLDERS.partition(manager_id, fund.fund_code, shard))
    return written


async def _index_shard(backend: StorageBackend, partition: PartitionRef) -> int:
    """One batch of index rows per page of the shard's orders. The rests of redemptions that large
    redemption days deferred are not indexed, as the day-close does not index them: a statement reaches
    them through the order they continue."""
    written = 0
    query = RowQuery(partition, _ORDERS_FROM, _ORDERS_TO, limit=limits.fundta_index_batch_rows_max)
    pages_max = limits.fundta_shard_pages_max
    too_long = f"a holder shard of more than {pages_max} pages"
    async for page in read_pages(backend, query, pages_max, lambda: InvariantViolation(too_long)):
        orders = [decode(row["record"], Order) for row in page.rows]
        puts = tuple(
            Put((account_kind(order.fund_account_id), account_key(order)), {"version": 1})
            for order in orders
            if not order.deferred_from_order_id
        )
        if puts:
            await backend.write(Batch(partition, puts))
            written += len(puts)
    return written


DATA_MIGRATIONS: Final = (DataMigration("0001_fund_ta_order_index", index_orders),)
