"""Arrow helpers of the bulk plane: checking a message's schema against its dataset's, and the IPC
streams chunks and results are stored as."""

from __future__ import annotations

import pyarrow as pa
from jubao.reasons import FieldViolation, Reason

from jubao_server.errors import ApiError, ErrorCode, echo, invalid_fields

ROW_COLUMN = "row"


def schema_violations(schema: pa.Schema, expected: pa.Schema) -> list[FieldViolation]:
    """Why `schema` cannot carry the dataset's rows: a missing column, a column of another type, or an
    unknown column (each named). Nullability is checked on the data (`null_violations`)."""
    violations = []
    for field in expected:
        index = schema.get_field_index(field.name)
        if index < 0:
            violations.append(FieldViolation(field.name, f"missing column ({field.type} expected)"))
        elif not schema.field(index).type.equals(field.type):
            violations.append(
                FieldViolation(field.name, f"{field.type} expected, got {schema.field(index).type}")
            )
    known = set(expected.names)
    violations += [FieldViolation(name, "unknown column") for name in schema.names if name not in known]
    return violations


def null_violations(batch: pa.RecordBatch, expected: pa.Schema, first_row: int) -> list[FieldViolation]:
    """Nulls in columns that allow none, naming the column and the first such row."""
    violations = []
    for field in expected:
        if field.nullable:
            continue
        column = batch.column(field.name)
        if column.null_count:
            first = column.is_null().index(True).as_py()
            violations.append(
                FieldViolation(field.name, f"null in row {first_row + first} (nulls are not allowed)")
            )
    return violations


def conformed(batch: pa.RecordBatch, expected: pa.Schema, first_row: int) -> pa.RecordBatch:
    """The message's rows in the dataset's column order, or INVALID_ARGUMENT (SCHEMA_MISMATCH) naming
    each column that does not fit: the whole message is refused."""
    violations = schema_violations(batch.schema, expected)
    if not violations:
        violations = null_violations(batch, expected, first_row)
    if violations:
        error = invalid_fields(tuple(violations))
        error.reason = Reason.SCHEMA_MISMATCH
        raise error
    return pa.RecordBatch.from_arrays([batch.column(name) for name in expected.names], schema=expected)


def to_ipc(table: pa.Table) -> bytes:
    """A table as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc(data: bytes, expected: pa.Schema) -> pa.Table:
    """A stored IPC stream of `expected`'s schema (an empty blob reads as no rows)."""
    if not data:
        return expected.empty_table()
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    if not table.schema.equals(expected):
        raise ApiError(
            ErrorCode.DATA_LOSS,
            Reason.CHECKSUM_MISMATCH,
            f"a stored chunk has the schema {echo(table.schema)}, not its dataset's",
        )
    return table


def with_rows(schema: pa.Schema) -> pa.Schema:
    """A dataset's row schema behind a leading `row` column (the row number in its upload)."""
    return pa.schema([pa.field(ROW_COLUMN, pa.int64(), nullable=False), *schema])
