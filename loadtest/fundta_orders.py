"""`fundta_order_accept_per_s`: purchase orders of a money-market fund accepted by unary RPC
(TradingService.CreateOrder), closed loop, with the clients of `payments_transfer_unary_per_s` (the engine's
worker processes, each with the same calls in flight). The demo fund house (`demo-fund`) opens the run's
fund and grants the load's tenant, which opens the fund's investors; every order is one conditional batch
of its investor's holder shard (the order, its index row, the shard's seal checked), answered at once."""

from __future__ import annotations

import asyncio

from jubao.client import AsyncClient, ClientConfig
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.meta.v1 import meta_pb2

from loadtest import bounds
from loadtest.accounts import AccountNames
from loadtest.engine import ClosedLoop, Engine, Target
from loadtest.harness import Run
from loadtest.payments_bench import PaymentsPlan, measure, only
from loadtest.report import Figure, figure
from loadtest.server_process import demo_key

MINIMUM_PURCHASE_MINOR = 100


def open_fund(target: Target, names: AccountNames) -> None:
    """The run's fund, open, granted to the target's tenant by the demo fund house, and its investors."""

    async def go() -> None:
        async with AsyncClient(ClientConfig(endpoint=target.dial, api_key=target.api_key)) as seller:
            caller = await seller.meta.GetCaller(meta_pb2.GetCallerRequest())
            config = ClientConfig(endpoint=target.dial, api_key=demo_key("demo-fund"))
            async with AsyncClient(config) as manager:
                fund = pb.Fund(
                    fund_code=names.fund_code,
                    display_name="Bench Money Market Fund",
                    kind=pb.FUND_KIND_MONEY_MARKET,
                    currency_code=names.accounts.currency,
                    status=pb.FUND_STATUS_OPEN,
                    minimum_purchase_minor=MINIMUM_PURCHASE_MINOR,
                )
                await manager.funds.CreateFund(pb.CreateFundRequest(fund=fund, request_id=names.fund_code))
                grant = pb.GrantFundRequest(fund_code=names.fund_code, distributor_id=caller.tenant_id)
                await manager.funds.GrantFund(grant)
            limit = asyncio.Semaphore(bounds.setup_concurrency_max)

            async def open_one(index: int) -> None:
                request = pb.OpenInvestorRequest(
                    trading_account_id=names.investor(index),
                    id_type=pb.ID_TYPE_ID_CARD,
                    id_number=f"{names.fund_code}{index}",
                    display_name=f"Investor {index}",
                )
                async with limit:
                    await seller.trading.OpenInvestor(request)

            await asyncio.gather(*(open_one(i) for i in range(bounds.fundta_investors)))

    asyncio.run(go())


def order_accept_figures(engine: Engine, run: Run, plan: PaymentsPlan, backend: str) -> list[Figure]:
    """`fundta_order_accept_per_s` and the server's CPU per order (when the harness started it)."""
    open_fund(run.target, run.names)
    purchases = only(run.scenario, "fundta_purchase", amount_min_minor=MINIMUM_PURCHASE_MINOR)
    closed = ClosedLoop(plan.concurrency, plan.warmup_s + plan.seconds)
    accepted = measure(engine, run, purchases, closed, plan.warmup_s)
    notes = (
        f"CreateOrder (purchase) of one money-market fund by {bounds.fundta_investors} investors at random, "
        f"by unary RPC, closed loop: {engine.workers} client processes x {plan.concurrency} in flight, the "
        "clients of payments_transfer_unary_per_s; read against grpc_empty_rpc_per_s (Ping through the same "
        f"pipeline); {accepted.errors_note()}"
    )
    return [
        figure(
            "fundta_order_accept_per_s", round(accepted.window.achieved_per_s), "orders/s", backend, notes
        ),
        *accepted.cpu_figure("fundta_order_accept_server_cpu_us_per_call", backend),
    ]
