"""Payments figures: unary transfers among many accounts, transfers into one hot merchant account,
latency percentiles at half of the unary peak rate (open loop), and transfers committed through batches."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Final

from jubao.client import AsyncClient, ClientConfig
from jubao.payments.v1 import payments_pb2 as pb

from loadtest.batch_bench import BatchLoad, BatchResult, batch_callers, batch_size, measure_batches
from loadtest.report import Figure, figure
from loadtest.rpc_bench import RpcLoad, RpcResult, Workload, measure

CURRENCY: Final = "CNY"
FUNDING_MINOR: Final = 10**12
setup_concurrency: Final = 64


@dataclasses.dataclass(frozen=True)
class PaymentsPlan:
    accounts: int
    seconds: float
    warmup_s: float
    concurrency: int
    workers: int


async def open_accounts(endpoint: str, api_key: str, prefix: str, count: int) -> None:
    """Open `count` funded customer accounts, a funding settlement account and a hot merchant."""
    async with AsyncClient(ClientConfig(endpoint=endpoint, api_key=api_key)) as client:
        await _open(client, f"{prefix}bank", pb.ACCOUNT_KIND_SETTLEMENT, allow_negative=True)
        await _open(client, f"{prefix}merchant", pb.ACCOUNT_KIND_MERCHANT)
        limit = asyncio.Semaphore(setup_concurrency)

        async def funded(index: int) -> None:
            async with limit:
                await _open(client, f"{prefix}{index}", pb.ACCOUNT_KIND_CUSTOMER)
                leg = pb.Leg(
                    debit_account_id=f"{prefix}bank",
                    credit_account_id=f"{prefix}{index}",
                    amount_minor=FUNDING_MINOR,
                )
                await client.payments.CreateTransfer(
                    pb.CreateTransferRequest(currency_code=CURRENCY, legs=[leg], memo="funding")
                )

        await asyncio.gather(*(funded(i) for i in range(count)))


async def _open(client: AsyncClient, account_id: str, kind: int, allow_negative: bool = False) -> None:
    account = pb.Account(
        account_id=account_id,
        currency_code=CURRENCY,
        kind=kind,  # type: ignore[arg-type]
        policy=pb.AccountPolicy(allow_negative=allow_negative),
    )
    await client.payments.OpenAccount(pb.OpenAccountRequest(account=account))


def payments_figures(plan: PaymentsPlan, endpoint: str, api_key: str, backend: str) -> list[Figure]:
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    asyncio.run(open_accounts(endpoint, api_key, prefix, plan.accounts))
    spread = Workload("transfer", prefix, plan.accounts)
    hot = Workload("transfer", prefix, plan.accounts, hot_account=f"{prefix}merchant")
    base = RpcLoad(endpoint, api_key, plan.seconds, plan.warmup_s, plan.concurrency, plan.workers, spread)
    unary = measure(base)
    hot_result = measure(dataclasses.replace(base, workload=hot))
    half_rate = unary.calls_per_s / 2
    paced = measure(dataclasses.replace(base, rate_per_s=half_rate))
    batches = measure_batches(
        BatchLoad(endpoint, api_key, plan.seconds, plan.warmup_s, prefix, plan.accounts, CURRENCY)
    )
    paced_note = f"open loop at {half_rate:.0f}/s (half the unary peak), latency from the scheduled send"
    where = f"{plan.accounts:,} accounts, {plan.workers} client processes"
    return [
        figure(
            "payments_transfer_unary_per_s",
            round(unary.calls_per_s),
            "transfers/s",
            backend,
            f"{where} x {plan.concurrency} in flight, random payer and payee; {_errors(unary)}",
        ),
        figure(
            "payments_transfer_hot_per_s",
            round(hot_result.calls_per_s),
            "transfers/s",
            backend,
            f"{where}, every payee one merchant account; {_errors(hot_result)}",
        ),
        figure(
            "payments_transfer_p50_ms",
            round(paced.percentile_ms(50), 2),
            "ms",
            backend,
            f"{paced_note}; {_errors(paced)}",
        ),
        figure(
            "payments_transfer_p99_ms",
            round(paced.percentile_ms(99), 2),
            "ms",
            backend,
            paced_note,
        ),
        figure(
            "payments_transfer_batch_per_s",
            round(batches.transfers_per_s),
            "transfers/s",
            backend,
            f"BatchCreateTransfers of {batch_size:,}, {batch_callers} callers in one client process, "
            f"{plan.accounts:,} accounts, random payer and payee; {_batch_errors(batches)}",
        ),
    ]


def _errors(result: RpcResult) -> str:
    return f"{result.calls} ok, {result.errors} errors in {result.elapsed_s:.0f} s"


def _batch_errors(result: BatchResult) -> str:
    return f"{result.transfers} ok, {result.errors} errors in {result.elapsed_s:.0f} s"
