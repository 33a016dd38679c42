"""What a load leaves behind: the figure format of `loadtest/results/latest.json`, and the report of a
`run` or `find-peak` (JSON with every second, a PNG plot, a short text summary)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

from loadtest.check import CheckReport
from loadtest.engine import Segment
from loadtest.peak import Step
from loadtest.plot import headline, plot
from loadtest.scenario import Profile
from loadtest.stats import Window
from loadtest.tally import Tally

Figure = dict[str, Any]


def figure(name: str, value: float, unit: str, backend: str, notes: str) -> Figure:
    return {"name": name, "value": value, "unit": unit, "backend": backend, "notes": notes}


def machine() -> dict[str, Any]:
    load_1m, load_5m, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_1m_at_start": round(load_1m, 2),
        "load_average_5m_at_start": round(load_5m, 2),
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine()
    )


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def window_json(window: Window) -> dict[str, Any]:
    p50, p90, p99, top = window.latency_ms
    return {
        "offered": window.offered,
        "ok": window.ok,
        "errors": dict(window.errors),
        "offered_per_s": round(window.offered_per_s, 1),
        "achieved_per_s": round(window.achieved_per_s, 1),
        "transfers_per_s": round(window.transfers_per_s, 1),
        "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "max": top},
    }


def seconds_json(segment: Segment, profile: Profile, first_second: int = 0) -> list[dict[str, Any]]:
    """One row a second: the target rate, what was offered and achieved, latency percentiles, errors."""
    rows = []
    for second in range(segment.series.seconds):
        window = segment.series.second(second)
        row = {"second": first_second + second, "target_per_s": round(profile.rate_at(second + 0.5), 1)}
        rows.append(row | window_json(window))
    return rows


def step_json(step: Step) -> dict[str, Any]:
    return {"rate_per_s": step.rate_per_s, "passed": step.passed, "measured": window_json(step.window)}


def check_json(report: CheckReport, tally: Tally) -> dict[str, Any]:
    return {
        "passed": report.passed,
        "problems_total": report.problems_total,
        "problems": list(report.problems),
        "movements_checked": report.movements_checked,
        "accounts_checked": report.accounts_checked,
        "postings_read": report.postings_read,
        "missing_movements": report.missing_total,
        "duplicated_movements": report.duplicated_total,
        "balances_off_minor": report.balances_off_minor,
        "refused": tally.refused,
        "unknown_outcomes_resolved": tally.resolved,
        "unresolved": len(tally.unresolved),
    }


def write_report(document: dict[str, Any], output_dir: Path, stem: str) -> tuple[Path, Path]:
    """`<stem>.json` and `<stem>.png` in `output_dir`."""
    json_path = write_json(document, output_dir, stem)
    png_path = output_dir / f"{stem}.png"
    plot(document, png_path)
    return json_path, png_path


def write_json(document: dict[str, Any], output_dir: Path, stem: str) -> Path:
    """`<stem>.json` in `output_dir`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / f"{stem}.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    return json_path


def summary(document: dict[str, Any]) -> str:
    """A few lines for the end of a run or find-peak, from its report."""
    lines = [headline(document)]
    if "totals" in document:
        lines.append("  all       " + _figures_line(document["totals"]))
    for kind, figures in document.get("by_kind", {}).items():
        lines.append(f"  {kind:<9} " + _figures_line(figures))
    for step in document.get("steps", []):
        verdict = "passed" if step["passed"] else "FAILED"
        lines.append(f"  step {step['rate_per_s']:>8g}/s {verdict:<6} " + _figures_line(step["measured"]))
    if "peak_sustained_per_s" in document:
        bounds = document["peak_bounds"]
        lines.append(
            f"peak sustained: {document['peak_sustained_per_s']:g}/s (p99 <= {bounds['p99_max_ms']:g} ms, "
            f"error rate <= {bounds['error_rate_max']:.2%})"
        )
    return "\n".join(lines)


def _figures_line(figures: dict[str, Any]) -> str:
    latency = figures["latency_ms"]
    errors = ", ".join(f"{status} {count}" for status, count in figures["errors"].items()) or "no errors"
    return (
        f"offered {figures['offered']:>8,}  ok {figures['ok']:>8,} ({figures['achieved_per_s']:8.1f}/s)  "
        f"p50 {latency['p50']:7.1f}  p99 {latency['p99']:7.1f}  max {latency['max']:7.1f} ms  {errors}"
    )


def progress_line(second: int, window: Window, target_per_s: float) -> str:
    p50, _, p99, top = window.latency_ms
    errors = " ".join(f"{status}={count}" for status, count in window.errors)
    return (
        f"  {second:>5}s  target {target_per_s:7.0f}/s  offered {window.offered:6d}  ok {window.ok:6d}  "
        f"p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  max {top:8.1f} ms  {errors}"
    )
