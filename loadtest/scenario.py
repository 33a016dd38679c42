"""Load scenarios: what traffic to offer, read from a TOML file (`loadtest/scenarios/*.toml`) and checked.

A scenario names the accounts to open, an operation mix (relative weights of the kinds of arrivals), the
arrival rate over time as phases (each a linear ramp from `start_per_s` to `end_per_s`; `rate_per_s` for a
constant one), how and when holds and escrows are settled, the client's deadline and in-flight cap, and
the bounds and steps of `find-peak`. A bad file raises `ScenarioError` naming the file, the key and what
is wrong with it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Final

from jubao_server import limits

from loadtest import bounds

SCENARIOS: Final = Path(__file__).resolve().parent / "scenarios"
# What an arrival may be; holds are captured, and escrows released or refunded, `settlement.after_s` later
# (requests of kinds capture, release and refund).
# A fundta_purchase is a purchase order of the run's fund (`fundta_orders.py` opens it).
ARRIVAL_KINDS: Final = ("transfer", "hold", "escrow", "batch", "statement", "ping", "fundta_purchase")


class ScenarioError(ValueError):
    """The scenario file is missing, unreadable or invalid; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    duration_s: float
    start_per_s: float
    end_per_s: float


@dataclasses.dataclass(frozen=True)
class Profile:
    """The target arrival rate over time: phases one after the other, each a linear ramp."""

    phases: tuple[Phase, ...]

    @classmethod
    def constant(cls, rate_per_s: float, duration_s: float) -> Profile:
        return cls((Phase("constant", duration_s, rate_per_s, rate_per_s),))

    @property
    def duration_s(self) -> float:
        return sum(phase.duration_s for phase in self.phases)

    def rate_at(self, offset_s: float) -> float:
        """The target rate `offset_s` after the start; 0 outside the profile."""
        begin_s = 0.0
        for phase in self.phases:
            if begin_s <= offset_s < begin_s + phase.duration_s:
                share = (offset_s - begin_s) / phase.duration_s
                return phase.start_per_s + (phase.end_per_s - phase.start_per_s) * share
            begin_s += phase.duration_s
        return 0.0


@dataclasses.dataclass(frozen=True)
class Accounts:
    """Funded customers pay merchants; a share of the payments goes to a few hot merchants."""

    customers: int = 1_000
    merchants: int = 100
    hot_merchants: int = 3
    hot_share: float = 0.3
    funding_minor: int = 10**11
    currency: str = "CNY"


@dataclasses.dataclass(frozen=True)
class Settlement:
    """Holds are captured, escrows released (or refunded, `refund_share` of them) `after_s` after their
    creation was acknowledged; those falling due after the run stay open."""

    after_s: float = 5.0
    refund_share: float = 0.2
    escrow_fee_minor: int = 100


@dataclasses.dataclass(frozen=True)
class PeakPlan:
    """find-peak: constant-rate steps from `start_per_s`, each `growth` times the last until one fails,
    then `refine_steps` bisections between the best pass and the first failure. A step passes when its
    p99 latency and error rate (measured after its first `settle_s`) are within the bounds."""

    start_per_s: float = 20.0
    growth: float = 1.5
    step_s: float = 10.0
    settle_s: float = 2.0
    steps_max: int = 12
    refine_steps: int = 2
    p99_max_ms: float = 50.0
    error_rate_max: float = 0.001


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    profile: Profile
    mix: tuple[tuple[str, int], ...]
    accounts: Accounts = Accounts()
    amount_min_minor: int = 100
    amount_max_minor: int = 10_000
    settlement: Settlement = Settlement()
    batch_size: int = 10
    statement_page_size: int = 20
    deadline_ms: int = 5_000
    in_flight_max: int = 1_000
    peak: PeakPlan = PeakPlan()


def load_scenario(path: Path) -> Scenario:
    """The scenario of a TOML file; a bare name (`double11`) means `loadtest/scenarios/<name>.toml`."""
    if path.suffix != ".toml" and not path.exists():
        path = SCENARIOS / f"{path}.toml"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read the scenario file: {error.strerror}") from error
    if len(data) > bounds.scenario_file_size_max_bytes:
        raise ScenarioError(f"{path}: larger than {bounds.scenario_file_size_max_bytes} bytes")
    try:
        document = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from error
    return parse_scenario(document, str(path))


