"""Per-second figures: workers' histograms travel encoded and merge into the same percentiles as one
histogram of every latency; windows add counts and errors up; two loads in alternating windows compare
round by round."""

from __future__ import annotations

import random

import pytest

from loadtest.stats import (
    IN_FLIGHT_CAP,
    OK,
    PairedRounds,
    SecondCounter,
    Series,
    new_histogram,
    record_latency,
)


def _tick(
    worker: int, second: int, latencies_s: list[float], errors: int = 0
) -> tuple[SecondCounter, object]:
    counter = SecondCounter()
    counter.offered = len(latencies_s) + errors
    for latency_s in latencies_s:
        counter.record(OK, latency_s, transfers=1)
    for _ in range(errors):
        counter.record(IN_FLIGHT_CAP, None)
    return counter, counter.close(worker, second)


def test_merged_worker_histograms_equal_one_histogram_of_everything() -> None:
    rng = random.Random(5)
    parts = [[rng.expovariate(1 / 0.01) for _ in range(2_000)] for _ in range(3)]
    series = Series(workers=3)
    for worker, latencies in enumerate(parts):
        _, tick = _tick(worker, 0, latencies)
        series.add(tick)  # type: ignore[arg-type]
    whole = new_histogram()
    for latency in (latency for part in parts for latency in part):
        record_latency(whole, latency)
    window = series.second(0)
    expected = [whole.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)]
    assert list(window.latency_ms[:3]) == expected
    assert window.latency_ms[3] == whole.get_max_value() / 1000
    assert window.ok == window.transfers == 6_000


def test_a_second_is_complete_when_every_worker_reported_it() -> None:
    series = Series(workers=2)
    _, first = _tick(0, 0, [0.001])
    _, second = _tick(1, 0, [0.002])
    assert series.add(first) is False  # type: ignore[arg-type]
    assert series.add(second) is True  # type: ignore[arg-type]


def test_a_window_adds_up_counts_and_errors_by_status() -> None:
    series = Series(workers=2)
    for second in range(4):
        for worker in range(2):
            _, tick = _tick(worker, second, [0.005] * 10, errors=second)
            series.add(tick)  # type: ignore[arg-type]
    window = series.window(1, 4)
    assert window.seconds == 3
    assert window.ok == 60 and window.offered == 60 + 2 * (1 + 2 + 3)
    assert window.errors == ((IN_FLIGHT_CAP, 12),)
    assert window.achieved_per_s == 20
    assert window.error_rate == pytest.approx(12 / 72)
    assert window.latency_ms[2] == pytest.approx(5, rel=0.01)
    assert series.seconds == 4
    assert series.window(9, 12).ok == 0


def test_alternating_windows_compare_round_by_round_and_take_the_median() -> None:
    """The host's speed halves from one round to the next, and a stall of the machine hits the measured
    window of round 2; otherwise the measured load does 0.8 of the reference's calls in the same round.
    The ratio is 0.8: the ratio of the totals is 0.64, and two loads one after the other (the reference
    in rounds 1 and 2's time, the measured in rounds 3 and 4's) would read 0.2."""
    speeds = (1.0, 0.5, 0.25, 0.125)
    reference_per_s = tuple(4_000 * speed for speed in speeds)
    measured_per_s = tuple(
        rate * share for rate, share in zip(reference_per_s, (0.8, 0.2, 0.8, 0.8), strict=True)
    )
    rounds = PairedRounds(reference_per_s, measured_per_s)
    assert rounds.ratios == pytest.approx((0.8, 0.2, 0.8, 0.8))
    assert rounds.ratio_median == pytest.approx(0.8)
    assert sum(measured_per_s) / sum(reference_per_s) == pytest.approx(0.64)
    assert rounds.reference_median_per_s == pytest.approx(1_500)
    assert rounds.measured_median_per_s == pytest.approx(600)


def test_paired_rounds_need_a_rate_of_each_load_per_round() -> None:
    assert PairedRounds((0.0, 100.0, 200.0), (50.0, 90.0, 150.0)).ratios == (0.0, 0.9, 0.75)
    with pytest.raises(ValueError, match="per round"):
        PairedRounds((100.0, 200.0), (90.0,))
    with pytest.raises(ValueError, match="per round"):
        PairedRounds((), ())


def test_the_slowest_seconds_are_those_with_the_longest_answers_across_workers() -> None:
    longest_s = {0: 0.010, 1: 0.250, 2: 0.030, 3: 0.120}
    series = Series(workers=2)
    for second, slowest_s in longest_s.items():
        # The second's slowest answer is one worker's; the other worker's answers are all quick.
        series.add(_tick(0, second, [0.002, slowest_s])[1])  # type: ignore[arg-type]
        series.add(_tick(1, second, [0.002, 0.003])[1])  # type: ignore[arg-type]
    assert [second for second, _ in series.slowest_seconds(0, 3, 2)] == [1, 2]  # second 3 is past the end
    found = series.slowest_seconds(0, 4, 2)
    assert [second for second, _ in found] == [1, 3]
    assert [window.ok for _, window in found] == [4, 4]
    assert found[0][1].latency_ms[3] == pytest.approx(250, rel=0.01)
