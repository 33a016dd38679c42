"""Cell values and column types: what a cell may hold, and the checks every key and value passes."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from jubao_server import limits
from jubao_server.invariants import ensure

Value = str | int | bytes | bool | None
Key = tuple[Value, ...]

SCOPE_COLUMN: Final = "scope"
PLATFORM_SCOPE: Final = "~platform"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


class ColumnType(StrEnum):
    TEXT = "text"
    BIGINT = "bigint"
    BLOB = "blob"
    BOOLEAN = "boolean"


def check_value(column_type: ColumnType, value: Value) -> bool:
    """Whether `value` fits `column_type` (None fits every type)."""
    if value is None:
        return True
    match column_type:
        case ColumnType.TEXT:
            return isinstance(value, str)
        case ColumnType.BIGINT:
            return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
        case ColumnType.BLOB:
            return isinstance(value, bytes)
        case ColumnType.BOOLEAN:
            return isinstance(value, bool)


def check_key_value(value: Value) -> None:
    """A key component is never null, and its size is bounded."""
    ensure(value is not None, "a key value cannot be null")
    if isinstance(value, str | bytes):
        size = len(value.encode()) if isinstance(value, str) else len(value)
        ensure(size <= limits.key_component_length_max_bytes, "key component too long")
    if isinstance(value, int) and not isinstance(value, bool):
        ensure(INT64_MIN <= value <= INT64_MAX, "key value outside int64")
