"""The accounts of a run, by name, and their setup: a settlement account that funds the customers, the
merchants (a few of them hot), an escrow account and a fee account, all under one prefix per run."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib

from jubao.client import AsyncClient
from jubao.payments.v1 import payments_pb2 as pb

from loadtest import bounds
from loadtest.outcomes import UNKNOWN_OUTCOMES, status_code, until_known
from loadtest.scenario import Accounts
from loadtest.tally import Leg, Movement, Tally


@dataclasses.dataclass(frozen=True)
class AccountNames:
    prefix: str
    accounts: Accounts

    @property
    def bank(self) -> str:
        return f"{self.prefix}bank"

    @property
    def escrow(self) -> str:
        return f"{self.prefix}escrow"

    @property
    def fees(self) -> str:
        return f"{self.prefix}fees"

    def customer(self, index: int) -> str:
        return f"{self.prefix}c{index}"

    def merchant(self, index: int) -> str:
        return f"{self.prefix}m{index}"

    def hot_merchant(self, index: int) -> str:
        return f"{self.prefix}h{index}"

    def customers(self) -> list[str]:
        return [self.customer(index) for index in range(self.accounts.customers)]

    def merchants(self) -> list[str]:
        regular = [self.merchant(index) for index in range(self.accounts.merchants)]
        return regular + [self.hot_merchant(index) for index in range(self.accounts.hot_merchants)]

    @property
    def fund_code(self) -> str:
        """The run's money-market fund (`fundta_order_accept_per_s`): 4 to 12 of [0-9A-Z]."""
        return "L" + hashlib.sha256(self.prefix.encode()).hexdigest()[:10].upper()

    def investor(self, index: int) -> str:
        """A trading account of the run's fund investors."""
        return f"{self.prefix}i{index}"

    def every(self) -> tuple[str, ...]:
        return (self.bank, self.escrow, self.fees, *self.customers(), *self.merchants())


async def open_accounts(client: AsyncClient, names: AccountNames) -> Tally:
    """Open every account of the run and fund each customer from the settlement account (in batches);
    the funding transfers start the run's tally."""
    kinds = {names.bank: pb.ACCOUNT_KIND_SETTLEMENT, names.escrow: pb.ACCOUNT_KIND_ESCROW}
    kinds[names.fees] = pb.ACCOUNT_KIND_FEES
    kinds.update(dict.fromkeys(names.merchants(), pb.ACCOUNT_KIND_MERCHANT))
    kinds.update(dict.fromkeys(names.customers(), pb.ACCOUNT_KIND_CUSTOMER))
    limit = asyncio.Semaphore(bounds.setup_concurrency_max)

    async def open_one(account_id: str, kind: pb.AccountKind.ValueType) -> None:
        account = pb.Account(
            account_id=account_id,
            currency_code=names.accounts.currency,
            kind=kind,
            policy=pb.AccountPolicy(allow_negative=account_id == names.bank),
        )
        request = pb.OpenAccountRequest(request_id=f"{names.prefix}open-{account_id}", account=account)
        async with limit:
            await until_known(lambda: client.payments.OpenAccount(request))

    await asyncio.gather(*(open_one(account_id, kind) for account_id, kind in kinds.items()))
    movements = await _fund(client, names)
    return Tally(accounts=names.every(), movements=movements)


def as_pb(leg: Leg) -> pb.Leg:
    return pb.Leg(
        debit_account_id=leg.debit_account_id,
        credit_account_id=leg.credit_account_id,
        amount_minor=leg.amount_minor,
    )


async def _fund(client: AsyncClient, names: AccountNames) -> tuple[Movement, ...]:
    amount = names.accounts.funding_minor
    legs = [Leg(names.bank, customer, amount) for customer in names.customers()]
    movements: list[Movement] = []
    for start in range(0, len(legs), bounds.batch_size_max):
        chunk = legs[start : start + bounds.batch_size_max]
        requests = [
            pb.CreateTransferRequest(
                request_id=f"{names.prefix}fund-{leg.credit_account_id}",
                currency_code=names.accounts.currency,
                legs=[as_pb(leg)],
                memo="funding",
            )
            for leg in chunk
        ]
        movements += await _fund_batch(client, requests, chunk)
    return tuple(movements)


async def _send_batch(
    client: AsyncClient, batch: pb.BatchCreateTransfersRequest
) -> pb.BatchCreateTransfersResponse:
    return await client.payments.BatchCreateTransfers(batch, timeout=bounds.deadline_max_ms / 1000)


async def _fund_batch(
    client: AsyncClient, requests: list[pb.CreateTransferRequest], legs: list[Leg]
) -> list[Movement]:
    """One batch of funding transfers; the items whose outcome is unknown are sent again (their request
    ids make that a retry) until every one is known."""
    movements: list[Movement] = []
    pending = list(zip(requests, legs, strict=True))
    for _ in range(bounds.resolve_attempts_max):
        batch = pb.BatchCreateTransfersRequest(requests=[request for request, _ in pending])
        response = await until_known(functools.partial(_send_batch, client, batch))
        unknown = []
        for (request, leg), result in zip(pending, response.results, strict=True):
            if result.WhichOneof("result") == "transfer":
                movements.append(Movement(result.transfer.transfer_id, (leg,), request.request_id))
            elif status_code(result.error.code) in UNKNOWN_OUTCOMES:
                unknown.append((request, leg))
            else:
                raise RuntimeError(f"funding {leg.credit_account_id} failed: {result.error.message}")
        if not unknown:
            return movements
        pending = unknown
    raise RuntimeError(f"funding {len(pending)} customers did not resolve")
