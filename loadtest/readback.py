"""Reading the ledger back after a run, for the check: Reconcile (again while the ledger still moves or
credits are still in flight between shards), then the run's accounts page by page (ListAccounts) and
every journal of them page by page (ListEntries)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Final

from jubao.client import AsyncClient
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server import limits

from loadtest import bounds
from loadtest.check import Balance, Posting, Readback

READ_TIMEOUT_S: Final = 30.0


async def read_back(client: AsyncClient, accounts: Collection[str]) -> Readback:
    problems = await settled_reconcile(client)
    balances = await _balances(client, set(accounts))
    limit = asyncio.Semaphore(bounds.readback_concurrency_max)

    async def journal(account_id: str) -> list[Posting]:
        async with limit:
            return await _journal(client, account_id)

    journals = await asyncio.gather(*(journal(account_id) for account_id in accounts))
    postings = tuple(posting for found in journals for posting in found)
    return Readback(balances, postings, problems)


async def settled_reconcile(client: AsyncClient) -> tuple[str, ...]:
    """Reconcile's discrepancies, once no credit is in flight and the shards are quiet (or the polls ran
    out: then what is still moving is the problem)."""
    problems: tuple[str, ...] = ()
    for _ in range(bounds.settle_polls_max):
        report = await client.payments.Reconcile(pb.ReconcileRequest(), timeout=READ_TIMEOUT_S)
        moving = any(d.kind == pb.DISCREPANCY_KIND_LEDGER_MOVING for d in report.discrepancies)
        in_flight = [c for c in report.currencies if c.in_flight_minor]
        problems = tuple(_describe(d) for d in report.discrepancies)
        problems += tuple(f"{c.in_flight_minor} {c.currency_code} still in flight" for c in in_flight)
        if not moving and not in_flight:
            return problems
        await asyncio.sleep(bounds.settle_poll_s)
    return problems


def _describe(discrepancy: pb.Discrepancy) -> str:
    kind = pb.DiscrepancyKind.Name(discrepancy.kind)
    return (
        f"{kind} {discrepancy.account_id or '(ledger)'}: expected {discrepancy.expected}, found "
        f"{discrepancy.actual} {discrepancy.detail}".strip()
    )


async def _balances(client: AsyncClient, wanted: set[str]) -> tuple[Balance, ...]:
    found: list[Balance] = []
    token = ""
    for _ in range(bounds.readback_account_pages_max):
        request = pb.ListAccountsRequest(page_size=limits.page_size_max, page_token=token)
        response = await client.payments.ListAccounts(request, timeout=READ_TIMEOUT_S)
        found += [
            Balance(a.account_id, a.balance.ledger_minor, a.balance.held_minor)
            for a in response.accounts
            if a.account_id in wanted
        ]
        token = response.next_page_token
        if not token:
            return tuple(found)
    raise RuntimeError(f"ListAccounts did not end within {bounds.readback_account_pages_max} pages")


async def _journal(client: AsyncClient, account_id: str) -> list[Posting]:
    found: list[Posting] = []
    token = ""
    for _ in range(bounds.readback_pages_per_account_max):
        request = pb.ListEntriesRequest(
            account_id=account_id, page_size=limits.page_size_max, page_token=token
        )
        response = await client.payments.ListEntries(request, timeout=READ_TIMEOUT_S)
        found += [Posting(e.account_id, e.transfer_id, e.leg_index, e.amount_minor) for e in response.entries]
        token = response.next_page_token
        if not token:
            return found
    raise RuntimeError(
        f"ListEntries of {account_id} did not end within {bounds.readback_pages_per_account_max} pages"
    )
