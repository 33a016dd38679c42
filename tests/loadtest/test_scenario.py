"""Scenario files: the shipped ones load, and a bad file is refused with a message naming the place."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from loadtest.scenario import SCENARIOS, Profile, ScenarioError, load_scenario, parse_scenario

SHORT = SCENARIOS / "double11_short.toml"


def short_document() -> dict[str, Any]:
    return tomllib.loads(SHORT.read_text())


@pytest.mark.parametrize("name", ["double11", "double11_short"])
def test_the_shipped_scenarios_load(name: str) -> None:
    scenario = load_scenario(Path(name))
    assert scenario.name == name
    assert [phase.name for phase in scenario.profile.phases] == [
        "warm-up",
        "ramp to peak",
        "peak",
        "ramp down",
    ]
    assert dict(scenario.mix) == {"transfer": 600, "hold": 100, "escrow": 80, "batch": 3, "statement": 217}
    assert scenario.accounts.hot_merchants == 3
    assert scenario.peak.p99_max_ms == 50 and scenario.peak.error_rate_max == 0.001


def test_phases_become_a_profile_of_ramps() -> None:
    profile = load_scenario(SHORT).profile
    assert profile.duration_s == 12
    assert profile.rate_at(1) == 20
    assert profile.rate_at(4.5) == pytest.approx(40)
    assert profile.rate_at(8) == 60
    assert profile.rate_at(11) == pytest.approx(40)
    assert profile.rate_at(12) == 0
    assert Profile.constant(50, 3).rate_at(2.9) == 50


def _broken(change: dict[str, Any]) -> dict[str, Any]:
    document = short_document()
    for dotted, value in change.items():
        *path, key = dotted.split(".")
        table: Any = document
        for part in path:
            table = table[int(part)] if part.isdigit() else table[part]
        if value is None:
            del table[key]
        else:
            table[key] = value
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": None}, "name is missing"),
        ({"mix.transfr": 3}, "[mix]: unknown key 'transfr'"),
        ({"mix": {"transfer": 0}}, "at least one positive weight"),
        ({"phases": []}, "phases must be a non-empty array"),
        ({"phases.0.rate_per_s": -5}, "[[phases]] #1: rate_per_s must be a number from 0"),
        ({"phases.0.start_per_s": 5}, "give rate_per_s, or start_per_s and end_per_s, not both"),
        ({"phases.1.end_per_s": None}, "[[phases]] #2: end_per_s is missing"),
        ({"phases.2.duration_s": "4s"}, "duration_s must be a number"),
        ({"accounts.customers": 2.5}, "customers must be a whole number"),
        ({"accounts.hot_merchants": 0}, "hot_share is positive but there are no hot_merchants"),
        ({"accounts.hot_share": 1.5}, "hot_share must be a number from 0 to 1"),
        ({"settlement.escrow_fee_minor": 500}, "escrow_fee_minor must be less than [amounts] min_minor"),
        ({"amounts.min_minor": 90_000}, "min_minor is more than max_minor"),
        ({"peak.settle_s": 8}, "settle_s (8) must be less than step_s (8)"),
        ({"client.deadline_ms": 0}, "deadline_ms must be a whole number from 1"),
    ],
)
def test_a_bad_scenario_names_the_key_and_the_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(_broken(change), "s.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("s.toml")


def test_unreadable_and_invalid_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