def parse_scenario(document: dict[str, Any], source: str) -> Scenario:
    top = _Table(document, source)
    top.only(
        "name",
        "description",
        "accounts",
        "amounts",
        "mix",
        "phases",
        "settlement",
        "batch",
        "statement",
        "client",
        "peak",
    )
    amounts = top.table("amounts", required=False)
    batch = top.table("batch", required=False)
    statement = top.table("statement", required=False)
    client = top.table("client", required=False)
    for table, keys in (
        (amounts, ("min_minor", "max_minor")),
        (batch, ("size",)),
        (statement, ("page_size",)),
        (client, ("deadline_ms", "in_flight_max")),
    ):
        table.only(*keys)
    default = Scenario("", "", Profile(()), ())
    scenario = Scenario(
        name=top.text("name"),
        description=top.text("description", ""),
        profile=Profile(_phases(top)),
        mix=_mix(top.table("mix")),
        accounts=_accounts(top.table("accounts")),
        amount_min_minor=amounts.integer("min_minor", 1, bounds.amount_max_minor, default.amount_min_minor),
        amount_max_minor=amounts.integer("max_minor", 1, bounds.amount_max_minor, default.amount_max_minor),
        settlement=_settlement(top.table("settlement", required=False)),
        batch_size=batch.integer("size", 1, bounds.batch_size_max, default.batch_size),
        statement_page_size=statement.integer(
            "page_size", 1, limits.page_size_max, default.statement_page_size
        ),
        deadline_ms=client.integer("deadline_ms", 1, bounds.deadline_max_ms, default.deadline_ms),
        in_flight_max=client.integer(
            "in_flight_max", 1, bounds.in_flight_per_worker_max, default.in_flight_max
        ),
        peak=_peak(top.table("peak", required=False)),
    )
    _check_whole(scenario, source)
    return scenario


def _phases(top: _Table) -> tuple[Phase, ...]:
    tables = top.tables("phases", bounds.phases_max)
    phases = tuple(_phase(table) for table in tables)
    if sum(phase.duration_s for phase in phases) > bounds.run_duration_max_s:
        raise ScenarioError(f"{top.where}: the phases last more than {bounds.run_duration_max_s} s in all")
    return phases


def _phase(table: _Table) -> Phase:
    table.only("name", "duration_s", "rate_per_s", "start_per_s", "end_per_s")
    duration_s = table.number("duration_s", 0.001, bounds.run_duration_max_s)
    rate = bounds.rate_max_per_s
    if "rate_per_s" in table.values:
        if "start_per_s" in table.values or "end_per_s" in table.values:
            raise ScenarioError(f"{table.where}: give rate_per_s, or start_per_s and end_per_s, not both")
        constant = table.number("rate_per_s", 0, rate)
        return Phase(table.text("name", table.where), duration_s, constant, constant)
    start, end = table.number("start_per_s", 0, rate), table.number("end_per_s", 0, rate)
    return Phase(table.text("name", table.where), duration_s, start, end)


def _mix(table: _Table) -> tuple[tuple[str, int], ...]:
    table.only(*ARRIVAL_KINDS)
    mix = tuple(
        (kind, table.integer(kind, 0, 1_000_000, 0)) for kind in ARRIVAL_KINDS if kind in table.values
    )
    if not any(weight for _, weight in mix):
        raise ScenarioError(
            f"{table.where}: give at least one positive weight among {', '.join(ARRIVAL_KINDS)}"
        )
    return mix


def _accounts(table: _Table) -> Accounts:
    table.only("customers", "merchants", "hot_merchants", "hot_share", "funding_minor", "currency")
    default = Accounts()
    return Accounts(
        customers=table.integer("customers", 2, bounds.customers_max),
        merchants=table.integer("merchants", 1, bounds.merchants_max),
        hot_merchants=table.integer("hot_merchants", 0, bounds.merchants_max, default.hot_merchants),
        hot_share=table.number("hot_share", 0, 1, default.hot_share),
        funding_minor=table.integer("funding_minor", 1, bounds.funding_max_minor, default.funding_minor),
        currency=table.text("currency", default.currency),
    )


def _settlement(table: _Table) -> Settlement:
    table.only("after_s", "refund_share", "escrow_fee_minor")
    default = Settlement()
    return Settlement(
        after_s=table.number("after_s", 0, bounds.settle_after_max_s, default.after_s),
        refund_share=table.number("refund_share", 0, 1, default.refund_share),
        escrow_fee_minor=table.integer(
            "escrow_fee_minor", 0, bounds.amount_max_minor, default.escrow_fee_minor
        ),
    )


