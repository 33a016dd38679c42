"""`python -m loadtest bench [--full] [--only FIGURE] [--backend B] [--profile DIR]`: the benchmarks, into
loadtest/results/latest.json (`--only`: some payments figures alone; `--profile`: py-spy profiles).
`python -m loadtest run --scenario double11`: a scenario's load, checked, reported under loadtest/results/.
`python -m loadtest find-peak --scenario double11`: the highest rate sustained within the scenario's bounds.
`python -m loadtest chaos [--short]`: the Double 11 mix on the three-node cluster under a fault schedule.
`python -m loadtest noisy [--short]`: a tenant floods far above its quota beside another's steady load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from loadtest import noisy
from loadtest.bench import BACKENDS, ONLY_CHOICES, RESULTS, Selection, run
from loadtest.chaos import FULL, SHORT, run_chaos, table
from loadtest.commands import EXIT_CHECK_FAILED, Options, find_peak_command, run_command
from loadtest.harness import HarnessError
from loadtest.profile import Profiles
from loadtest.scenario import ScenarioError, check_peak, load_scenario

EXIT_USAGE = 2


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure and write the results JSON")
    bench.add_argument("--quick", action="store_true", default=True, help="the default: a few minutes")
    bench.add_argument("--full", dest="quick", action="store_false", help="longer runs, steadier figures")
    bench.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    bench.add_argument(
        "--only", action="append", choices=sorted(ONLY_CHOICES), help="measure only this figure (repeatable)"
    )
    bench.add_argument("--backend", action="append", choices=BACKENDS, help="only this backend (repeatable)")
    bench.add_argument(
        "--profile", type=Path, metavar="DIR", help="record a py-spy profile of the server per load into DIR"
    )
    _load_arguments(commands.add_parser("run", help="run a scenario, check the ledger, write a report"))
    peak = commands.add_parser("find-peak", help="step the rate up to the highest one within the bounds")
    _load_arguments(peak)
    peak.add_argument("--p99-max-ms", type=float, help="the p99 bound (default: the scenario's [peak])")
    peak.add_argument("--error-rate-max", type=float, help="the error-rate bound, e.g. 0.001")
    peak.add_argument("--start-per-s", type=float, help="the first step's rate")
    peak.add_argument("--step-s", type=float, help="how long each step lasts")
    _cluster_arguments(commands.add_parser("chaos", help="load the cluster's servers while faults run"))
    _cluster_arguments(commands.add_parser("noisy", help="a tenant floods beside another's steady load"))
    args = parser.parse_args()
    if args.command == "bench":
        profiles = Profiles(args.profile) if args.profile else None
        selection = Selection(tuple(args.only or ()), tuple(args.backend or BACKENDS), profiles)
        _bench(args.quick, args.output, selection)
        return
    if args.command == "chaos":
        sys.exit(_chaos(args))
    if args.command == "noisy":
        sys.exit(_noisy(args))
    try:
        options = _options(args)
        command = run_command if args.command == "run" else find_peak_command
        sys.exit(command(options))
    except (ScenarioError, HarnessError) as error:
        print(f"loadtest: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", type=Path, required=True, help="a TOML file, or a name in loadtest/scenarios"
    )
    parser.add_argument("--endpoint", help="host:port of a running server (default: start one on SQLite)")
    parser.add_argument("--api-key", help="the key of a tenant with payments (default: JUBAO_API_KEY)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="client processes")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)


def _options(args: argparse.Namespace) -> Options:
    scenario = load_scenario(args.scenario)
    if args.command == "find-peak":
        peak = scenario.peak
        peak = dataclasses.replace(
            peak,
            p99_max_ms=_given(args.p99_max_ms, peak.p99_max_ms),
            error_rate_max=_given(args.error_rate_max, peak.error_rate_max),
            start_per_s=_given(args.start_per_s, peak.start_per_s),
            step_s=_given(args.step_s, peak.step_s),
        )
        check_peak(peak, "the command line")
        scenario = dataclasses.replace(scenario, peak=peak)
    return Options(scenario, args.workers, args.output_dir, args.endpoint, args.api_key)


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--short", action="store_true", help="short phases (the CI run)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="client processes")
    parser.add_argument("--keyspace", help="a keyspace to use and keep (default: a fresh one, dropped)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)


def _noisy(args: argparse.Namespace) -> int:
    outcome = noisy.run_noisy(
        noisy.SHORT if args.short else noisy.FULL, args.workers, args.output_dir, args.keyspace
    )
    print(noisy.summary(outcome.document))
    print(f"report: {outcome.json_path}")
    return 0 if outcome.passed else EXIT_CHECK_FAILED


def _chaos(args: argparse.Namespace) -> int:
    plan = SHORT if args.short else FULL
    outcome = run_chaos(plan, args.workers, args.output_dir, args.keyspace)
    print(table(outcome.document))
    print(f"report: {outcome.json_path}\nplot:   {outcome.png_path}")
    if outcome.passed:
        print(outcome.report.summary())
        return 0
    print(outcome.report.summary(), file=sys.stderr)
    return EXIT_CHECK_FAILED


def _bench(quick: bool, output: Path, selection: Selection) -> None:
    report = run(quick, output, selection)
    print(f"wrote {output}")
    for figure in report["figures"]:
        print(f"  {figure['name']:<36} {figure['value']:>12} {figure['unit']:<8} [{figure['backend']}]")


if __name__ == "__main__":
    main()
