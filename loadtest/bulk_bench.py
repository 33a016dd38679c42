"""Bulk plane figures, per backend, through a server started as `make run` starts it (the supervisor, its
gRPC and its Arrow Flight process):

* `flight_raw_mb_per_s`: a bare Arrow Flight DoGet of an in-memory table of the export's shape, no auth,
  no storage, on this machine in the same run: the ceiling the export reads against;
* `bulk_export_mb_per_s`: the statement export (ExportEntries) of a journal of `export_rows` entries
  written straight to storage in the ledger's layout (`loadtest/journal.py`), checked bit for bit;
* `bulk_transfers_applied_per_s`: an upload of `apply_rows` transfers, from the start of the upload to
  the last row applied by the ledger (`bulk_upload_mb_per_s` for the upload alone).

The Flight client runs in a child process of its own (`python -m loadtest.bulk_bench measure ...`):
the bench process has gRPC loaded, and the two must not share a process (apache/arrow#13300).
`python -m loadtest.bulk_bench run [--full] [--cassandra-keyspace KS]` measures these figures alone, on
SQLite (or Cassandra), through a server started as the bench starts it, and prints them with the time
each step took.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Final

from jubao_server.storage.config import CassandraSettings, SqliteSettings, StorageSettings

PAYEES: Final = 100
EXPORT_ACCOUNTS: Final = 10
RAW_REPEATS: Final = 5
APPLY_TIMEOUT_S: Final = 3_600.0

# A figure of `loadtest/results/latest.json` (see loadtest/report.py, which this child process cannot
# import: it loads gRPC).
Figure = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class BulkPlan:
    export_rows: int
    apply_rows: int

    @classmethod
    def of(cls, quick: bool) -> BulkPlan:
        return cls(200_000, 10_000) if quick else cls(1_000_000, 100_000)


@dataclasses.dataclass(frozen=True)
class BulkRun:
    """What the child process measures: the Flight server, the tenant's key, the accounts' prefix."""

    location: str
    api_key: str
    prefix: str
    plan: BulkPlan
    backend: str

    def argv(self) -> list[str]:
        plan = self.plan
        return [
            self.location,
            self.api_key,
            self.prefix,
            str(plan.export_rows),
            str(plan.apply_rows),
            self.backend,
        ]


def bulk_figures(endpoint: str, storage: StorageSettings, run: BulkRun) -> list[Figure]:
    """Open the upload's accounts (gRPC, at `endpoint`) and write the export's journal (`storage`) here,
    then measure in a child process without gRPC."""
    from loadtest.journal import write_journal  # noqa: PLC0415

    open_payroll_accounts(endpoint, run.api_key, run.prefix)
    tenant_id = run.api_key.split(".")[1]
    per_account = run.plan.export_rows // EXPORT_ACCOUNTS

    async def journal() -> None:
        from jubao_server.storage.factory import open_backend  # noqa: PLC0415

        opened = await open_backend(storage)
        try:
            await write_journal(opened, tenant_id, _export_accounts(run.prefix), per_account)
        finally:
            await opened.close()

    started_s = time.perf_counter()
    asyncio.run(journal())
    written_s = time.perf_counter() - started_s
    print(f"bench: journal of {run.plan.export_rows:,} entries written in {written_s:.1f} s")
    command = [sys.executable, "-m", "loadtest.bulk_bench", "measure", *run.argv()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bulk bench failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    figures: list[Figure] = json.loads(done.stdout.splitlines()[-1])
    return figures


def open_payroll_accounts(
    endpoint: str, api_key: str, prefix: str, payees: int = PAYEES, payers: int = 1
) -> list[str]:
    """`payers` settlement accounts `<prefix>-s<j>` that may go negative, and `payees` customer accounts
    `<prefix>-p<i>`; their ids, payers first."""
    from jubao.client import Client, ClientConfig  # noqa: PLC0415 (gRPC: the parent process only)
    from jubao.payments.v1 import payments_pb2 as pb  # noqa: PLC0415

    settlements = [f"{prefix}-s{j}" for j in range(payers)]
    ids = [*settlements, *_payees(prefix, payees)]
    with Client(ClientConfig(endpoint=endpoint, api_key=api_key)) as client:
        for account_id in ids:
            paying = account_id in settlements
            account = pb.Account(
                account_id=account_id,
                currency_code="CNY",
                kind=pb.ACCOUNT_KIND_SETTLEMENT if paying else pb.ACCOUNT_KIND_CUSTOMER,
                policy=pb.AccountPolicy(allow_negative=paying),
            )
            request = pb.OpenAccountRequest(request_id=f"open-{account_id}", account=account)
            client.payments.OpenAccount(request)
    return ids


def _payees(prefix: str, payees: int = PAYEES) -> list[str]:
    return [f"{prefix}-p{i}" for i in range(payees)]


def _export_accounts(prefix: str) -> list[str]:
    return [f"{prefix}-x{i}" for i in range(EXPORT_ACCOUNTS)]


def _figure(name: str, value: float, unit: str, backend: str, notes: str) -> Figure:
    return {"name": name, "value": value, "unit": unit, "backend": backend, "notes": notes}


# The child process: Arrow and the Flight client only.


def _raw_ceiling(table: Any) -> tuple[float, str]:
    """MB/s of a bare Flight DoGet of `table` (no auth, no storage), best of RAW_REPEATS."""
    from pyarrow import flight  # noqa: PLC0415

    class Bare(flight.FlightServerBase):  # type: ignore[misc]
        def do_get(self, context: Any, ticket: Any) -> Any:
            return flight.RecordBatchStream(table)

    server = Bare("grpc+tcp://127.0.0.1:0")
    threading.Thread(target=server.serve, daemon=True).start()
    client = flight.FlightClient(f"grpc+tcp://127.0.0.1:{server.port}")
    best_s = float("inf")
    for _ in range(RAW_REPEATS):
        started_s = time.perf_counter()
        client.do_get(flight.Ticket(b"table")).read_all()
        best_s = min(best_s, time.perf_counter() - started_s)
    client.close()
    server.shutdown()
    return table.nbytes / 2**20 / best_s, f"best of {RAW_REPEATS} DoGets"


def measure(run: BulkRun) -> list[Figure]:
    """(The child process.) The raw Flight ceiling, the export, the upload and its apply."""
    prefix, backend, apply_rows = run.prefix, run.backend, run.plan.apply_rows
    import pyarrow as pa  # noqa: PLC0415
    from jubao.bulk.client import BulkClient  # noqa: PLC0415
    from jubao.bulk.schemas import TRANSFERS  # noqa: PLC0415

    from loadtest.journal import expected_entries  # noqa: PLC0415

    figures: list[Figure] = []
    accounts = _export_accounts(prefix)
    expected = expected_entries(accounts, run.plan.export_rows // EXPORT_ACCOUNTS)
    raw_mb_per_s, raw_note = _raw_ceiling(expected)
    figures.append(
        _figure(
            "flight_raw_mb_per_s",
            round(raw_mb_per_s, 1),
            "MB/s",
            backend,
            f"bare pyarrow Flight DoGet of an in-memory {expected.num_rows:,}-row table of the export's "
            f"schema ({expected.nbytes / 2**20:.1f} MB), no auth, loopback, {raw_note}",
        )
    )
    with BulkClient(run.location, run.api_key) as client:
        started_s = time.perf_counter()
        exported = client.export_entries(accounts).read_all()
        export_s = time.perf_counter() - started_s
        if not exported.equals(expected):
            raise RuntimeError("the export does not round-trip bit for bit")
        export_mb_per_s = exported.nbytes / 2**20 / export_s
        figures.append(
            _figure(
                "bulk_export_mb_per_s",
                round(export_mb_per_s, 1),
                "MB/s",
                backend,
                f"ExportEntries of {exported.num_rows:,} entries ({EXPORT_ACCOUNTS} accounts, "
                f"{exported.nbytes / 2**20:.1f} MB of Arrow) through the Flight process, auth and storage "
                f"reads, in {export_s:.1f} s ({exported.num_rows / export_s:,.0f} entries/s), checked bit "
                f"for bit; {export_mb_per_s / raw_mb_per_s:.3f} of flight_raw_mb_per_s",
            )
        )
        rows = pa.table(
            {
                "request_id": [f"{prefix}-r{i}" for i in range(apply_rows)],
                "payer": [f"{prefix}-s0"] * apply_rows,
                "payee": [_payees(prefix)[i % PAYEES] for i in range(apply_rows)],
                "amount_minor": pa.array([1 + i % 1000 for i in range(apply_rows)], pa.int64()),
                "currency": ["CNY"] * apply_rows,
                "memo": ["bench"] * apply_rows,
            },
            schema=TRANSFERS,
        )
        batch = f"{prefix}-upload"
        started_s = time.perf_counter()
        receipt = client.upload_transfers(batch, rows)
        upload_s = time.perf_counter() - started_s
        upload = client.wait(batch, timeout_s=APPLY_TIMEOUT_S)
        applied_s = time.perf_counter() - started_s
    if upload.rows_applied != apply_rows:
        raise RuntimeError(
            f"{upload.rows_applied} of {apply_rows} rows applied ({upload.rows_failed} refused)"
        )
    figures.append(
        _figure(
            "bulk_upload_mb_per_s",
            round(receipt.bytes_sent / 2**20 / upload_s, 1),
            "MB/s",
            backend,
            f"DoPut of {apply_rows:,} transfers ({receipt.bytes_sent / 2**20:.1f} MB), validated and stored "
            f"durably as chunks, in {upload_s:.2f} s",
        )
    )
    figures.append(
        _figure(
            "bulk_transfers_applied_per_s",
            round(apply_rows / applied_s),
            "transfers/s",
            backend,
            f"{apply_rows:,}-row upload from its first byte to its last row applied by the ledger "
            f"(settlement account paying {PAYEES} payees) in {applied_s:.1f} s; every row applied",
        )
    )
    return figures


def run_alone(quick: bool, keyspace: str | None) -> list[Figure]:
    """The bulk figures alone, on a fresh SQLite file (or in the Cassandra `keyspace` of the local node),
    through a server started as `make bench` starts it (the supervisor, its gRPC and its Flight
    process); the accounts and the upload are named afresh each run."""
    from loadtest.harness import scratch_dir, serving  # noqa: PLC0415 (gRPC: not in the child)
    from loadtest.server_process import free_port  # noqa: PLC0415

    scratch = scratch_dir("bulk-bench")
    storage = StorageSettings(backend="sqlite", sqlite=SqliteSettings(path=scratch / "server.db"))
    settings = {"JUBAO_STORAGE__SQLITE__PATH": str(storage.sqlite.path)}
    if keyspace is not None:
        storage = StorageSettings(backend="cassandra", cassandra=CassandraSettings(keyspace=keyspace))
        settings = {"JUBAO_STORAGE__BACKEND": "cassandra", "JUBAO_STORAGE__CASSANDRA__KEYSPACE": keyspace}
    bulk_port = free_port()
    try:
        with serving(None, None, {**settings, "JUBAO_BULK__PORT": str(bulk_port)}) as target:
            location = f"grpc+tcp://127.0.0.1:{bulk_port}"
            prefix = f"bb{uuid.uuid4().hex[:8]}"
            run = BulkRun(location, target.api_key, prefix, BulkPlan.of(quick), storage.backend)
            return bulk_figures(target.endpoint, storage, run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """`measure LOCATION KEY PREFIX EXPORT_ROWS APPLY_ROWS BACKEND` (the child process) prints its figures
    as one JSON line; `run [--full]` measures the figures alone and prints them."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.bulk_bench")
    commands = parser.add_subparsers(dest="command", required=True)
    child = commands.add_parser("measure", help="the child process of the bench: Arrow Flight only")
    for name in ("location", "api_key", "prefix"):
        child.add_argument(name)
    child.add_argument("export_rows", type=int)
    child.add_argument("apply_rows", type=int)
    child.add_argument("backend")
    alone = commands.add_parser("run", help="the bulk figures alone, on SQLite")
    alone.add_argument("--full", action="store_true", help="full size (1,000,000 entries, 100,000 rows)")
    alone.add_argument("--cassandra-keyspace", help="on the local Cassandra node, in this keyspace")
    args = parser.parse_args(argv)
    if args.command == "run":
        started_s = time.perf_counter()
        figures = run_alone(not args.full, args.cassandra_keyspace)
        print(json.dumps(figures, indent=2))
        print(f"bench: bulk figures in {time.perf_counter() - started_s:.1f} s")
        return
    plan = BulkPlan(args.export_rows, args.apply_rows)
    print(json.dumps(measure(BulkRun(args.location, args.api_key, args.prefix, plan, args.backend))))


if __name__ == "__main__":
    main()