def _peak(table: _Table) -> PeakPlan:
    table.only(
        "start_per_s",
        "growth",
        "step_s",
        "settle_s",
        "steps_max",
        "refine_steps",
        "p99_max_ms",
        "error_rate_max",
    )
    default = PeakPlan()
    plan = PeakPlan(
        start_per_s=table.number("start_per_s", 0.1, bounds.rate_max_per_s, default.start_per_s),
        growth=table.number("growth", 1.05, 10, default.growth),
        step_s=table.number("step_s", 1, bounds.run_duration_max_s, default.step_s),
        settle_s=table.number("settle_s", 0, bounds.run_duration_max_s, default.settle_s),
        steps_max=table.integer("steps_max", 1, bounds.peak_steps_max, default.steps_max),
        refine_steps=table.integer("refine_steps", 0, bounds.peak_refine_steps_max, default.refine_steps),
        p99_max_ms=table.number("p99_max_ms", 0.001, bounds.deadline_max_ms, default.p99_max_ms),
        error_rate_max=table.number("error_rate_max", 0, 1, default.error_rate_max),
    )
    check_peak(plan, table.where)
    return plan


def check_peak(plan: PeakPlan, where: str) -> None:
    if plan.settle_s >= plan.step_s:
        raise ScenarioError(
            f"{where}: settle_s ({plan.settle_s:g}) must be less than step_s ({plan.step_s:g})"
        )
    if plan.start_per_s <= 0 or plan.p99_max_ms <= 0 or not 0 <= plan.error_rate_max <= 1:
        raise ScenarioError(
            f"{where}: the start rate and p99 bound must be positive, the error rate from 0 to 1"
        )


def _check_whole(scenario: Scenario, source: str) -> None:
    """Rules across sections."""
    accounts = scenario.accounts
    if scenario.amount_min_minor > scenario.amount_max_minor:
        raise ScenarioError(f"{source}: [amounts] min_minor is more than max_minor")
    if accounts.hot_share > 0 and accounts.hot_merchants == 0:
        raise ScenarioError(f"{source}: [accounts] hot_share is positive but there are no hot_merchants")
    if scenario.settlement.escrow_fee_minor >= scenario.amount_min_minor:
        raise ScenarioError(
            f"{source}: [settlement] escrow_fee_minor must be less than [amounts] min_minor (a fee is taken "
            "from every escrow)"
        )
    if accounts.currency.upper() != accounts.currency or len(accounts.currency) != 3:
        raise ScenarioError(f"{source}: [accounts] currency must be an ISO 4217 code such as CNY")


class _Table:
    """A TOML table being read, with the place it came from for error messages."""

    def __init__(self, values: object, where: str) -> None:
        if not isinstance(values, dict):
            raise ScenarioError(f"{where}: must be a table")
        self.values: dict[str, Any] = values
        self.where = where

    def only(self, *keys: str) -> None:
        """Refuse keys other than `keys` (a misspelt key would otherwise be ignored silently)."""
        unknown = sorted(set(self.values) - set(keys))
        if unknown:
            raise ScenarioError(
                f"{self.where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})"
            )

    def table(self, key: str, required: bool = True) -> _Table:
        if key not in self.values and not required:
            return _Table({}, f"{self.where} [{key}]")
        return _Table(self._get(key), f"{self.where} [{key}]")

    def tables(self, key: str, count_max: int) -> list[_Table]:
        found = self._get(key)
        if not isinstance(found, list) or not found:
            raise ScenarioError(f"{self.where}: {key} must be a non-empty array of tables ([[{key}]])")
        if len(found) > count_max:
            raise ScenarioError(f"{self.where}: at most {count_max} [[{key}]], got {len(found)}")
        return [_Table(item, f"{self.where} [[{key}]] #{index + 1}") for index, item in enumerate(found)]

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or (default is None and not value.strip()):
            raise ScenarioError(f"{self.where}: {key} must be a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ScenarioError(
                f"{self.where}: {key} must be a whole number from {low} to {high}, got {value!r}"
            )
        return value

    def number(self, key: str, low: float, high: float, default: float | None = None) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ScenarioError(f"{self.where}: {key} must be a number from {low} to {high}, got {value!r}")
        return float(value)

    def _get(self, key: str, default: object = None) -> object:
        if key in self.values:
            return self.values[key]
        if default is None:
            raise ScenarioError(f"{self.where}: {key} is missing")
        return default
