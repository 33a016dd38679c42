"""Settlement of a day-close through the payments ledger: per (distributor, fund), what the confirmed
orders came to is posted as transfers in the fund manager's ledger, between the distributor's settlement
account, the fund's custody account and its fee account (`ta.<fund>.<distributor>`, `ta.<fund>.custody`,
`ta.<fund>.fees`, opened on first use; each may go negative: they mirror money held outside the ledger).

The distributor pays custody the purchases net of their fees and pays their fees to the fee account;
custody pays the distributor the redemptions after fees and pays their fees to the fee account; the two
flows between the distributor and custody are netted. Each transfer's request id is derived from the
fund, the trade date, the distributor and the payer, so a day-close run again posts nothing twice: the
ledger answers the retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from jubao_server.fundta.model import DistributorTotals, Fund
from jubao_server.payments.api import Idempotency, LedgerApi, TransferCommand
from jubao_server.payments.model import AccountKind, AccountPolicy, Leg, OpenAccountCommand, Transfer

SETTLEMENT_POLICY = AccountPolicy(allow_negative=True)


def custody_account(fund: Fund) -> str:
    return f"ta.{fund.fund_code}.custody"


def fee_account(fund: Fund) -> str:
    return f"ta.{fund.fund_code}.fees"


def distributor_account(fund: Fund, distributor_id: str) -> str:
    return f"ta.{fund.fund_code}.{distributor_id}"


def transfers(fund: Fund, totals: DistributorTotals) -> list[tuple[str, TransferCommand]]:
    """The transfers (with the payer that names each) that settle one distributor's totals."""
    distributor = distributor_account(fund, totals.distributor_id)
    custody = custody_account(fund)
    net = totals.purchase_amount_minor - totals.purchase_fee_minor - totals.redemption_amount_minor
    by_distributor = [
        Leg(distributor, custody, net),
        Leg(distributor, fee_account(fund), totals.purchase_fee_minor),
    ]
    by_custody = [
        Leg(custody, distributor, -net),
        Leg(custody, fee_account(fund), totals.redemption_fee_minor),
    ]
    memo = f"fund_ta settlement of {fund.fund_code}"
    planned = []
    for payer, legs in (("distributor", by_distributor), ("custody", by_custody)):
        paid = tuple(leg for leg in legs if leg.amount_minor > 0)
        if paid:
            planned.append((payer, TransferCommand(fund.currency, paid, memo)))
    return planned


async def settle(
    ledger: LedgerApi, fund: Fund, trade_date: str, distributors: Sequence[DistributorTotals]
) -> list[Transfer]:
    """Post the settlement of a closed trade date (again: answered, not applied twice)."""
    accounts = [custody_account(fund), fee_account(fund)]
    accounts += [distributor_account(fund, t.distributor_id) for t in distributors]
    for account_id in accounts:
        opening = OpenAccountCommand(account_id, fund.currency, AccountKind.SETTLEMENT, SETTLEMENT_POLICY, "")
        await ledger.open_account(fund.manager_id, opening, _key(f"open:{account_id}"))
    posted = []
    for totals in distributors:
        for payer, transfer in transfers(fund, totals):
            key = _key(
                f"settle:{fund.fund_code}:{trade_date}:{totals.distributor_id}:{payer}:{transfer.legs}"
            )
            posted.append(await ledger.create_transfer(fund.manager_id, transfer, key))
    return posted


def _key(what: str) -> Idempotency:
    """A request id (and body hash) derived from what the request is, so a retry is the same request."""
    digest = hashlib.sha256(what.encode()).hexdigest()
    return Idempotency(f"fundta-{digest[:40]}", digest)
