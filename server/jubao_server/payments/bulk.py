"""The payments datasets of the bulk plane: transfers uploaded in bulk (applied through the ledger's batch
path, each row's request id at most once) and the statement export (journal entries of accounts over a
time range, read straight from storage page by page and built into Arrow columns)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import pyarrow as pa
from google.protobuf.message import Message
from jubao.bulk import schemas
from jubao.bulk.v1 import bulk_pb2
from jubao.payments.v1 import payments_pb2 as pb
from jubao.reasons import FieldViolation, Reason

from jubao_server import limits
from jubao_server.bulk.arrow import ROW_COLUMN
from jubao_server.bulk.datasets import Apply, RowProblem, check_batch_id, parse
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, HeldElsewhere, truncated, unavailable
from jubao_server.payments.api import Idempotency, LedgerApi
from jubao_server.payments.batch import create_transfers
from jubao_server.payments.convert import id_violations, raise_if_any, transfer_command
from jubao_server.payments.model import Transfer
from jubao_server.payments.statements import first_entry_at, stored_account
from jubao_server.payments.tables import ENTRIES
from jubao_server.platform.idempotency import body_sha256
from jubao_server.platform.timestamps import time_ms
from jubao_server.storage.contract import Bound, ColumnPage, RowQuery, StorageBackend, Value
from jubao_server.tenancy.model import Product

UPLOAD_TRANSFERS: Final = bulk_pb2.UploadTransfers.DESCRIPTOR.full_name
EXPORT_ENTRIES: Final = bulk_pb2.ExportEntries.DESCRIPTOR.full_name
# The request's fields as the upload's columns name them.
_COLUMN_OF_FIELD: Final = {
    "request_id": "request_id",
    "currency_code": "currency",
    "memo": "memo",
    "legs[0].debit_account_id": "payer",
    "legs[0].credit_account_id": "payee",
    "legs[0].amount_minor": "amount_minor",
    "legs": "payee",
}


def transfer_request(row: dict[str, object]) -> pb.CreateTransferRequest:
    """The CreateTransferRequest an uploaded row stands for: the same checks and the same request body
    (so the same request id sent by RPC and in an upload is one request)."""
    leg = pb.Leg(
        debit_account_id=str(row["payer"]),
        credit_account_id=str(row["payee"]),
        amount_minor=int(row["amount_minor"]),  # type: ignore[call-overload]
    )
    return pb.CreateTransferRequest(
        request_id=str(row["request_id"]),
        currency_code=str(row["currency"]),
        legs=[leg],
        memo=str(row["memo"] or ""),
    )


@dataclasses.dataclass(frozen=True)
class TransfersUpload:
    """`UploadTransfers`: one transfer (one leg) per row."""

    name: str = UPLOAD_TRANSFERS
    product: Product = Product.PAYMENTS
    schemas: schemas.UploadSchemas = schemas.UPLOADS[UPLOAD_TRANSFERS]

    def batch_id(self, command: bytes) -> str:
        parsed = parse(bulk_pb2.UploadTransfers, command, "descriptor.cmd")
        return check_batch_id(parsed.batch_id)  # type: ignore[attr-defined]

    def applier(self, running: Any) -> Apply:
        """The ledger's batch path (`running` is this process's `LedgerApi`)."""
        ledger: LedgerApi = running
        return transfers_applier(ledger)

    def row_problems(self, rows: pa.RecordBatch) -> list[RowProblem]:
        problems = []
        for index, row in enumerate(rows.to_pylist()):
            try:
                transfer_command(transfer_request(row))
            except ApiError as error:
                problems.append(_problem(index, error.field_violations))
        return problems


def _problem(index: int, violations: Sequence[FieldViolation]) -> RowProblem:
    first = violations[0]
    return RowProblem(index, _COLUMN_OF_FIELD.get(first.field, first.field), first.description)


def transfers_applier(ledger: LedgerApi) -> Apply:
    """Applies uploaded transfers through the ledger's batch path; a row whose payer's shard another server
    holds is left to that server: UNAVAILABLE (SHARD_MOVED) raised, the chunk is applied again later."""

    async def apply(tenant_id: str, rows: pa.Table) -> pa.Table:
        requests = [transfer_request(row) for row in rows.to_pylist()]
        items = [(transfer_command(r), Idempotency(r.request_id, body_sha256(r))) for r in requests]
        outcomes = await create_transfers(ledger, tenant_id, items)
        for outcome in outcomes:
            if isinstance(outcome, HeldElsewhere):
                raise unavailable(Reason.SHARD_MOVED, f"a payer's ledger shard is held by {outcome.address}")
        return _results(rows.column(ROW_COLUMN).to_pylist(), requests, outcomes)  # type: ignore[arg-type]

    return apply


_OUTCOME_COLUMNS: Final = ("status", "transfer_id", "state", "code", "reason", "message")


def _results(
    row_numbers: list[int], requests: list[pb.CreateTransferRequest], outcomes: list[Transfer | ApiError]
) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in schemas.TRANSFER_RESULTS.names}
    for row, request, outcome in zip(row_numbers, requests, outcomes, strict=True):
        columns["row"].append(row)
        columns["request_id"].append(request.request_id)
        if isinstance(outcome, ApiError):
            values = (schemas.REJECTED, "", "", outcome.code.name, str(outcome.reason), outcome.message)
        else:
            values = (schemas.APPLIED, outcome.transfer_id, outcome.state.value, "", "", "")
        for name, value in zip(_OUTCOME_COLUMNS, values, strict=True):
            columns[name].append(value)
        columns["message"][-1] = truncated(values[-1], limits.bulk_result_message_bytes_max)
    return pa.table(columns, schema=schemas.TRANSFER_RESULTS)


@dataclasses.dataclass(frozen=True)
class EntriesExport:
    """`ExportEntries`: the journal entries of up to `bulk_export_accounts_max` accounts over a time
    range, account by account in entry order, read from storage page by page (the journal as
    materialized: on Cassandra an entry committed a moment ago may still be on its way)."""

    name: str = EXPORT_ENTRIES
    product: Product = Product.PAYMENTS
    schema: pa.Schema = schemas.ENTRIES

    def check(self, command: bytes) -> Message:
        parsed = parse(bulk_pb2.ExportEntries, command, "ticket")
        request: bulk_pb2.ExportEntries = parsed  # type: ignore[assignment]
        violations: list[FieldViolation] = []
        if not 1 <= len(request.account_ids) <= limits.bulk_export_accounts_max:
            bound = limits.bulk_export_accounts_max
            violations.append(FieldViolation("account_ids", f"1 to {bound} accounts"))
        for index, account_id in enumerate(request.account_ids):
            violations += id_violations(f"account_ids[{index}]", account_id)
        start_ms = time_ms(request, "start_time", violations)
        end_ms = time_ms(request, "end_time", violations)
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            violations.append(FieldViolation("end_time", "must not be before start_time"))
        raise_if_any(violations)
        return request

    async def read(
        self, backend: StorageBackend, clock: Clock, tenant_id: str, command: Message
    ) -> AsyncIterator[pa.RecordBatch]:
        request: bulk_pb2.ExportEntries = command  # type: ignore[assignment]
        start_ms = time_ms(request, "start_time", [])
        end_ms = time_ms(request, "end_time", [])
        builder = _EntryColumns()
        for account_id in request.account_ids:
            async for part in _account(backend, tenant_id, account_id, (start_ms, end_ms), builder):
                yield part
        if builder.rows:
            yield builder.flush()


async def _account(
    backend: StorageBackend,
    tenant_id: str,
    account_id: str,
    time_range: tuple[int | None, int | None],
    builder: _EntryColumns,
) -> AsyncIterator[pa.RecordBatch]:
    """One account's entries in the time range, added to `builder`; its batches once they are full."""
    start_ms, end_ms = time_range
    state = await stored_account(backend, tenant_id, account_id)
    if state is None:
        return
    first = 1
    if start_ms is not None:
        first = await first_entry_at(backend, tenant_id, account_id, start_ms, state.entry_seq)
    query = RowQuery(
        ENTRIES.partition(tenant_id, account_id),
        lower=Bound((first,), inclusive=True),
        upper=Bound((state.entry_seq,), inclusive=True),
        limit=limits.storage_page_rows_max,
    )
    # The next page is read (on a storage thread) while this one is added.
    reading = asyncio.ensure_future(backend.read_columns(query, _STORED_COLUMNS))
    try:
        for _ in range(limits.bulk_export_rows_max // limits.storage_page_rows_max + 1):
            page = await reading
            if page.next_after is not None:
                query = query.after(page.next_after)
                reading = asyncio.ensure_future(backend.read_columns(query, _STORED_COLUMNS))
            ended = builder.add(account_id, state.account.currency, page, end_ms)
            if builder.rows >= limits.bulk_export_batch_rows_max:
                yield builder.flush()
            if ended or page.next_after is None:
                return
    finally:
        reading.cancel()


# The stored columns of an entry the export reads, and the export's column of each.
_EXPORTED_OF_STORED: Final = {
    "entry_seq": "entry_seq",
    "transfer_id": "transfer_id",
    "leg_index": "leg_index",
    "entry_kind": "kind",
    "amount_minor": "amount_minor",
    "balance_after_minor": "balance_after_minor",
    "time_ms": "time",
}
_STORED_COLUMNS: Final = tuple(_EXPORTED_OF_STORED)


class _EntryColumns:
    """Entries gathered column by column, page by page (no Python work per entry), flushed as record
    batches of `ENTRIES`: the stored columns as lists, the account and its currency (the same for all of
    an account's entries) as runs."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Value]] = {name: [] for name in _EXPORTED_OF_STORED.values()}
        self._runs: list[tuple[str, str, int]] = []
        self.rows = 0

    def add(self, account_id: str, currency: str, page: ColumnPage, end_ms: int | None) -> bool:
        """Add a page of entries; True once an entry at or after `end_ms` was met (the export of this
        account ends there)."""
        times = page.columns["time_ms"]
        count = page.row_count
        if end_ms is not None:
            count = next((i for i, t in enumerate(times) if t >= end_ms), count)  # type: ignore[operator]
        for stored, exported in _EXPORTED_OF_STORED.items():
            values = page.columns[stored]
            self._columns[exported].extend(values if count == page.row_count else values[:count])
        self._runs.append((account_id, currency, count))
        self.rows += count
        return count < page.row_count

    def flush(self) -> pa.RecordBatch:
        arrays = {
            name: pa.array(self._columns[name], schemas.ENTRIES.field(name).type) for name in self._columns
        }
        for name, position in (("account_id", 0), ("currency", 1)):
            runs = [pa.repeat(pa.scalar(run[position], pa.string()), run[2]) for run in self._runs]
            arrays[name] = pa.concat_arrays(runs) if runs else pa.array([], pa.string())
        batch = pa.RecordBatch.from_arrays(
            [arrays[name] for name in schemas.ENTRIES.names], schema=schemas.ENTRIES
        )
        self._columns = {name: [] for name in self._columns}
        self._runs = []
        self.rows = 0
        return batch
