"""`python -m loadtest run` and `find-peak`: a scenario against a server (started here on SQLite when no
endpoint is given), the post-run check, and the report under `loadtest/results/`."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.check import CheckReport
from loadtest.engine import Engine, OpenLoop, Segment
from loadtest.harness import Run, load, prepare, serving, verify
from loadtest.peak import Step, passes, peak_of, search
from loadtest.report import (
    check_json,
    machine,
    now_iso,
    progress_line,
    seconds_json,
    step_json,
    summary,
    window_json,
    write_report,
)
from loadtest.scenario import Profile, Scenario
from loadtest.stats import Window
from loadtest.tally import Tally

EXIT_CHECK_FAILED = 1


@dataclasses.dataclass(frozen=True)
class Options:
    scenario: Scenario
    workers: int
    output_dir: Path
    endpoint: str | None = None
    api_key: str | None = None

    @property
    def backend(self) -> str:
        return f"endpoint {self.endpoint}" if self.endpoint else "sqlite"


@dataclasses.dataclass(frozen=True)
class PeakOutcome:
    steps: tuple[Step, ...]
    document: dict[str, Any]
    tally: Tally

    @property
    def peak_per_s(self) -> float:
        return peak_of(self.steps)


def run_command(options: Options) -> int:
    scenario = options.scenario
    started_at = now_iso()
    with serving(options.endpoint, options.api_key) as target:
        run, setup = prepare(target, scenario)
        print(
            f"{scenario.name}: {len(run.names.every()):,} accounts opened and funded; "
            f"{scenario.profile.duration_s:.0f} s of load from {options.workers} workers"
        )
        with Engine(options.workers, _printer(scenario.profile)) as engine:
            segment = load(engine, run, OpenLoop(scenario.profile))
        tally = Tally.merge([setup, segment.tally])
        report = verify(target, tally, run.names.every())
    document = _document("run", options, started_at) | {
        "totals": window_json(segment.series.window(0, segment.series.seconds)),
        "by_kind": {kind: window_json(window) for kind, window in segment.kinds},
        "seconds": seconds_json(segment, scenario.profile),
        "check": check_json(report, tally),
    }
    return finish(document, options.output_dir, f"{scenario.name}-run", report)


def find_peak_command(options: Options) -> int:
    started_at = now_iso()
    with serving(options.endpoint, options.api_key) as target:
        run, setup = prepare(target, options.scenario)
        with Engine(options.workers) as engine:
            outcome = find_peak(engine, run, print_step)
        tally = Tally.merge([setup, outcome.tally])
        report = verify(target, tally, run.names.every())
    document = (
        _document("find-peak", options, started_at) | outcome.document | {"check": check_json(report, tally)}
    )
    return finish(document, options.output_dir, f"{options.scenario.name}-find-peak", report)


def find_peak(engine: Engine, run: Run, on_step: Callable[[float, Window, bool], None]) -> PeakOutcome:
    """Step the rate of the run's scenario (its mix at constant rates) up to the peak; see `peak.py`."""
    plan = run.scenario.peak
    segments: list[Segment] = []

    def measure(profile: Profile) -> Window:
        segment = load(engine, run, OpenLoop(profile))
        segments.append(segment)
        window = segment.series.window(int(plan.settle_s), int(plan.step_s))
        on_step(profile.rate_at(0), window, passes(window, plan))
        return window

    steps = search(plan, measure)
    rows: list[dict[str, Any]] = []
    step_rows = []
    for index, (step, segment) in enumerate(zip(steps, segments, strict=True)):
        step_rows.append(step_json(step) | {"first_second": len(rows)})
        profile = Profile.constant(step.rate_per_s, plan.step_s)
        rows += [row | {"step": index} for row in seconds_json(segment, profile, len(rows))]
    bounds = {
        "p99_max_ms": plan.p99_max_ms,
        "error_rate_max": plan.error_rate_max,
        "step_s": plan.step_s,
        "settle_s": plan.settle_s,
    }
    document = {
        "peak_sustained_per_s": peak_of(steps),
        "peak_bounds": bounds,
        "steps": step_rows,
        "seconds": rows,
    }
    return PeakOutcome(tuple(steps), document, Tally.merge(segment.tally for segment in segments))


def print_step(rate_per_s: float, window: Window, passed: bool) -> None:
    p50, _, p99, top = window.latency_ms
    errors = ", ".join(f"{status} {count}" for status, count in window.errors) or "no errors"
    print(
        f"  step {rate_per_s:8g}/s: ok {window.achieved_per_s:8.1f}/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
        f"max {top:7.1f} ms  {errors}: {'passed' if passed else 'FAILED'}",
        flush=True,
    )


def finish(document: dict[str, Any], output_dir: Path, stem: str, report: CheckReport) -> int:
    """Write the report and its plot, print the summary; a failed check fails the command, loudly."""
    json_path, png_path = write_report(document, output_dir, stem)
    print(summary(document))
    print(f"report: {json_path}\nplot:   {png_path}")
    if report.passed:
        print(report.summary())
        return 0
    print(report.summary(), file=sys.stderr)
    return EXIT_CHECK_FAILED


def _document(command: str, options: Options, started_at: str) -> dict[str, Any]:
    return {
        "command": command,
        "scenario": options.scenario.name,
        "description": options.scenario.description,
        "backend": options.backend,
        "workers": options.workers,
        "started_at": started_at,
        "machine": machine(),
    }


def _printer(profile: Profile) -> Callable[[int, Window], None]:
    def show(second: int, window: Window) -> None:
        print(progress_line(second, window, profile.rate_at(second + 0.5)), flush=True)

    return show
