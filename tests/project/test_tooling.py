"""The project's own tooling: make targets' exit codes and the pytest markers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TTL = "tests/storage/test_ttl.py"


def make_cassandra_status(node_exit: int) -> subprocess.CompletedProcess[str]:
    """`make cassandra-status` with a stand-in for scripts/cassandra/node.py that exits `node_exit`."""
    node = f"{sys.executable} -c 'import sys; print(\"node says\", sys.argv[1:]); sys.exit({node_exit})'"
    return subprocess.run(
        ["make", "--no-print-directory", "cassandra-status", f"CASSANDRA_NODE={node}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_cassandra_status_reports_a_stopped_node_without_failing() -> None:
    stopped = make_cassandra_status(3)
    assert (stopped.returncode, stopped.stdout) == (0, "node says ['status']\n")
    assert "Error" not in stopped.stderr
    assert make_cassandra_status(0).returncode == 0
    assert make_cassandra_status(1).returncode != 0  # running, but CQL does not answer


def test_the_cassandra_marker_selects_exactly_the_cassandra_tests() -> None:
    def collected(marker: str) -> list[str]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--collect-only",
                "-m",
                marker,
                TTL,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        return [line for line in result.stdout.splitlines() if "::" in line]

    cassandra, others = collected("cassandra"), collected("not cassandra")
    assert cassandra and all(test.endswith("[cassandra]") for test in cassandra)
    assert others and not any("cassandra" in test for test in others)
