"""PaymentService.Reconcile and `jubao reconcile` end to end; the audit itself is tested on every backend
in tests/ledger/test_simulation.py."""

from __future__ import annotations

import asyncio

from jubao.cli.main import app
from jubao.client import AsyncClient
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server.payments.convert import reconcile_to_pb
from jubao_server.payments.reconcile import CurrencyTotal, Discrepancy, DiscrepancyKind, ReconcileReport
from typer.testing import CliRunner

from tests.payments.support import json_document, leg, pay, seconds_from_now
from tests.platform.harness import Running


async def test_a_busy_ledger_reconciles_clean(funded: AsyncClient, platform: AsyncClient) -> None:
    bank = funded
    await pay(bank, leg("alice", "bob", 300), leg("alice", "fees", 20))
    hold = pb.CreateHoldRequest(
        account_id="alice",
        payee_account_id="shop",
        currency_code="CNY",
        amount_minor=500,
        expire_time=seconds_from_now(600),
    )
    await bank.payments.CreateHold(hold)
    report = await bank.payments.Reconcile(pb.ReconcileRequest())
    assert report.clean and not report.discrepancies
    assert report.accounts_checked == 5
    [cny] = report.currencies
    assert (cny.currency_code, cny.accounts, cny.ledger_minor, cny.in_flight_minor) == ("CNY", 5, 0, 0)
    untouched = await platform.payments.Reconcile(pb.ReconcileRequest())
    assert untouched.clean and untouched.accounts_checked == 0


async def test_the_cli_prints_the_report_and_exits_0_when_clean(
    funded: AsyncClient, running: Running, keys: dict[str, str]
) -> None:
    args = ["--endpoint", running.address, "--api-key", keys["demo-bank"], "--json", "reconcile"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    report = json_document(result.stdout)
    assert report["clean"] is True
    assert report["currencies"][0]["currencyCode"] == "CNY"
    table = await asyncio.to_thread(CliRunner().invoke, app, [*args[:-2], "reconcile"])
    assert table.exit_code == 0 and "clean: 5 accounts" in table.stdout


def test_every_discrepancy_kind_has_a_proto_value_and_long_lists_are_cut() -> None:
    one_each = tuple(Discrepancy(kind, "acct", 1, 2, kind.value) for kind in DiscrepancyKind)
    answer = reconcile_to_pb(ReconcileReport("t", 16, 3, (CurrencyTotal("CNY", 3, 5, -5),), one_each))
    assert not answer.clean and answer.discrepancies_omitted == 0
    names = [pb.DiscrepancyKind.Name(d.kind) for d in answer.discrepancies]
    assert names == [f"DISCREPANCY_KIND_{kind.name}" for kind in DiscrepancyKind]
    many = one_each * 200
    cut = reconcile_to_pb(ReconcileReport("t", 16, 3, (), many))
    assert len(cut.discrepancies) == 1000
    assert cut.discrepancies_omitted == len(many) - 1000
