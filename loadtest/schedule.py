"""When each arrival of an open loop is due: the arrivals of a profile, shared out among the workers.

With target rate r(t), the expected number of arrivals by time t is N(t), the integral of r. Arrival k (0, 1,
2, ...) is due when N(t) = k; worker w of W sends the arrivals k = w, w + W, w + 2W, ..., so together the
workers follow the profile exactly and each sends its share, interleaved with the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from loadtest import bounds
from loadtest.scenario import Phase, Profile


def arrivals_in(phase: Phase) -> float:
    """The expected arrivals of a phase: the area under its linear ramp."""
    return (phase.start_per_s + phase.end_per_s) / 2 * phase.duration_s


def total_arrivals(profile: Profile) -> int:
    return math.floor(sum(arrivals_in(phase) for phase in profile.phases) + 1e-9)


def arrival_offset_s(profile: Profile, index: int) -> float | None:
    """When arrival `index` is due, in seconds after the start of the profile; None past its end."""
    begin_s = 0.0
    before = 0.0
    for phase in profile.phases:
        within = arrivals_in(phase)
        if index < before + within - 1e-9:
            return begin_s + _time_within(phase, index - before)
        before += within
        begin_s += phase.duration_s
    return None


def _time_within(phase: Phase, arrivals: float) -> float:
    """Solve start * t + slope * t^2 / 2 = arrivals for t, in the form that stays exact when slope is 0."""
    if arrivals <= 0:
        return 0.0
    slope = (phase.end_per_s - phase.start_per_s) / phase.duration_s
    root = math.sqrt(max(0.0, phase.start_per_s**2 + 2 * slope * arrivals))
    return min(phase.duration_s, 2 * arrivals / (phase.start_per_s + root))


def worker_offsets_s(profile: Profile, worker: int, workers: int) -> Iterator[float]:
    """The due times of worker `worker`'s share of the arrivals, in order."""
    last = min(total_arrivals(profile), bounds.ops_per_worker_max * workers)
    for index in range(worker, last, workers):
        offset_s = arrival_offset_s(profile, index)
        if offset_s is None:
            return
        yield offset_s
