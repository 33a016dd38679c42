"""The protos are the API: the Java client of `clients/java` (stubs generated from `protos/` by Maven) makes
a first payment against a real server process, and the Python SDK reads the same balances and statement.

Maven and a JDK 17 are needed (as for the Cassandra node); without them the test fails in CI and under
`make test` (JUBAO_TEST_CASSANDRA=required says the JDK is there), and skips loudly elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from jubao.client import Client, ClientConfig
from jubao.payments.v1 import payments_pb2 as pb

from loadtest.server_process import ServerProcess
from tests.platform.harness import demo_keys

REPO: Final = Path(__file__).resolve().parents[2]
JAVA_CLIENT: Final = REPO / "clients" / "java"
BUILD_TIMEOUT_S: Final = 900.0
RUN_TIMEOUT_S: Final = 120.0
TENANT: Final = "demo-bank"


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is not None:
        return found
    message = f"{tool} is not installed: the Java client test cannot run (install JDK 17 + Maven)"
    if os.environ.get("CI") == "true" or os.environ.get("JUBAO_TEST_CASSANDRA") == "required":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def classpath() -> str:
    """Build the Java client (generating its stubs from protos/ and running its unit tests)."""
    mvn = _require("mvn")
    _require("java")
    built = subprocess.run(
        [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(JAVA_CLIENT / "pom.xml"), "package"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert built.returncode == 0, f"mvn package: exit {built.returncode}\n{built.stdout}{built.stderr}"
    dependencies = (JAVA_CLIENT / "target" / "classpath.txt").read_text().strip()
    return f"{dependencies}{os.pathsep}{JAVA_CLIENT / 'target' / 'classes'}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"JUBAO_STORAGE__SQLITE__PATH": str(tmp_path / "jubao.db"), "JUBAO_TELEMETRY__LOG_LEVEL": "warning"}
    process = ServerProcess.start(env, tmp_path / "server.log")
    try:
        yield process
    finally:
        process.kill()


def _run_java(classpath: str, server: ServerProcess, key: str, prefix: str) -> dict[str, list[str]]:
    """EndToEnd's `key value` lines, the values of each key in order."""
    done = subprocess.run(
        ["java", "-cp", classpath, "dev.jubao.client.EndToEnd", server.address, key, prefix],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"EndToEnd: exit {done.returncode}\n{done.stdout}{done.stderr}"
    lines: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        words = line.split(" ")
        width = 2 if words[0] in ("balance", "entry") else 1  # "balance ACCOUNT", "entry ACCOUNT"
        lines.setdefault(" ".join(words[:width]), []).append(" ".join(words[width:]))
    return lines


def test_a_first_payment_from_java_reads_the_same_through_python(
    classpath: str, server: ServerProcess
) -> None:
    key = demo_keys()[TENANT]
    prefix = f"java-{uuid.uuid4().hex[:8]}"
    bank, alice, bob = (f"{prefix}-{name}" for name in ("bank", "alice", "bob"))
    shown = _run_java(classpath, server, key, prefix)
    assert shown["tenant"] == [TENANT]
    assert shown["retried"] == shown["funded"], "a retry with the same request id is applied once"
    assert shown["state"] == ["TRANSFER_STATE_COMPLETED"] * 2
    assert shown["overdraft"] == ["FAILED_PRECONDITION INSUFFICIENT_FUNDS"]
    assert shown[f"balance {bank}"] == ["-10000"]
    assert shown[f"balance {alice}"] == ["7500"]
    assert shown[f"balance {bob}"] == ["2500"]
    assert shown[f"entry {alice}"] == ["1 10000 10000", "2 -2500 7500"]
    with Client(ClientConfig(endpoint=server.address, api_key=key)) as client:
        balances = {
            account: client.payments.GetAccount(pb.GetAccountRequest(account_id=account)).account.balance
            for account in (bank, alice, bob)
        }
        entries = client.payments.ListEntries(pb.ListEntriesRequest(account_id=alice, page_size=10)).entries
        funded = client.payments.GetTransfer(pb.GetTransferRequest(transfer_id=shown["funded"][0])).transfer
    assert {a: b.ledger_minor for a, b in balances.items()} == {bank: -10_000, alice: 7_500, bob: 2_500}
    assert [(e.entry_seq, e.amount_minor, e.balance_after_minor) for e in entries] == [
        (1, 10_000, 10_000),
        (2, -2_500, 7_500),
    ]
    assert [e.transfer_id for e in entries] == [shown["funded"][0], shown["paid"][0]]
    assert funded.state == pb.TRANSFER_STATE_COMPLETED
