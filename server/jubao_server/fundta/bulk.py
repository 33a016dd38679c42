"""The fund TA's bulk dataset: `ExportConfirmations`, a closed trade date's confirmations as Arrow,
read straight from the holder shards in the Arrow Flight process (no product runs there: it reads what
the day-close stored). The caller sees what it would by RPC: a distributor its own investors' rows, the
fund's manager every distributor's (or one's)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Final

import pyarrow as pa
from google.protobuf.message import Message
from jubao.bulk import schemas
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.bulk.datasets import parse
from jubao_server.clock import Clock
from jubao_server.errors import not_found
from jubao_server.fundta import convert
from jubao_server.fundta.agency import order_kind, seen_distributor, visible_fund
from jubao_server.fundta.decimals import SHARE_PLACES
from jubao_server.fundta.model import Order, OrderKind, decode
from jubao_server.fundta.tables import HOLDERS
from jubao_server.storage.contract import Bound, RowQuery, StorageBackend
from jubao_server.tenancy.model import Product

EXPORT_CONFIRMATIONS: Final = pb.ExportConfirmations.DESCRIPTOR.full_name


@dataclasses.dataclass(frozen=True)
class ConfirmationsExport:
    name: str = EXPORT_CONFIRMATIONS
    product: Product = Product.FUND_TA
    schema: pa.Schema = schemas.CONFIRMATIONS

    def check(self, command: bytes) -> Message:
        request: pb.ExportConfirmations = parse(pb.ExportConfirmations, command, "ticket")  # type: ignore[assignment]
        convert.confirmations_query(request)
        return request

    async def read(
        self, backend: StorageBackend, clock: Clock, tenant_id: str, command: Message
    ) -> AsyncIterator[pa.RecordBatch]:
        request: pb.ExportConfirmations = command  # type: ignore[assignment]
        fund, managed = await visible_fund(backend, tenant_id, request.fund_code)
        wanted = seen_distributor(fund, tenant_id, managed, request.distributor_id)
        if not fund.last_closed_date or request.trade_date > fund.last_closed_date:
            raise not_found(
                Reason.DAY_CLOSE_NOT_FOUND,
                f"{request.trade_date} of {fund.fund_code} is not closed",
                trade_date=request.trade_date,
            )
        kind = order_kind(request.trade_date)
        columns = _Columns()
        for shard in range(fund.holder_shard_count):
            query = RowQuery(
                HOLDERS.partition(fund.manager_id, fund.fund_code, shard),
                Bound((kind,), True),
                Bound((kind,), True),
                limit=limits.storage_page_rows_max,
            )
            for _ in range(limits.fundta_shard_pages_max):
                page = await backend.read_page(query)
                for row in page.rows:
                    order = decode(row["record"], Order)
                    if order.confirmation is not None and wanted in (None, order.distributor_id):
                        columns.add(order)
                if columns.rows >= limits.bulk_export_batch_rows_max:
                    yield columns.flush()
                if page.next_after is None:
                    break
                query = query.after(page.next_after)
        if columns.rows:
            yield columns.flush()


class _Columns:
    """Confirmations gathered column by column, flushed as record batches of `CONFIRMATIONS`."""

    def __init__(self) -> None:
        self._columns: dict[str, list[object]] = {name: [] for name in schemas.CONFIRMATIONS.names}
        self.rows = 0

    def add(self, order: Order) -> None:
        done = order.confirmation
        if done is None:
            return
        values = {
            "order_id": order.order_id,
            "fund_code": order.fund_code,
            "trade_date": order.trade_date,
            "distributor_id": order.distributor_id,
            "trading_account_id": order.trading_account_id,
            "fund_account_id": order.fund_account_id,
            "kind": order.kind.value,
            "status": order.status.value,
            "return_code": done.return_code,
            "reason": done.reason,
            "applied_amount_minor": order.amount_minor,
            "applied_shares": _shares(order.shares if order.kind in _REDEMPTIONS else 0),
            "amount_minor": done.amount_minor,
            "shares": _shares(done.shares),
            "fee_minor": done.fee_minor,
            "nav": done.nav,
            "remainder_minor": done.remainder_minor,
            "currency": order.currency,
        }
        for name, value in values.items():
            self._columns[name].append(value)
        self.rows += 1

    def flush(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_arrays(
            [pa.array(self._columns[f.name], f.type) for f in schemas.CONFIRMATIONS],
            schema=schemas.CONFIRMATIONS,
        )
        self._columns = {name: [] for name in schemas.CONFIRMATIONS.names}
        self.rows = 0
        return batch


_REDEMPTIONS: Final = (OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION)


def _shares(hundredths: int) -> Decimal:
    return Decimal(hundredths).scaleb(-SHARE_PLACES)
