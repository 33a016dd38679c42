"""The PNG of a load report, one panel per criterion: throughput (target, offered, achieved, errors), latency
percentiles and the error rate, per second. For find-peak each step's measured window is shaded and labelled
passed or failed, with the figures it was judged on (its whole-window p99 and error rate) against the
bounds: a per-second value may cross a bound inside a passing step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# Drawn in this order: max first and thin, so that p99 stays visible where the two are equal.
PERCENTILE_STYLES = (
    ("max", {"color": "tab:gray", "linewidth": 1, "linestyle": ":"}),
    ("p50", {"color": "tab:green", "linewidth": 1.2}),
    ("p90", {"color": "tab:olive", "linewidth": 1.2}),
    ("p99", {"color": "tab:red", "linewidth": 2, "marker": ".", "markersize": 4}),
)
# Latencies are drawn on a log scale, which needs a positive floor.
LATENCY_FLOOR_MS = 0.01
PASSED_COLOR, FAILED_COLOR, JUDGED_COLOR = "tab:green", "tab:red", "darkred"
FAULT_COLOR = "tab:purple"
LABEL_FONT_SIZE = 9
NOTE_FONT_SIZE = 8.5
BUCKETS_NOTE = (
    "Offered counts requests in the second they were sent (when due), achieved counts answers in the second "
    "they came back:\na second can achieve more than it was offered (answers to requests of the second "
    "before); over a whole load, offered = achieved + errors."
)
FAULTS_NOTE = (
    "Faults (purple): shaded from the first action to the last (a node's start lasts until CQL answers), "
    "a dashed line at each action (kill, start, SIGSTOP, SIGCONT)."
)
STEPS_NOTE = (
    "find-peak judges each step on its whole window after its first {settle_s:g} s (shaded): the step's p99 "
    "and error rate (dark red segments)\nagainst the bounds (dotted). Per-second values may cross a bound "
    "inside a step that passed."
)


def plot(document: dict[str, Any], path: Path) -> None:
    figure = draw(document)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw(document: dict[str, Any]) -> Figure:
    """The report's figure (the caller saves and closes it)."""
    rows = document["seconds"]
    seconds = [row["second"] + 0.5 for row in rows]  # each figure covers its second: drawn at its middle
    figure, (rates, latency, errors) = plt.subplots(
        3, 1, sharex=True, figsize=(14, 9.5), height_ratios=(3, 3, 1.6), layout="constrained"
    )
    _draw_rates(rates, seconds, rows)
    _draw_latency(latency, seconds, rows)
    _draw_error_rate(errors, seconds, rows)
    notes = [BUCKETS_NOTE]
    if "faults" in document:
        _mark_faults(document["faults"], rates, latency, errors)
        notes.append(FAULTS_NOTE)
    bounds = document.get("peak_bounds")
    if bounds is not None:
        _mark_steps(document, bounds, rates, latency, errors)
        notes.append(STEPS_NOTE.format(settle_s=bounds["settle_s"]))
    for axes in (rates, latency, errors):
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=LABEL_FONT_SIZE)
    errors.set_xlabel("seconds")
    figure.suptitle(_title(document))
    figure.supxlabel("\n".join(notes), x=0.01, ha="left", fontsize=NOTE_FONT_SIZE)
    return figure


def _draw_rates(axes: Any, seconds: list[float], rows: list[dict[str, Any]]) -> None:
    axes.plot(seconds, [row["target_per_s"] for row in rows], "k--", linewidth=1, label="target (arrivals)")
    offered = [row["offered"] for row in rows]
    # Offered wide and pale under achieved, so that both show where they are equal.
    axes.plot(
        seconds,
        offered,
        color="tab:blue",
        linewidth=4,
        alpha=0.4,
        label="offered (arrivals + follow-ups, by second sent)",
    )
    axes.plot(
        seconds, [row["ok"] for row in rows], color="tab:orange", label="achieved (ok, by second answered)"
    )
    failed = [sum(row["errors"].values()) for row in rows]
    if any(failed):
        axes.plot(seconds, failed, color="tab:red", linewidth=1, label="errors")
    axes.set_ylabel("requests / s")
    axes.set_ylim(bottom=0, top=max([1, *offered]) * 1.25)  # head room for the step labels
    axes.grid(alpha=0.3)


def _draw_latency(axes: Any, seconds: list[float], rows: list[dict[str, Any]]) -> None:
    for name, style in PERCENTILE_STYLES:
        values = [max(LATENCY_FLOOR_MS, row["latency_ms"][name]) if row["ok"] else None for row in rows]
        axes.plot(seconds, values, label=f"{name} per second", **style)
    axes.set_yscale("log")
    axes.set_ylabel("latency ms (from the due time)")
    axes.grid(alpha=0.3, which="both")


