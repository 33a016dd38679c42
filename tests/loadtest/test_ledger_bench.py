"""The in-process ledger figures (`loadtest.ledger_bench`) on a small plan, on every backend: the four figures
with positive values, and the bench's own check (every transfer committed, Reconcile clean)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jubao_server import limits
from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.contract import NO_FAULTS

from loadtest.ledger_bench import LedgerPlan, run_ledger_bench
from tests.backends import BACKENDS, open_test_backend

SMALL: LedgerPlan = LedgerPlan(
    accounts=60, shard_count=4, batch_size=25, batches=4, unary_transfers=30, unary_in_flight=4
)


@pytest.mark.parametrize("backend_name", BACKENDS)
async def test_the_ledger_figures_are_measured_and_the_money_adds_up(
    backend_name: str, tmp_path: Path
) -> None:
    backend = await open_test_backend(backend_name, tmp_path, NO_FAULTS)
    try:
        await migrate(backend)
        figures = await run_ledger_bench(backend, SYSTEM_CLOCK, SMALL)
    finally:
        await backend.close()
    assert [f["name"] for f in figures] == [
        "payments_ledger_batch_per_s",
        "payments_ledger_batch_cpu_us_per_transfer",
        "payments_ledger_unary_per_s",
        "payments_ledger_unary_cpu_us_per_transfer",
    ]
    assert all(f["backend"] == backend.name and int(f["value"]) > 0 for f in figures)


async def test_transfers_answered_before_their_credits_landed_are_counted_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded machine a call's bounded wait for its credits can end first: the transfer is answered
    DEBITED (committed, its credit in flight). The bench counts those in its notes, waits for their
    credits, and Reconcile finds the ledger clean. Here no call waits at all."""
    monkeypatch.setattr(limits, "ledger_completion_wait_s", 0.0)
    backend = await open_test_backend("sqlite", tmp_path, NO_FAULTS)
    try:
        await migrate(backend)
        figures = await run_ledger_bench(backend, SYSTEM_CLOCK, SMALL)
    finally:
        await backend.close()
    notes = next(f["notes"] for f in figures if f["name"] == "payments_ledger_batch_per_s")
    debited = re.search(
        r"answered DEBITED \(credit still in flight\): ([\d,]+) batched, ([\d,]+) single", notes
    )
    assert debited is not None, notes
    batched, single = (int(count.replace(",", "")) for count in debited.groups())
    assert batched > 0 and single > 0, notes
