"""`jubao reconcile`: audit the caller's payments ledger (PaymentService.Reconcile)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from jubao.cli.common import EXIT_DISCREPANCY, connect, emit, enum_label, list_table, text
from jubao.payments.v1 import payments_pb2 as pb

if TYPE_CHECKING:
    from rich.console import Group

app = typer.Typer()


@app.command()
def reconcile(ctx: typer.Context) -> None:
    """Check that money is conserved per currency, that every balance matches its journal and that
    every hold and escrow is accounted for. Exits 3 when there is a discrepancy."""
    with connect(ctx) as client:
        report = client.payments.Reconcile(pb.ReconcileRequest())
    emit(ctx, report, lambda: _report(report))
    if not report.clean:
        raise typer.Exit(EXIT_DISCREPANCY)


def _report(report: pb.ReconcileResponse) -> Group:
    from rich.console import Group

    verdict = (
        "clean"
        if report.clean
        else f"{len(report.discrepancies) + report.discrepancies_omitted} discrepancies"
    )
    summary = text(f"{verdict}: {report.accounts_checked} accounts in {report.shard_count} shards")
    totals = list_table(
        ("CURRENCY", "ACCOUNTS", "BALANCES", "IN FLIGHT"),
        [
            (t.currency_code, str(t.accounts), str(t.ledger_minor), str(t.in_flight_minor))
            for t in report.currencies
        ],
    )
    found = list_table(
        ("KIND", "ACCOUNT", "EXPECTED", "FOUND", "DETAIL"),
        [
            (
                enum_label(pb.DiscrepancyKind.Name(d.kind), "DISCREPANCY_KIND_"),
                d.account_id,
                str(d.expected),
                str(d.actual),
                d.detail,
            )
            for d in report.discrepancies
        ],
        wrap=(4,),
    )
    return Group(summary, totals, found) if report.discrepancies else Group(summary, totals)
