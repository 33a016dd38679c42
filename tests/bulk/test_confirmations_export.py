"""A closed trade date's confirmations download over Arrow Flight (`ExportConfirmations`), each caller
seeing what it sees by RPC: a distributor its own investors' rows, the manager every distributor's."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
from jubao.bulk import schemas
from jubao.errors import JubaoError
from jubao.reasons import Code
from jubao_server.fundta.agency import Agency, OrderRequest
from jubao_server.fundta.dayclose import DayCloses
from jubao_server.fundta.model import Calendar, Fund, FundKind, FundStatus, OrderKind, PurchaseFeeTier
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.platform.idempotency import Claim
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.store import TenantStore

from tests.bulk.support import FlightProcess
from tests.fundta.support import SetClock, shanghai_ms

FRIDAY = datetime.date(2026, 12, 4)


async def _closed_fund(backend: StorageBackend, clock: SetClock) -> str:
    """A bond fund of demo-fund sold by itself and demo-platform, with Friday's orders confirmed."""
    tenants = TenantStore(backend, clock)
    manager, platform = await tenants.get_tenant("demo-fund"), await tenants.get_tenant("demo-platform")
    assert manager is not None and platform is not None
    agency = Agency(backend, clock, b"x" * 32, 4)
    code = f"E{uuid.uuid4().hex[:10].upper()}"
    fund = Fund(
        code, "", "Export", FundKind.BOND, "CNY", FundStatus.OPEN, 100, 0,
        (PurchaseFeeTier(0, "0.015", 0),), (), Calendar("Asia/Shanghai", "15:00", ()), 4, 0, 0, 0, 0,
    )  # fmt: skip
    await agency.create_fund(manager, fund, _claim(clock))
    await agency.grant_fund(manager, code, "demo-platform", _claim(clock))
    for seller, count in ((manager, 2), (platform, 3)):
        for i in range(count):
            await agency.open_investor(seller, f"x-{i}", f"id_card:{i}", "", _claim(clock))
            request = OrderRequest(code, f"x-{i}", OrderKind.PURCHASE, 1_000_000 + i, 0, uuid.uuid4().hex)
            await agency.create_order(seller, request, _claim(clock))
    await agency.publish_price(manager, code, FRIDAY, Decimal("1.0234"), 0)
    clock.set_local("2026-12-04 16:00:00")
    ledger = Ledger(backend, PaymentsSettings(shard_count=4), clock=clock)
    await ledger.start()
    try:
        closes = DayCloses(agency, backend, clock, ledger)
        await closes.start(manager, code, FRIDAY)
        await closes.stop()
        await closes.run("demo-fund", code, FRIDAY.isoformat())
    finally:
        await ledger.stop()
    return code


async def test_confirmations_download_as_arrow_for_who_may_see_them(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    clock = SetClock(shanghai_ms("2026-12-04 10:00:00"))
    code = await _closed_fund(store[0], clock)
    with flight_process.client(keys["demo-platform"]) as client:
        mine = client.export_confirmations(code, "2026-12-04").read_all()
        with pytest.raises(JubaoError) as other:
            client.export_confirmations(code, "2026-12-04", "demo-fund").read_all()
        with pytest.raises(JubaoError) as open_date:
            client.export_confirmations(code, "2026-12-07").read_all()
    with flight_process.client(keys["demo-fund"]) as client:
        everything = client.export_confirmations(code, "2026-12-04").read_all()
        one = client.export_confirmations(code, "2026-12-04", "demo-platform").read_all()
    with flight_process.client(keys["demo-bank"]) as client, pytest.raises(JubaoError) as no_product:
        client.export_confirmations(code, "2026-12-04").read_all()

    assert mine.schema.equals(schemas.CONFIRMATIONS)
    assert set(mine.column("distributor_id").to_pylist()) == {"demo-platform"} and mine.num_rows == 3
    assert everything.num_rows == 5 and one.num_rows == 3
    assert sorted(one.column("order_id").to_pylist()) == sorted(mine.column("order_id").to_pylist())
    # 10,000.00 yuan at 1.5 %: fee 147.78, 9,852.22 net buys 9,626.94 shares at 1.0234 (0.9604 fen kept).
    first = mine.sort_by("applied_amount_minor").slice(0, 1).to_pylist()[0]
    assert (first["amount_minor"], first["fee_minor"], first["shares"], first["nav"]) == (
        1_000_000,
        14_778,
        Decimal("9626.94"),
        "1.0234",
    )
    assert (first["status"], first["return_code"], first["remainder_minor"]) == (
        "confirmed",
        "0000",
        "0.9604",
    )
    assert (other.value.code, other.value.reason) == (Code.PERMISSION_DENIED, "NOT_FUND_MANAGER")
    assert (open_date.value.code, open_date.value.reason) == (Code.NOT_FOUND, "DAY_CLOSE_NOT_FOUND")
    assert (no_product.value.code, no_product.value.reason) == (Code.PERMISSION_DENIED, "PRODUCT_NOT_ENABLED")


def _claim(clock: SetClock) -> Claim:
    return Claim(fresh=True, claimed_ms=clock.wall_ms())
