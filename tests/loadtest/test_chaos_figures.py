"""The chaos report's figures, from seconds made up here: the longest time without a success, the time
until throughput was back, each fault's window, and the faults marked on the plot."""

from __future__ import annotations

import matplotlib.pyplot as plt

from loadtest.chaos import Fault, fault_rows, recovered_after_s, table
from loadtest.plot import draw
from loadtest.stats import OK, SecondCounter, Series
from tests.loadtest.test_plot import find_peak_document


def series_of(successes_s: list[list[float]], seconds: int) -> Series:
    """A series of `len(successes_s)` workers whose successes came at the times given (seconds since the
    start), each also counting an UNAVAILABLE in every second without a success."""
    series = Series(len(successes_s))
    for worker, times_s in enumerate(successes_s):
        for second in range(seconds):
            counter = SecondCounter()
            in_second = [at_s for at_s in times_s if second <= at_s < second + 1]
            for at_s in in_second:
                counter.record(OK, 0.01, at_s=at_s)
            if not in_second:
                counter.record("UNAVAILABLE", 0.01)
            series.add(counter.close(worker, second))
    return series


def test_the_longest_gap_merges_the_workers_and_counts_the_window_edges() -> None:
    steady = [second + 0.5 for second in range(10)]
    outage = [0.2, 0.9, 1.4, 5.6, 6.1, 9.3]  # nothing from 1.4 to 5.6 s
    series = series_of([steady, outage], 10)
    assert series.longest_ok_gap_s(0, 10) == 1.0  # the steady worker answers every second
    lone = series_of([outage], 10)
    assert round(lone.longest_ok_gap_s(0, 10), 6) == 4.2
    assert round(lone.longest_ok_gap_s(7, 10), 6) == 2.3  # from the window's start to 9.3 s
    assert round(lone.longest_ok_gap_s(9.5, 10), 6) == 0.5  # no success at all: the whole window


def test_throughput_is_back_after_the_last_second_starting_a_slow_stretch() -> None:
    ok_per_s = [10, 10, 10, 2, 0, 0, 9, 10, 10, 10, 10, 10]
    assert recovered_after_s(ok_per_s, 3, 12, 10) == 3.0  # 4, 5 start slow stretches; 6 on is back
    assert recovered_after_s(ok_per_s, 7, 12, 10) == 0.0  # never dropped
    assert recovered_after_s([10, 10, 0, 0, 0, 0], 2, 6, 10) is None  # not back before the end


def test_each_fault_is_reported_over_its_window_and_marked_on_the_plot() -> None:
    series = series_of([[0.5, 1.5, 2.5, 3.5, 7.5, 8.5, 9.5]], 10)
    faults = [
        Fault("node kill", "kill a node", 1.0, [(1.0, "SIGKILL node 3"), (2.0, "start node 3")], 3.0),
        Fault("server kill", "kill a server", 4.0, [(4.0, "SIGKILL server 1")], 4.5),
    ]
    rows = fault_rows(series, faults, baseline_per_s=1.0, money_off_minor=0)
    assert [(row["started_s"], row["window_end_s"]) for row in rows] == [(1.0, 4.0), (4.0, 10.0)]
    assert [row["failed"] for row in rows] == [{}, {"UNAVAILABLE": 3}]
    assert [row["longest_ok_gap_s"] for row in rows] == [1.0, 3.5]
    assert rows[1]["recovered_after_s"] == 3.0
    document = find_peak_document() | {"command": "chaos", "faults": rows}
    for key in ("peak_sustained_per_s", "peak_bounds", "steps"):
        del document[key]
    figure = draw(document)
    try:
        labels = [text.get_text() for text in figure.axes[0].texts]
        assert labels == ["1. node kill", "2. server kill"]
        assert "Faults (purple)" in figure.get_supxlabel()
    finally:
        plt.close(figure)
    printed = table(document | {"scenario": "chaos", "baseline_ok_per_s": 1.0, "money": _no_money()})
    assert "UNAVAILABLE 3" in printed and "server kill" in printed


def _no_money() -> dict[str, int]:
    return {"lost_or_duplicated_minor": 0, "missing_movements": 0, "duplicated_movements": 0}
