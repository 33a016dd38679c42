"""`python -m loadtest bench [--full]`: run the benchmarks and write loadtest/results/latest.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from loadtest.bench import RESULTS, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure and write the results JSON")
    bench.add_argument("--quick", action="store_true", default=True, help="the default: under 5 minutes")
    bench.add_argument("--full", dest="quick", action="store_false", help="longer runs, steadier figures")
    bench.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    report = run(args.quick, args.output)
    print(f"wrote {args.output}")
    for figure in report["figures"]:
        print(f"  {figure['name']:<36} {figure['value']:>12} {figure['unit']:<8} [{figure['backend']}]")


if __name__ == "__main__":
    main()
