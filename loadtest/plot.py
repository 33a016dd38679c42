"""The PNG of a load report: throughput (target, offered, achieved) and latency percentiles per second;
for find-peak also the p99 bound and each step's rate, passed or failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

PERCENTILE_STYLES = (("p50", "tab:green"), ("p90", "tab:olive"), ("p99", "tab:red"), ("max", "tab:gray"))
# Latencies are drawn on a log scale, which needs a positive floor.
LATENCY_FLOOR_MS = 0.01


def plot(document: dict[str, Any], path: Path) -> None:
    rows = document["seconds"]
    seconds = [row["second"] for row in rows]
    figure, (rates, latency) = plt.subplots(2, 1, sharex=True, figsize=(11, 7), layout="constrained")
    target = [row["target_per_s"] for row in rows]
    rates.plot(seconds, target, "k--", linewidth=1, label="target (arrivals)")
    rates.plot(seconds, [row["offered"] for row in rows], color="tab:blue", label="offered (+ settlements)")
    rates.plot(seconds, [row["ok"] for row in rows], color="tab:orange", label="achieved (ok)")
    errors = [sum(row["errors"].values()) for row in rows]
    if any(errors):
        rates.plot(seconds, errors, color="tab:red", linewidth=1, label="errors")
    rates.set_ylabel("requests / s")
    rates.legend(loc="upper left")
    rates.grid(alpha=0.3)
    for name, color in PERCENTILE_STYLES:
        values = [max(LATENCY_FLOOR_MS, row["latency_ms"][name]) if row["ok"] else None for row in rows]
        latency.plot(seconds, values, color=color, label=name)
    latency.set_yscale("log")
    latency.set_ylabel("latency ms (from the due time)")
    latency.set_xlabel("seconds")
    latency.grid(alpha=0.3, which="both")
    _mark_steps(document, rates, latency)
    latency.legend(loc="upper left")
    figure.suptitle(_title(document))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _mark_steps(document: dict[str, Any], rates: Any, latency: Any) -> None:
    bounds = document.get("peak_bounds")
    if bounds is None:
        return
    latency.axhline(bounds["p99_max_ms"], color="tab:red", linestyle=":", label="p99 bound")
    for step in document["steps"]:
        color = "tab:green" if step["passed"] else "tab:red"
        rates.axvline(step["first_second"], color=color, alpha=0.4, linewidth=1)
        label = f"{step['rate_per_s']:g}/s {'ok' if step['passed'] else 'fail'}"
        rates.annotate(label, (step["first_second"], step["rate_per_s"]), fontsize=7, color=color)


def headline(document: dict[str, Any]) -> str:
    """What was run where: `double11 (run) on sqlite, 2 workers`."""
    return (
        f"{document['scenario']} ({document['command']}) on {document['backend']}, "
        f"{document['workers']} workers"
    )


def _title(document: dict[str, Any]) -> str:
    title = headline(document)
    if "peak_sustained_per_s" in document:
        title += f": peak sustained {document['peak_sustained_per_s']:g}/s"
    check = document.get("check")
    if check is not None:
        title += ", check " + ("passed" if check["passed"] else "FAILED")
    return title
