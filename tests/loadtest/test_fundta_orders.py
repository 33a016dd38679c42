"""The fund TA's order-acceptance bench runs (briefly) against a real server and reports its figure: the
run's fund is opened, granted and sold, and the orders it counts are there, accepted."""

from __future__ import annotations

import asyncio
import dataclasses

from jubao.client import AsyncClient, ClientConfig
from jubao.fundta.v1 import fundta_pb2 as pb

from loadtest.accounts import AccountNames
from loadtest.engine import Engine, Target
from loadtest.fundta_orders import order_accept_figures
from loadtest.harness import Run
from loadtest.payments_bench import PaymentsPlan
from loadtest.scenario import SCENARIOS, Accounts, load_scenario
from loadtest.server_process import provision_bench_key
from tests.platform.harness import Running


async def test_the_order_accept_bench_places_purchases_of_its_fund(running: Running) -> None:
    key = await asyncio.to_thread(provision_bench_key, running.address)
    target = Target(running.address, key)
    scenario = dataclasses.replace(
        load_scenario(SCENARIOS / "double11_short.toml"), accounts=Accounts(customers=2, merchants=1)
    )
    run = Run(target, scenario, AccountNames("ltbench01-", scenario.accounts), "bench01")
    with Engine(1) as engine:
        [found] = await asyncio.to_thread(
            order_accept_figures, engine, run, PaymentsPlan(2.0, 0.5, 4, 1.0), "sqlite"
        )
    assert (found["name"], found["unit"], found["backend"]) == (
        "fundta_order_accept_per_s",
        "orders/s",
        "sqlite",
    )
    assert float(found["value"]) > 0 and ", 0 errors in " in str(found["notes"])

    async with AsyncClient(ClientConfig(endpoint=running.address, api_key=key)) as client:
        code = run.names.fund_code
        fund = (await client.funds.GetFund(pb.GetFundRequest(fund_code=code))).fund
        request = pb.ListOrdersRequest(fund_code=code, trade_date=fund.next_close_date, page_size=500)
        orders = (await client.trading.ListOrders(request)).orders
    assert orders and all(
        (o.kind, o.status) == (pb.ORDER_KIND_PURCHASE, pb.ORDER_STATUS_ACCEPTED) for o in orders
    )
