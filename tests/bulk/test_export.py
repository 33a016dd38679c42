"""The statement export round-trips bit for bit: 1,000,000 entries on SQLite (Cassandra takes the same
path with fewer: writing a million journal rows there alone would take most of the test budget)."""

from __future__ import annotations

import datetime

import pyarrow.compute as pc
from jubao.bulk import schemas
from jubao_server.storage.contract import StorageBackend

from loadtest.journal import START_MS, STEP_MS, expected_entries, write_journal
from tests.bulk.support import FlightProcess, batch_id

DEMO_TENANT = "demo-bank"


async def test_an_export_round_trips_bit_for_bit(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    backend = store[0]
    accounts, per_account = (10, 100_000) if backend.name == "sqlite" else (2, 5_000)
    prefix = batch_id()
    account_ids = [f"{prefix}-{i}" for i in range(accounts)]
    await write_journal(backend, DEMO_TENANT, account_ids, per_account)
    with flight_process.client(keys[DEMO_TENANT]) as client:
        exported = client.export_entries(account_ids).read_all()
    expected = expected_entries(account_ids, per_account)
    assert exported.schema.equals(schemas.ENTRIES)
    assert exported.num_rows == accounts * per_account
    assert exported.equals(expected)


async def test_an_export_keeps_to_its_time_range(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    account_ids = [f"{batch_id()}-0"]
    await write_journal(store[0], DEMO_TENANT, account_ids, 1_000)
    start = datetime.datetime.fromtimestamp((START_MS + 100 * STEP_MS) / 1000, datetime.UTC)
    end = datetime.datetime.fromtimestamp((START_MS + 200 * STEP_MS) / 1000, datetime.UTC)
    with flight_process.client(keys[DEMO_TENANT]) as client:
        exported = client.export_entries(account_ids, start_time=start, end_time=end).read_all()
        unknown = client.export_entries([f"{batch_id()}-none"]).read_all()
    assert exported.column("entry_seq").to_pylist() == list(range(100, 200))
    assert pc.min(exported.column("time")).as_py() == start
    assert unknown.num_rows == 0
