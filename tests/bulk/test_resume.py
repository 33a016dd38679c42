"""Exactly once across broken uploads: the client killed mid-upload, the Flight process killed
mid-upload; sending the same batch again stores every row once, in order, and nothing twice."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Final

from jubao.bulk import schemas
from jubao.errors import JubaoError
from jubao_server.bulk.arrow import ROW_COLUMN, from_ipc, with_rows
from jubao_server.bulk.store import BulkStore
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.contract import StorageBackend

from tests.bulk.support import REPO, FlightProcess, batch_id, transfers

ROWS: Final = 100_000
KILL_AFTER_ROWS: Final = 40_000
DEMO_TENANT: Final = "demo-bank"

# Uploads, and stops in the middle (waiting to be killed) once KILL_AFTER_ROWS rows are acknowledged.
_CLIENT: Final = """
import sys, time
from jubao.bulk.client import BulkClient
from tests.bulk.support import transfers
location, key, batch, rows, stop_after = sys.argv[1:6]
def progress(sent, _bytes):
    print(sent, flush=True)
    if sent >= int(stop_after):
        time.sleep(600)
with BulkClient(location, key) as client:
    client.upload_transfers(batch, transfers(int(rows)), progress=progress)
"""


async def stored_rows(backend: StorageBackend, batch: str) -> tuple[list[int], list[str]]:
    """Row numbers and request ids of every accepted row stored for the batch, in chunk order."""
    numbers: list[int] = []
    ids: list[str] = []
    async for chunk in BulkStore(backend, SYSTEM_CLOCK).chunks(DEMO_TENANT, batch):
        table = from_ipc(chunk.data, with_rows(schemas.TRANSFERS))
        numbers += table.column(ROW_COLUMN).to_pylist()
        ids += table.column("request_id").to_pylist()
    return numbers, ids


def _upload_until_killed(location: str, key: str, batch: str) -> None:
    """Upload from a client process, and SIGKILL it once it was told KILL_AFTER_ROWS rows are stored."""
    script = [sys.executable, "-c", _CLIENT, location, key, batch, str(ROWS), str(KILL_AFTER_ROWS)]
    client = subprocess.Popen(script, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    for line in client.stdout:
        if int(line) >= KILL_AFTER_ROWS:
            break
    client.kill()
    client.wait()


async def test_a_client_killed_mid_upload_resumes_exactly_once(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    batch = batch_id()
    _upload_until_killed(flight_process.location, keys[DEMO_TENANT], batch)
    with flight_process.client(keys[DEMO_TENANT]) as resumed:
        before = resumed.get_upload(batch).rows_received
        assert KILL_AFTER_ROWS <= before < ROWS
        receipt = resumed.upload_transfers(batch, transfers(ROWS))
    assert (receipt.rows_received, receipt.rows_sent) == (ROWS, ROWS - before)
    numbers, ids = await stored_rows(store[0], batch)
    assert numbers == list(range(ROWS))
    assert ids == [f"r-{i}" for i in range(ROWS)]


async def test_a_flight_process_killed_mid_upload_resumes_exactly_once(
    store: tuple[StorageBackend, dict[str, str]],
    flight_process: FlightProcess,
    keys: dict[str, str],
    tmp_path: Path,
) -> None:
    batch = batch_id()
    reached = threading.Event()
    killed = threading.Event()
    failures: list[JubaoError] = []

    def upload() -> None:
        def progress(sent: int, _bytes: int) -> None:
            if sent >= KILL_AFTER_ROWS and not reached.is_set():
                reached.set()
                killed.wait(60)

        try:
            with flight_process.client(keys[DEMO_TENANT]) as client:
                client.upload_transfers(batch, transfers(ROWS), progress=progress)
        except JubaoError as error:
            failures.append(error)

    uploader = threading.Thread(target=upload)
    uploader.start()
    assert reached.wait(120)
    flight_process.kill()
    killed.set()
    uploader.join(60)
    assert len(failures) == 1, "the upload broke with the process"
    restarted = FlightProcess.start(store[1], tmp_path / "flight-2.log")
    try:
        with restarted.client(keys[DEMO_TENANT]) as client:
            before = client.get_upload(batch).rows_received
            assert before < ROWS
            receipt = client.upload_transfers(batch, transfers(ROWS))
            assert (receipt.rows_received, receipt.rows_sent) == (ROWS, ROWS - before)
    finally:
        restarted.kill()
    numbers, ids = await stored_rows(store[0], batch)
    assert numbers == list(range(ROWS))
    assert len(set(ids)) == ROWS
