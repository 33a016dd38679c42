"""The report's figure: one panel per criterion (rate, latency, error rate); for find-peak the steps'
judged windows and figures against the bounds; the title's verdict is the ledger check's. And why a
second can achieve more than it was offered: answers count in the second they come back."""

from __future__ import annotations

import time
from typing import Any

import matplotlib.pyplot as plt

from loadtest.engine import Recorder
from loadtest.plot import draw
from loadtest.stats import OK, Tick

BOUNDS = {"p99_max_ms": 50.0, "error_rate_max": 0.001, "step_s": 3, "settle_s": 1}


def second(number: int, ok: int, p99_ms: float, errors: int = 0) -> dict[str, Any]:
    latency = {"p50": p99_ms / 4, "p90": p99_ms / 2, "p99": p99_ms, "max": p99_ms}
    return {
        "second": number,
        "target_per_s": 10.0,
        "offered": ok + errors,
        "ok": ok,
        "errors": {"UNAVAILABLE": errors} if errors else {},
        "latency_ms": latency,
    }


def step(first_second: int, rate_per_s: float, passed: bool, p99_ms: float, errors: int) -> dict[str, Any]:
    measured = {"ok": 20, "errors": {"UNAVAILABLE": errors} if errors else {}, "latency_ms": {"p99": p99_ms}}
    return {"rate_per_s": rate_per_s, "passed": passed, "first_second": first_second, "measured": measured}


def find_peak_document() -> dict[str, Any]:
    return {
        "scenario": "double11_short",
        "command": "find-peak",
        "backend": "sqlite",
        "workers": 2,
        "peak_sustained_per_s": 10.0,
        "peak_bounds": BOUNDS,
        # The first step passes although one of its seconds is over the p99 bound.
        "steps": [step(0, 10.0, True, 40.0, 0), step(3, 16.0, False, 80.0, 2)],
        "seconds": [
            *(second(0, 10, 20), second(1, 10, 70), second(2, 10, 30)),
            *(second(3, 16, 60), second(4, 15, 90, errors=1), second(5, 16, 80, errors=1)),
        ],
        "check": {"passed": True},
    }


def legend_labels(axes: Any) -> list[str]:
    return [text.get_text() for text in axes.get_legend().get_texts()]


def test_find_peak_figure_shows_what_each_step_was_judged_on() -> None:
    figure = draw(find_peak_document())
    try:
        rates, latency, errors = figure.axes[:3]
        title = figure.get_suptitle()
        assert "peak sustained 10/s (p99 ≤ 50 ms, errors ≤ 0.10%); ledger check passed" in title
        assert {"step p99 (judged)", "p99 bound", "p99 per second"} <= set(legend_labels(latency))
        assert {"step error rate (judged)", "error-rate bound", "error rate per second"} <= set(
            legend_labels(errors)
        )
        drawn = [line.get_label() for line in latency.get_lines()]
        assert drawn.index("p99 per second") > drawn.index("max per second")  # p99 on top where equal
        labels = [text.get_text() for text in rates.texts]
        assert labels == ["10/s\npassed", "16/s\nFAILED"]
        assert all(float(text.get_fontsize()) >= 9 for text in rates.texts)
        note = figure.get_supxlabel()
        assert "whole window after its first 1 s" in note and "may cross a bound" in note
    finally:
        plt.close(figure)


def test_a_run_figure_has_no_steps_and_says_when_the_ledger_check_failed() -> None:
    document = find_peak_document() | {"command": "run", "check": {"passed": False}}
    for key in ("peak_sustained_per_s", "peak_bounds", "steps"):
        del document[key]
    figure = draw(document)
    try:
        assert figure.get_suptitle().endswith("; ledger check FAILED")
        assert "step p99 (judged)" not in legend_labels(figure.axes[1])
        assert "can achieve more than it was offered" in figure.get_supxlabel()
    finally:
        plt.close(figure)


def test_an_answer_counts_in_the_second_it_comes_back() -> None:
    """Why the per-second `ok` can exceed `offered`: a request sent late in second 0 and answered in
    second 1 is offered in second 0 and achieved in second 1."""
    ticks: list[Tick] = []
    recorder = Recorder(0, time.monotonic() - 0.5, ticks.append)
    recorder.offered("transfer")
    recorder.start_s -= 1.0  # a second goes by before the answer
    recorder.record("transfer", OK, 0.6)
    recorder.flush()
    assert [(tick.second, tick.offered, tick.ok) for tick in ticks] == [(0, 1, 0), (1, 0, 1)]
