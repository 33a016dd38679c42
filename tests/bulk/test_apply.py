"""Uploads applied end to end: a gRPC server process applies what the Flight process received, through
the ledger's batch path, once per row, whatever crashes; the statement export round-trips."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from jubao.bulk import schemas
from jubao.bulk.v1 import bulk_pb2, bulk_pb2_grpc
from jubao.cli.main import app
from jubao.client import Client, ClientConfig, NotFound, Reason
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server.storage.contract import StorageBackend
from typer.testing import CliRunner

from loadtest.bulk_bench import open_payroll_accounts
from loadtest.server_process import ServerProcess
from tests.bulk.support import FlightProcess, batch_id, transfers

ROWS: Final = 1_500
PAYEES: Final = 10
# Payers in different ledger shards, so that the ledger applies rows side by side.
PAYERS: Final = 8
DEMO_TENANT: Final = "demo-bank"
APPLY_TIMEOUT_S: Final = 240.0
# Three chunks (bulk_chunk_rows_max): the server is killed once the first has its results, while it applies
# the next.
KILLED_ROWS: Final = 3_000


def _server(env: dict[str, str], log_path: Path) -> ServerProcess:
    """A gRPC server process (the test runs its own Flight process) that applies uploads promptly."""
    settings = {
        "JUBAO_BULK__ENABLED": "false",
        "JUBAO_BULK__JOB_POLL_MS": "100",
        "JUBAO_BULK__JOB_LEASE_MS": "2000",
        "JUBAO_PAYMENTS__SHARD_LEASE_MS": "2000",
        "JUBAO_TELEMETRY__LOG_LEVEL": "warning",
    }
    return ServerProcess.start(env | settings, log_path)


@pytest.fixture
def server(store: tuple[StorageBackend, dict[str, str]], tmp_path: Path) -> Iterator[ServerProcess]:
    process = _server(store[1], tmp_path / "server.log")
    try:
        yield process
    finally:
        process.kill()


def _payroll(rows: int, prefix: str, ids: list[str]) -> pa.Table:
    return transfers(rows, payers=ids[:PAYERS], prefix=f"{prefix}-r", payees=f"{prefix}-p")


def _balances(address: str, key: str, ids: list[str]) -> dict[str, int]:
    with Client(ClientConfig(endpoint=address, api_key=key)) as client:
        return {
            account_id: client.payments.GetAccount(
                pb.GetAccountRequest(account_id=account_id)
            ).account.balance.ledger_minor
            for account_id in ids
        }


def _wait(flight_process: FlightProcess, key: str, batch: str, until: str = "done") -> bulk_pb2.Upload:
    deadline_s = time.monotonic() + APPLY_TIMEOUT_S
    with flight_process.client(key) as client:
        while time.monotonic() < deadline_s:
            upload = client.get_upload(batch)
            if upload.done or (until == "started" and upload.rows_applied > 0):
                return upload
            time.sleep(0.05)
    raise AssertionError(f"upload {batch} not {until} in time")


def _expected(table: pa.Table) -> dict[str, int]:
    sums: dict[str, int] = {}
    for row in table.to_pylist():
        sums[row["payee"]] = sums.get(row["payee"], 0) + row["amount_minor"]
        sums[row["payer"]] = sums.get(row["payer"], 0) - row["amount_minor"]
    return sums


def test_an_upload_is_applied_once_with_a_result_per_row(
    server: ServerProcess, flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    key = keys[DEMO_TENANT]
    prefix = batch_id()
    ids = open_payroll_accounts(server.address, key, prefix, PAYEES, PAYERS)
    table = _payroll(ROWS, prefix, ids)
    rows = table.to_pylist()
    rows[7]["amount_minor"] = 0
    rows[8]["payee"] = f"{prefix}-nobody"
    table = pa.Table.from_pylist(rows, schema=schemas.TRANSFERS)
    batch = batch_id()
    with flight_process.client(key) as client:
        client.upload_transfers(batch, table)
        upload = _wait(flight_process, key, batch)
        results = client.results(batch).read_all()
    assert (upload.rows_applied, upload.rows_failed, upload.rows_rejected) == (ROWS - 2, 2, 1)
    assert results.schema.equals(schemas.TRANSFER_RESULTS)
    assert results.column("row").to_pylist() == list(range(ROWS))
    refused = results.filter(pc.equal(results.column("status"), schemas.REJECTED)).to_pylist()
    assert [(r["row"], r["code"], r["reason"]) for r in refused] == [
        (7, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        (8, "NOT_FOUND", "ACCOUNT_NOT_FOUND"),
    ]
    assert "amount_minor" in refused[0]["message"]
    applied = [r for r in results.to_pylist() if r["status"] == schemas.APPLIED]
    assert len({r["transfer_id"] for r in applied}) == ROWS - 2
    good = pa.Table.from_pylist([r for i, r in enumerate(rows) if i not in (7, 8)], schema=schemas.TRANSFERS)
    balances = _balances(server.address, key, ids)
    assert balances == {a: _expected(good).get(a, 0) for a in ids}
    with flight_process.client(key) as client:
        entries = client.export_entries(ids).read_all()
    assert entries.schema.equals(schemas.ENTRIES)
    assert entries.num_rows == 2 * (ROWS - 2)
    assert pc.sum(entries.column("amount_minor")).as_py() == 0
    assert set(entries.column("currency").to_pylist()) == {"CNY"}
    for account_id in ids:
        own = entries.filter(pc.equal(entries.column("account_id"), account_id))
        assert own.column("entry_seq").to_pylist() == list(range(1, own.num_rows + 1))
        assert own.column("balance_after_minor")[-1].as_py() == balances[account_id]


def test_a_server_killed_mid_apply_is_taken_over_and_nothing_applies_twice(
    store: tuple[StorageBackend, dict[str, str]],
    server: ServerProcess,
    flight_process: FlightProcess,
    keys: dict[str, str],
    tmp_path: Path,
) -> None:
    key = keys[DEMO_TENANT]
    prefix = batch_id()
    ids = open_payroll_accounts(server.address, key, prefix, PAYEES, PAYERS)
    table = _payroll(KILLED_ROWS, prefix, ids)
    batch = batch_id()
    with flight_process.client(key) as client:
        client.upload_transfers(batch, table)
    started = _wait(flight_process, key, batch, until="started")
    server.kill()
    assert not started.done
    successor = _server(store[1], tmp_path / "successor.log")
    try:
        upload = _wait(flight_process, key, batch)
        assert (upload.rows_applied, upload.rows_failed) == (KILLED_ROWS, 0)
        with flight_process.client(key) as client:
            results = client.results(batch).read_all()
        assert results.column("row").to_pylist() == list(range(KILLED_ROWS))
        assert len(set(results.column("transfer_id").to_pylist())) == KILLED_ROWS
        assert _balances(successor.address, key, ids) == {a: _expected(table).get(a, 0) for a in ids}
    finally:
        successor.kill()


def _listed(stub: bulk_pb2_grpc.BulkServiceStub) -> list[bulk_pb2.Upload]:
    """Every upload ListUploads pages through, two at a time."""
    uploads: list[bulk_pb2.Upload] = []
    token = ""
    for _ in range(1_000):
        page = stub.ListUploads(bulk_pb2.ListUploadsRequest(page_size=2, page_token=token))
        uploads += page.uploads
        token = page.next_page_token
        if not token:
            return uploads
    raise AssertionError("ListUploads never ended")


def test_the_grpc_service_and_the_cli_list_the_callers_uploads_only(
    server: ServerProcess, flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    batches = sorted(batch_id() for _ in range(3))
    with flight_process.client(keys[DEMO_TENANT]) as client:
        for rows, batch in enumerate(batches, start=1):
            client.upload_transfers(batch, transfers(rows, prefix=batch))
        over_flight = {batch: client.get_upload(batch) for batch in batches}
    with Client(ClientConfig(endpoint=server.address, api_key=keys[DEMO_TENANT])) as bank:
        listed = [u for u in _listed(bank.bulk) if u.batch_id in batches]
        got = bank.bulk.GetUpload(bulk_pb2.GetUploadRequest(batch_id=batches[0])).upload
    assert [(u.batch_id, u.rows_received) for u in listed] == [(b, i) for i, b in enumerate(batches, 1)]
    assert (got.batch_id, got.dataset, got.rows_total) == (
        batches[0],
        over_flight[batches[0]].dataset,
        over_flight[batches[0]].rows_total,
    )
    with Client(ClientConfig(endpoint=server.address, api_key=keys["demo-platform"])) as platform:
        assert [u for u in _listed(platform.bulk) if u.batch_id in batches] == []
        with pytest.raises(NotFound) as missing:
            platform.bulk.GetUpload(bulk_pb2.GetUploadRequest(batch_id=batches[0]))
    assert missing.value.reason == Reason.UPLOAD_NOT_FOUND
    options = ["--endpoint", server.address, "--api-key", keys[DEMO_TENANT], "--json"]
    result = CliRunner().invoke(app, [*options, "bulk", "list"], env={"JUBAO_ENDPOINT": None})
    assert result.exit_code == 0, result.output
    shown = {u["batchId"]: u for u in json.loads(result.stdout)["uploads"]}
    assert [int(shown[b]["rowsReceived"]) for b in batches] == [1, 2, 3]
    table = CliRunner().invoke(app, [*options[:-1], "bulk", "list"], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert all(batch in table.stdout for batch in batches)
