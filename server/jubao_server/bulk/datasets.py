"""Datasets: what a product brings to the bulk plane (`ProductSpec.datasets`). An upload dataset names its
command, its product, its Arrow schemas (`jubao.bulk.schemas`), how its command names the batch and how
each row is checked, and gives the function that applies its rows from the running product (in the gRPC
server process: it needs the product's shard owners). An export dataset names its command, product and
schema and reads its Arrow batches straight from storage (in the Flight process). An ingest dataset is
stored by its product as it arrives, with no apply step (co-creation's datasets, whose schema each
command's dataset declares): it opens an `Ingest` for a command, which receives the DoPut's messages.

Commands travel as a `google.protobuf.Any` holding one of the `jubao.bulk.v1` command messages, the way
Flight SQL carries its commands in a `FlightDescriptor` and a `Ticket`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

import pyarrow as pa
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from jubao.bulk.schemas import REJECTED, UploadSchemas
from jubao.bulk.v1 import bulk_pb2
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, ErrorCode, invalid, truncated
from jubao_server.invariants import ensure
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.model import Product

TYPE_URL_PREFIX: Final = "type.googleapis.com/"
_BATCH_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class RowProblem:
    """A row refused at validation: its index in the message, the column and why."""

    index: int
    column: str
    message: str


@runtime_checkable
class UploadDataset(Protocol):
    @property
    def name(self) -> str:
        """The full name of its command message, e.g. `jubao.bulk.v1.UploadTransfers`."""

    @property
    def product(self) -> Product: ...

    @property
    def schemas(self) -> UploadSchemas: ...

    def batch_id(self, command: bytes) -> str:
        """The batch id the serialized command names, or INVALID_ARGUMENT."""

    def row_problems(self, rows: pa.RecordBatch) -> list[RowProblem]:
        """The rows of a message (of the dataset's schema) refused for their values, at most one per row."""

    def applier(self, running: Any) -> Apply:
        """How rows are applied, given the product as it runs in the gRPC server process."""


@runtime_checkable
class ExportDataset(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def product(self) -> Product: ...

    @property
    def schema(self) -> pa.Schema | None:
        """The schema of its rows; None when each command's rows have their own (a query's result): the
        stream then has the schema of its first batch, which there always is."""

    def check(self, command: bytes) -> Message:
        """The parsed command, checked, or INVALID_ARGUMENT."""

    def read(
        self, backend: StorageBackend, clock: Clock, tenant_id: str, command: Message
    ) -> AsyncIterator[pa.RecordBatch]:
        """The export's rows, read from `backend` (at `clock`'s time), as record batches of the dataset's
        schema."""


class Ingest(Protocol):
    """One DoPut of an ingest dataset (the same steps as an upload's `UploadSession`)."""

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema the rows must have."""

    @property
    def rows_received(self) -> int:
        """Rows stored so far: a broken upload resumes from here."""

    async def receive(self, batch: pa.RecordBatch, first_row: int) -> bulk_pb2.UploadProgress:
        """Store the rows of one message that are not stored yet; the durable progress."""

    async def commit(self, rows_total: int) -> bulk_pb2.UploadProgress:
        """Complete the upload with its row count (a repeated commit is acknowledged)."""


@runtime_checkable
class IngestDataset(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def product(self) -> Product: ...

    async def open(self, backend: StorageBackend, clock: Clock, tenant_id: str, command: bytes) -> Ingest:
        """The ingest of the serialized command for `tenant_id`, checked (the caller may upload these
        rows), or the error that refuses it."""


Dataset = UploadDataset | ExportDataset | IngestDataset


# Applies rows of an upload for a tenant: a table of the dataset's row schema with a leading `row` column
# in, the rows' results (the dataset's results schema, the same rows in the same order) out.
Apply = Callable[[str, pa.Table], Awaitable[pa.Table]]


@dataclasses.dataclass(frozen=True)
class Datasets:
    """The datasets the enabled products registered, by command name."""

    uploads: Mapping[str, UploadDataset]
    exports: Mapping[str, ExportDataset]
    ingests: Mapping[str, IngestDataset] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, datasets: Iterable[Dataset]) -> Datasets:
        listed = list(datasets)
        uploads = {d.name: d for d in listed if isinstance(d, UploadDataset)}
        exports = {d.name: d for d in listed if isinstance(d, ExportDataset)}
        ingests = {d.name: d for d in listed if isinstance(d, IngestDataset)}
        counted = len(uploads) + len(exports) + len(ingests)
        ensure(counted == len(listed), "a dataset is an upload, an export or an ingest, once")
        return cls(uploads, exports, ingests)


def pack(command: Message) -> bytes:
    """A command as descriptors and tickets carry it: a serialized `Any`."""
    packed = any_pb2.Any()
    packed.Pack(command)
    return packed.SerializeToString()


def unpack(data: bytes, field: str) -> tuple[str, bytes]:
    """The command type's full name and its serialized value, or INVALID_ARGUMENT naming `field`."""
    packed = any_pb2.Any()
    expected = "must be a serialized google.protobuf.Any holding a jubao.bulk.v1 command"
    try:
        packed.ParseFromString(data)
    except DecodeError:
        raise invalid(field, expected) from None
    if not packed.type_url.startswith(TYPE_URL_PREFIX):
        raise invalid(field, expected)
    return packed.type_url[len(TYPE_URL_PREFIX) :], packed.value


def parse(kind: type[Message], value: bytes, field: str) -> Message:
    command = kind()
    try:
        command.ParseFromString(value)
    except DecodeError:
        raise ApiError(
            ErrorCode.INVALID_ARGUMENT, Reason.MALFORMED_REQUEST, f"{field} is not a valid {kind.__name__}"
        ) from None
    return command


def check_batch_id(batch_id: str) -> str:
    if not _BATCH_ID.match(batch_id):
        raise invalid("batch_id", "1 to 64 of the characters A-Z a-z 0-9 . _ : -")
    return batch_id


def rejected_results(
    schemas: UploadSchemas, rows: Iterable[int], row_ids: Iterable[str], messages: Iterable[str]
) -> pa.Table:
    """Results of rows refused at validation: INVALID_ARGUMENT with the column and reason in the message;
    the dataset's own result columns (all text) empty."""
    row_list = list(rows)
    columns: dict[str, pa.Array] = {
        "row": pa.array(row_list, pa.int64()),
        schemas.row_id_column: pa.array(list(row_ids), pa.string()),
        "status": pa.array([REJECTED] * len(row_list), pa.string()),
        "code": pa.array([ErrorCode.INVALID_ARGUMENT.name] * len(row_list), pa.string()),
        "reason": pa.array([Reason.INVALID_ARGUMENT.value] * len(row_list), pa.string()),
        "message": pa.array(
            [truncated(m, limits.bulk_result_message_bytes_max) for m in messages], pa.string()
        ),
    }
    empty = pa.array([""] * len(row_list), pa.string())
    return pa.Table.from_arrays(
        [columns.get(field.name, empty) for field in schemas.results], schema=schemas.results
    )