def _draw_error_rate(axes: Any, seconds: list[float], rows: list[dict[str, Any]]) -> None:
    axes.plot(
        seconds,
        [_error_rate_pct(row["ok"], sum(row["errors"].values())) for row in rows],
        color="tab:red",
        linewidth=1.2,
        label="error rate per second",
    )
    axes.set_ylabel("errors %")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)


def _error_rate_pct(ok: int, failed: int) -> float:
    return 100 * failed / (ok + failed) if ok + failed else 0.0


def _mark_faults(faults: list[dict[str, Any]], rates: Any, latency: Any, errors: Any) -> None:
    """Shade each fault from its start to its last action, draw a line at each action, name it on top."""
    for index, fault in enumerate(faults):
        for axes in (rates, latency, errors):
            axes.axvspan(fault["started_s"], fault["ended_s"], color=FAULT_COLOR, alpha=0.12, linewidth=0)
            for action in fault["actions"]:
                axes.axvline(action["at_s"], color=FAULT_COLOR, alpha=0.6, linewidth=1, linestyle="--")
        _label(
            rates,
            f"{index + 1}. {fault['name']}",
            (fault["started_s"], 0.97 - 0.1 * (index % 2)),
            FAULT_COLOR,
        )


def _mark_steps(
    document: dict[str, Any], bounds: dict[str, Any], rates: Any, latency: Any, errors: Any
) -> None:
    latency.axhline(bounds["p99_max_ms"], color=JUDGED_COLOR, linestyle=":", label="p99 bound")
    error_bound_pct = 100 * bounds["error_rate_max"]
    errors.axhline(error_bound_pct, color=JUDGED_COLOR, linestyle=":", label="error-rate bound")
    step_rates = []
    for index, step in enumerate(document["steps"]):
        start = step["first_second"] + bounds["settle_s"]
        end = step["first_second"] + bounds["step_s"]
        color = PASSED_COLOR if step["passed"] else FAILED_COLOR
        for axes in (rates, latency, errors):
            axes.axvspan(start, end, color=color, alpha=0.08, linewidth=0)
            axes.axvline(step["first_second"], color=color, alpha=0.5, linewidth=1)
        measured = step["measured"]
        first = index == 0
        latency.hlines(
            max(LATENCY_FLOOR_MS, measured["latency_ms"]["p99"]),
            start,
            end,
            color=JUDGED_COLOR,
            linewidth=3,
            label="step p99 (judged)" if first else None,
        )
        step_failed = sum(measured["errors"].values())
        step_rates.append(_error_rate_pct(measured["ok"], step_failed))
        errors.hlines(
            step_rates[-1],
            start,
            end,
            color=JUDGED_COLOR,
            linewidth=3,
            label="step error rate (judged)" if first else None,
        )
        verdict = "passed" if step["passed"] else "FAILED"
        label = f"{step['rate_per_s']:g}/s\n{verdict}"
        _label(rates, label, ((start + end) / 2, 0.97 - 0.13 * (index % 2)), color, "center")
    errors.set_ylim(top=max([2 * error_bound_pct, *step_rates]) * 1.2)


def _label(axes: Any, text: str, xy: tuple[float, float], color: str, ha: str = "left") -> None:
    """A boxed label at `xy`: x in data (seconds), y as a fraction of the panel's height."""
    axes.annotate(
        text,
        xy=xy,
        xycoords=("data", "axes fraction"),
        ha=ha,
        va="top",
        fontsize=LABEL_FONT_SIZE,
        color=color,
        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": color, "alpha": 0.9},
    )


def headline(document: dict[str, Any]) -> str:
    """What was run where: `double11 (run) on sqlite, 2 workers`."""
    return (
        f"{document['scenario']} ({document['command']}) on {document['backend']}, "
        f"{document['workers']} workers"
    )


def _title(document: dict[str, Any]) -> str:
    title = headline(document)
    bounds = document.get("peak_bounds")
    if "peak_sustained_per_s" in document and bounds is not None:
        title += (
            f": peak sustained {document['peak_sustained_per_s']:g}/s "
            f"(p99 ≤ {bounds['p99_max_ms']:g} ms, errors ≤ {bounds['error_rate_max']:.2%})"
        )
    check = document.get("check")
    if check is not None:
        title += "; ledger check " + ("passed" if check["passed"] else "FAILED")
    return title
