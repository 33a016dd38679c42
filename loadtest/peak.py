"""find-peak: the highest constant arrival rate the server sustains within a p99 latency bound and an
error-rate bound. Steps grow the rate by `growth` until one fails, then bisect between the best pass and
the first failure `refine_steps` times; the peak is the highest rate that passed. When the first steps
fail, the rate shrinks by `growth` until one passes (down to `RATE_MIN_PER_S`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from loadtest.scenario import PeakPlan, Profile
from loadtest.stats import Window

# Bisection stops when the pass and the failure are closer than this share of the passing rate.
REFINE_SHARE_MIN = 0.02
# Below this rate a failing server has no sustainable rate worth reporting.
RATE_MIN_PER_S = 1.0


@dataclasses.dataclass(frozen=True)
class Step:
    rate_per_s: float
    window: Window  # measured after the step's first `settle_s`
    passed: bool


def passes(window: Window, plan: PeakPlan) -> bool:
    return window.ok > 0 and window.p99_ms <= plan.p99_max_ms and window.error_rate <= plan.error_rate_max


def next_rate(steps: Sequence[Step], plan: PeakPlan) -> float | None:
    """The rate of the next step, or None when the search is over."""
    if not steps:
        return plan.start_per_s
    if len(steps) >= plan.steps_max:
        return None
    passed = [step.rate_per_s for step in steps if step.passed]
    failed = [step.rate_per_s for step in steps if not step.passed]
    if not failed:
        return round(steps[-1].rate_per_s * plan.growth, 1)
    if not passed:
        lower = round(min(failed) / plan.growth, 1)
        return lower if lower >= RATE_MIN_PER_S else None
    best = max(passed)
    above = [rate for rate in failed if rate > best]
    first_failure = next(index for index, step in enumerate(steps) if not step.passed)
    if not above or len(steps) - 1 - first_failure >= plan.refine_steps:
        return None
    ceiling = min(above)
    if ceiling - best < best * REFINE_SHARE_MIN:
        return None
    return round((best + ceiling) / 2, 1)


def peak_of(steps: Sequence[Step]) -> float:
    return max((step.rate_per_s for step in steps if step.passed), default=0.0)


def search(plan: PeakPlan, measure: Callable[[Profile], Window]) -> list[Step]:
    """Run steps (each `measure`d at a constant rate for `plan.step_s`) until `next_rate` says stop."""
    steps: list[Step] = []
    for _ in range(plan.steps_max):
        rate = next_rate(steps, plan)
        if rate is None:
            break
        window = measure(Profile.constant(rate, plan.step_s))
        steps.append(Step(rate, window, passes(window, plan)))
    return steps
