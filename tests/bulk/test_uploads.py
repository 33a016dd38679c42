"""Uploads through the real Flight process, on SQLite and Cassandra: durable progress acknowledged,
resumable and exactly once, refusals naming column and row, tenants kept apart."""

from __future__ import annotations

import pyarrow as pa
import pytest
from jubao.bulk import schemas
from jubao.bulk.v1 import bulk_pb2
from jubao.errors import FailedPrecondition, InvalidArgument, NotFound, Reason

from tests.bulk.support import FlightProcess, batch_id, transfers


def test_an_upload_is_stored_and_committed(flight_process: FlightProcess, keys: dict[str, str]) -> None:
    with flight_process.client(keys["demo-bank"]) as client:
        batch = batch_id()
        receipt = client.upload_transfers(batch, transfers(40_000))
        assert (receipt.rows_received, receipt.rows_rejected, receipt.rows_sent) == (40_000, 0, 40_000)
        upload = client.get_upload(batch)
        assert upload.state == bulk_pb2.Upload.STATE_APPLYING
        assert (upload.rows_total, upload.rows_received, upload.dataset) == (
            40_000,
            40_000,
            "jubao.bulk.v1.UploadTransfers",
        )
        again = client.upload_transfers(batch, transfers(40_000))
        assert (again.rows_received, again.rows_sent) == (40_000, 0)


def test_bad_values_refuse_only_their_rows(flight_process: FlightProcess, keys: dict[str, str]) -> None:
    table = transfers(6).to_pylist()
    table[1]["amount_minor"] = -5
    table[2]["currency"] = "XYZ"
    table[3]["payee"] = "settlement"
    table[4]["request_id"] = "r-0"
    with flight_process.client(keys["demo-bank"]) as client:
        batch = batch_id()
        receipt = client.upload_transfers(batch, pa.Table.from_pylist(table, schema=schemas.TRANSFERS))
        assert (receipt.rows_received, receipt.rows_rejected) == (6, 4)
        assert client.get_upload(batch).rows_rejected == 4


@pytest.mark.parametrize(
    ("change", "column", "text"),
    [
        (lambda t: t.drop_columns(["payer"]), "payer", "missing column"),
        (lambda t: t.set_column(3, "amount_minor", pa.array([1.5] * 3)), "amount_minor", "int64 expected"),
        (lambda t: t.append_column("extra", pa.array([1, 2, 3])), "extra", "unknown column"),
    ],
)
def test_a_schema_that_does_not_match_refuses_the_message(
    flight_process: FlightProcess, keys: dict[str, str], change: object, column: str, text: str
) -> None:
    table = change(transfers(3))  # type: ignore[operator]
    with flight_process.client(keys["demo-bank"]) as client:
        batch = batch_id()
        with pytest.raises(InvalidArgument) as refused:
            client.upload(bulk_pb2.UploadTransfers(batch_id=batch), table)
        assert refused.value.reason == Reason.SCHEMA_MISMATCH
        assert refused.value.field_violations[0].field == column
        assert text in refused.value.field_violations[0].description
        assert client.get_upload(batch).rows_received == 0


def test_nulls_where_none_are_allowed_name_column_and_row(
    flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    rows = transfers(5).to_pylist()
    rows[3]["payer"] = None
    schema = pa.schema([f.with_nullable(True) for f in schemas.TRANSFERS])
    with flight_process.client(keys["demo-bank"]) as client, pytest.raises(InvalidArgument) as refused:
        client.upload(
            bulk_pb2.UploadTransfers(batch_id=batch_id()), pa.Table.from_pylist(rows, schema=schema)
        )
    assert refused.value.field_violations[0].field == "payer"
    assert "row 3" in refused.value.field_violations[0].description


def test_another_tenant_cannot_see_or_resume_a_batch(
    flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    batch = batch_id()
    with flight_process.client(keys["demo-bank"]) as bank:
        bank.upload_transfers(batch, transfers(10))
    with flight_process.client(keys["demo-platform"]) as platform:
        with pytest.raises(NotFound) as missing:
            platform.get_upload(batch)
        assert missing.value.reason == Reason.UPLOAD_NOT_FOUND
        with pytest.raises(NotFound):
            platform.results(batch).read_all()
        assert [info for info in platform.list_results() if batch.encode() in info.descriptor.command] == []
        receipt = platform.upload_transfers(batch, transfers(3, prefix="p"))
        assert receipt.rows_received == 3
    with flight_process.client(keys["demo-bank"]) as bank:
        assert bank.get_upload(batch).rows_received == 10


def test_rows_past_a_committed_upload_are_refused(
    flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    batch = batch_id()
    with flight_process.client(keys["demo-bank"]) as client:
        client.upload_transfers(batch, transfers(10))
        with pytest.raises(FailedPrecondition) as refused:
            client.upload_transfers(batch, transfers(12))
        assert refused.value.reason == Reason.UPLOAD_COMMITTED
