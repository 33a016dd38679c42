"""The project's own tooling: make targets' exit codes and the pytest markers."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_cluster_logs_show_a_cluster_of_another_checkout(tmp_path: Path) -> None:
    """`node.py cluster logs` with JUBAO_CASSANDRA_CLUSTER_DIR outside this checkout (the cluster another
    checkout started) prints the logs with their full paths (it failed on the path, and so did a node
    start that timed out, which shows the logs)."""
    logs = tmp_path / "node1" / "logs"
    logs.mkdir(parents=True)
    (logs / "system.log").write_text("INFO  the node started\n")
    (logs / "stdout.log").write_text("stdout line\n")
    command = [
        sys.executable,
        str(REPO / "scripts" / "cassandra" / "node.py"),
        "cluster",
        "logs",
        "--node",
        "1",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "JUBAO_CASSANDRA_CLUSTER_DIR": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"===== last 80 lines of {logs / 'system.log'} =====" in done.stdout
    assert "INFO  the node started" in done.stdout and "stdout line" in done.stdout


def test_a_node_start_waits_as_long_as_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """JUBAO_CASSANDRA_START_TIMEOUT_S sets how long `up` waits for CQL: the chaos runs give a node start
    15 minutes, since on a busy machine one took longer than the 115 s default, after which node.py stops
    the node (and starting it again only starts from scratch)."""
    spec = importlib.util.spec_from_file_location("node_py", REPO / "scripts" / "cassandra" / "node.py")
    assert spec is not None and spec.loader is not None
    node_py = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "node_py", node_py)  # its dataclasses look their module up
    spec.loader.exec_module(node_py)
    with socket.socket() as probe:  # a port nothing listens on: CQL never answers there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    node = dataclasses.replace(node_py.single_node(), native_port=port)
    monkeypatch.setenv("JUBAO_CASSANDRA_START_TIMEOUT_S", "0.5")
    with pytest.raises(node_py.NodeError, match=f"CQL did not answer on 127.0.0.1:{port} within 0s"):
        node_py.wait_ready(node, lambda: True)
    monkeypatch.setenv("JUBAO_CASSANDRA_START_TIMEOUT_S", "soon")
    with pytest.raises(node_py.NodeError, match="is not a positive number of seconds"):
        node_py.wait_ready(node, lambda: True)
