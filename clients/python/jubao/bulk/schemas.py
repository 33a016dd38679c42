"""The Arrow schema of every bulk dataset, defined once: the server validates uploads and builds downloads
with these very objects, and the SDK converts files to them. `protos/jubao/bulk/v1/bulk.proto` documents
each one beside its command.

Money is int64 minor units with a currency column, never floats; times are UTC milliseconds.
"""

from __future__ import annotations

import dataclasses
from typing import Final

import pyarrow as pa

from jubao.bulk.v1 import bulk_pb2
from jubao.cocreation.v1 import cocreation_pb2
from jubao.fundta.v1 import fundta_pb2


def _required(name: str, kind: pa.DataType) -> pa.Field:
    return pa.field(name, kind, nullable=False)


# UploadTransfers: one leg per row.
TRANSFERS: Final = pa.schema(
    [
        _required("request_id", pa.string()),
        _required("payer", pa.string()),
        _required("payee", pa.string()),
        _required("amount_minor", pa.int64()),
        _required("currency", pa.string()),
        pa.field("memo", pa.string(), nullable=True),
    ]
)

# The result of each uploaded row, in row order: applied, or rejected (at validation or by the ledger).
TRANSFER_RESULTS: Final = pa.schema(
    [
        _required("row", pa.int64()),
        _required("request_id", pa.string()),
        _required("status", pa.string()),
        _required("transfer_id", pa.string()),
        _required("state", pa.string()),
        _required("code", pa.string()),
        _required("reason", pa.string()),
        _required("message", pa.string()),
    ]
)

# ExportEntries: journal entries, account by account in entry order.
ENTRIES: Final = pa.schema(
    [
        _required("account_id", pa.string()),
        _required("entry_seq", pa.int64()),
        _required("transfer_id", pa.string()),
        _required("leg_index", pa.int32()),
        _required("kind", pa.string()),
        _required("amount_minor", pa.int64()),
        _required("currency", pa.string()),
        _required("balance_after_minor", pa.int64()),
        _required("time", pa.timestamp("ms", tz="UTC")),
    ]
)

# ExportConfirmations (jubao.fundta.v1): a closed trade date's confirmations.
CONFIRMATIONS: Final = pa.schema(
    [
        _required("order_id", pa.string()),
        _required("fund_code", pa.string()),
        _required("trade_date", pa.string()),
        _required("distributor_id", pa.string()),
        _required("trading_account_id", pa.string()),
        _required("fund_account_id", pa.string()),
        _required("kind", pa.string()),
        _required("status", pa.string()),
        _required("return_code", pa.string()),
        _required("reason", pa.string()),
        _required("applied_amount_minor", pa.int64()),
        _required("applied_shares", pa.decimal128(20, 2)),
        _required("amount_minor", pa.int64()),
        _required("shares", pa.decimal128(20, 2)),
        _required("fee_minor", pa.int64()),
        _required("nav", pa.string()),
        _required("remainder_minor", pa.string()),
        _required("currency", pa.string()),
    ]
)

# ScoreDatasetRows (jubao.cocreation.v1): a model's scores over the rows of one of the caller's datasets:
# each row's position in the uploaded dataset, its join key's token, and the predicted probability in
# millionths (an integer: no float crosses the wire).
SCORES: Final = pa.schema(
    [
        _required("row", pa.int64()),
        _required("token", pa.string()),
        _required("score_ppm", pa.int64()),
    ]
)

# Row statuses of a results table.
APPLIED: Final = "applied"
REJECTED: Final = "rejected"


@dataclasses.dataclass(frozen=True)
class UploadSchemas:
    """An upload dataset: the schema of its rows, of its results, and the column that names each row
    (its request id, unique in an upload)."""

    rows: pa.Schema
    results: pa.Schema
    row_id_column: str


UPLOADS: Final[dict[str, UploadSchemas]] = {
    bulk_pb2.UploadTransfers.DESCRIPTOR.full_name: UploadSchemas(TRANSFERS, TRANSFER_RESULTS, "request_id"),
}

EXPORTS: Final[dict[str, pa.Schema]] = {
    bulk_pb2.ExportEntries.DESCRIPTOR.full_name: ENTRIES,
    fundta_pb2.ExportConfirmations.DESCRIPTOR.full_name: CONFIRMATIONS,
    cocreation_pb2.ScoreDatasetRows.DESCRIPTOR.full_name: SCORES,
}
