"""find-peak's steps as a pure function of the steps so far."""

from __future__ import annotations

from loadtest.peak import Step, next_rate, passes, peak_of, search
from loadtest.scenario import PeakPlan, Profile
from loadtest.stats import Window

PLAN = PeakPlan(
    start_per_s=100, growth=2.0, steps_max=10, refine_steps=2, p99_max_ms=50, error_rate_max=0.001
)


def window(p99_ms: float = 10, ok: int = 1000, errors: int = 0) -> Window:
    return Window(
        5, ok + errors, ok, ok, (("DEADLINE_EXCEEDED", errors),) if errors else (), (1, 2, p99_ms, p99_ms)
    )


def step(rate: float, passed: bool) -> Step:
    return Step(rate, window(), passed)


def test_a_step_passes_within_both_bounds() -> None:
    assert passes(window(), PLAN)
    assert not passes(window(p99_ms=51), PLAN)
    assert passes(window(ok=1000, errors=1), PLAN)
    assert not passes(window(ok=1000, errors=2), PLAN)
    assert not passes(window(ok=0), PLAN)


def test_the_rate_grows_until_a_step_fails_then_bisects() -> None:
    assert next_rate([], PLAN) == 100
    assert next_rate([step(100, True)], PLAN) == 200
    assert next_rate([step(100, True), step(200, True)], PLAN) == 400
    history = [step(100, True), step(200, True), step(400, False)]
    assert next_rate(history, PLAN) == 300
    assert next_rate([*history, step(300, True)], PLAN) == 350
    assert next_rate([*history, step(300, False)], PLAN) == 250
    assert next_rate([*history, step(300, True), step(350, False)], PLAN) is None  # refine_steps done


def test_the_rate_shrinks_while_the_first_steps_fail() -> None:
    assert next_rate([step(100, False)], PLAN) == 50
    assert next_rate([step(100, False), step(50, False)], PLAN) == 25
    assert next_rate([step(100, False), step(50, True)], PLAN) == 75  # then bisects up again
    assert next_rate([step(1.5, False)], PLAN) is None  # nothing sustainable


def test_the_search_stops_when_steps_run_out() -> None:
    assert next_rate([step(100 * 2**i, True) for i in range(10)], PLAN) is None
    close = [step(100, True), step(101, False)]
    assert next_rate(close, PLAN) is None  # nothing left to bisect


def test_the_peak_is_the_highest_rate_that_passed() -> None:
    assert peak_of([step(100, True), step(200, False), step(150, True), step(175, False)]) == 150
    assert peak_of([step(100, False)]) == 0


def test_search_measures_each_step_at_a_constant_rate() -> None:
    seen: list[float] = []

    def measure(profile: Profile) -> Window:
        rate = profile.rate_at(0)
        seen.append(rate)
        return window(p99_ms=10 if rate <= 320 else 80)

    steps = search(PLAN, measure)
    assert seen == [100, 200, 400, 300, 350]
    assert peak_of(steps) == 300
