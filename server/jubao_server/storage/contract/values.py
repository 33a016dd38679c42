"""Cell values and column types: what a cell may hold, and the checks every key and value passes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def _text(value: Value) -> bool:
    return value is None or isinstance(value, str)


def _bigint(value: Value) -> bool:
    if value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _blob(value: Value) -> bool:
    return value is None or isinstance(value, bytes)


def _boolean(value: Value) -> bool:
    return value is None or isinstance(value, bool)


ValueCheck = Callable[[Value], bool]
# What a cell of each type may hold (None fits every type).
VALUE_CHECKS: Final[Mapping[ColumnType, ValueCheck]] = {
    ColumnType.TEXT: _text,
    ColumnType.BIGINT: _bigint,
    ColumnType.BLOB: _blob,
    ColumnType.BOOLEAN: _boolean,
}


def _text_bytes(value: Value) -> int:
    if type(value) is str:
        return len(value)
    return value_bytes(value) if _text(value) else -1


def _bigint_bytes(value: Value) -> int:
    if type(value) is int:
        return 8 if INT64_MIN <= value <= INT64_MAX else -1
    return 8 if _bigint(value) else -1


def _blob_bytes(value: Value) -> int:
    if type(value) is bytes:
        return len(value)
    return value_bytes(value) if _blob(value) else -1


def _boolean_bytes(value: Value) -> int:
    return 8 if _boolean(value) else -1


ValueBytes = Callable[[Value], int]
# A column type's check and size of a value in one call (what a batch checks for every value it
# writes): `value_bytes` when `check_value` holds, else -1.
VALUE_BYTES: Final[Mapping[ColumnType, ValueBytes]] = {
    ColumnType.TEXT: _text_bytes,
    ColumnType.BIGINT: _bigint_bytes,
    ColumnType.BLOB: _blob_bytes,
    ColumnType.BOOLEAN: _boolean_bytes,
}


def _plain_text_key(value: Value) -> bool:
    return type(value) is str and len(value) * 4 <= limits.key_component_length_max_bytes


def _plain_bigint_key(value: Value) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def _never(value: Value) -> bool:
    return False


# For each column type, a quick test that a key value passes both `check_key_value` and the type's
# check (a short text, an int64): True proves it, False leaves it to those two.
PLAIN_KEYS: Final[Mapping[ColumnType, ValueCheck]] = {
    ColumnType.TEXT: _plain_text_key,
    ColumnType.BIGINT: _plain_bigint_key,
    ColumnType.BLOB: _never,
    ColumnType.BOOLEAN: _never,
}


def check_value(column_type: ColumnType, value: Value) -> bool:
    """Whether `value` fits `column_type` (None fits every type)."""
    return VALUE_CHECKS[column_type](value)


def value_bytes(value: Value) -> int:
    """What a value counts for in a batch's size: a text or blob its length, anything else 8."""
    return len(value) if isinstance(value, str | bytes) else 8


def check_key_value(value: Value) -> None:
    """A key component is never null, and its size is bounded."""
    ensure(value is not None, "a key value cannot be null")
    if isinstance(value, str):
        # UTF-8 takes at most 4 bytes a character: only a long text is encoded to be measured.
        long = len(value) * 4 > limits.key_component_length_max_bytes
        ensure(not long or len(value.encode()) <= limits.key_component_length_max_bytes, _KEY_TOO_LONG)
    elif isinstance(value, bytes):
        ensure(len(value) <= limits.key_component_length_max_bytes, _KEY_TOO_LONG)
    elif isinstance(value, int) and not isinstance(value, bool):
        ensure(INT64_MIN <= value <= INT64_MAX, "key value outside int64")


_KEY_TOO_LONG: Final = "key component too long"
