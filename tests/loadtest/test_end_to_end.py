"""A short run of the double11 mix against a real server: every kind of request flows, the post-run check
passes, and the JSON report and its plot are written."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from loadtest.commands import Options, find_peak_command, run_command
from loadtest.harness import HarnessError
from loadtest.scenario import (
    SCENARIOS,
    Accounts,
    PeakPlan,
    Phase,
    Profile,
    Scenario,
    Settlement,
    load_scenario,
)
from tests.platform.harness import Running

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tiny() -> Scenario:
    """double11_short for a few seconds on a few accounts, every kind at least 15% of the arrivals.

    The run draws its kinds at random (seeded by a fresh run id) from about 85 arrivals, and the test wants
    each kind seen: a kind of 15% is missed with odds of about 1 in 10^6 (at 5%, batches were missed about
    once in 80 runs)."""
    return dataclasses.replace(
        load_scenario(SCENARIOS / "double11_short.toml"),
        accounts=Accounts(customers=30, merchants=5, hot_merchants=2, hot_share=0.5),
        profile=Profile((Phase("warm-up", 1, 10, 10), Phase("ramp", 1, 10, 40), Phase("peak", 1.5, 40, 40))),
        mix=(("transfer", 25), ("hold", 20), ("escrow", 20), ("batch", 20), ("statement", 15)),
        settlement=Settlement(after_s=0.5, refund_share=0.5, escrow_fee_minor=100),
        batch_size=5,
    )


async def test_a_short_double11_run_passes_the_check_and_reports(
    tmp_path: Path, running: Running, keys: dict[str, str]
) -> None:
    options = Options(tiny(), 2, tmp_path, running.address, keys["demo-bank"])
    assert await asyncio.to_thread(run_command, options) == 0
    document = json.loads((tmp_path / "double11_short-run.json").read_text())
    assert document["check"]["passed"] is True, document["check"]
    assert document["check"]["accounts_checked"] == 3 + 30 + 5 + 2
    assert set(document["by_kind"]) >= {"transfer", "hold", "capture", "escrow", "batch", "statement"}
    assert set(document["by_kind"]) & {"release", "refund"}
    assert document["totals"]["ok"] == document["totals"]["offered"] > 50
    second = document["seconds"][1]
    assert set(second) >= {
        "second",
        "target_per_s",
        "offered_per_s",
        "achieved_per_s",
        "latency_ms",
        "errors",
    }
    assert set(second["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert (tmp_path / "double11_short-run.png").read_bytes()[:8] == PNG_SIGNATURE


async def test_find_peak_steps_up_and_reports_each_step(
    tmp_path: Path, running: Running, keys: dict[str, str]
) -> None:
    plan = PeakPlan(start_per_s=10, growth=2, step_s=2, settle_s=0.5, steps_max=2, p99_max_ms=5_000)
    scenario = dataclasses.replace(tiny(), peak=plan)
    options = Options(scenario, 1, tmp_path, running.address, keys["demo-bank"])
    assert await asyncio.to_thread(find_peak_command, options) == 0
    document = json.loads((tmp_path / "double11_short-find-peak.json").read_text())
    assert [step["rate_per_s"] for step in document["steps"]] == [10, 20]
    assert document["peak_sustained_per_s"] == 20
    assert document["check"]["passed"] is True
    assert {row["step"] for row in document["seconds"]} == {0, 1}
    assert (tmp_path / "double11_short-find-peak.png").read_bytes()[:8] == PNG_SIGNATURE


def test_an_endpoint_needs_an_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUBAO_API_KEY", raising=False)
    with pytest.raises(HarnessError, match="--api-key or JUBAO_API_KEY"):
        run_command(Options(tiny(), 1, tmp_path, "127.0.0.1:1"))
