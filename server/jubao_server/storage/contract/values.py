"""Cell values and column types: what a cell may hold, and the checks every key and value passes."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Final, TypeVar

from jubao_server import limits
from jubao_server.invariants import ensure

Value = str | int | bytes | bool | None
Key = tuple[Value, ...]

SCOPE_COLUMN: Final = "scope"
PLATFORM_SCOPE: Final = "~platform"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

T = TypeVar("T")


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


def _plain_text_key(value: Value) -> bool:
    return type(value) is str and len(value) * 4 <= limits.key_component_length_max_bytes


def _plain_bigint_key(value: Value) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def _never(value: Value) -> bool:
    return False


# A column of values, as a bulk put holds them (`bulk.py`): checked column by column, in C loops
# (`map`, `min`, `max`, `sum`) where the types allow, each value's function call only otherwise.
_NULL: Final = type(None)
_TEXT_TYPES: Final = frozenset({str, _NULL})
_BIGINT_TYPES: Final = frozenset({int, _NULL})


def _text_column_bytes(values: Sequence[Value]) -> int:
    types = set(map(type, values))
    if types <= _TEXT_TYPES:
        texts = _without_nulls(values, types, str)
        return sum(map(len, texts)) + value_bytes(None) * (len(values) - len(texts))
    return _each_bytes(_text_bytes, values)


def _bigint_column_bytes(values: Sequence[Value]) -> int:
    types = set(map(type, values))
    if types <= _BIGINT_TYPES:
        numbers = _without_nulls(values, types, int)
        return 8 * len(values) if _in_int64(numbers) else -1
    return _each_bytes(_bigint_bytes, values)


def _without_nulls(values: Sequence[Value], types: set[type], kind: type[T]) -> Sequence[T]:
    """`values`, all of `kind` or None (`types`, their types, say so), without the nulls."""
    if _NULL in types:
        return [v for v in values if isinstance(v, kind)]
    return typing.cast("Sequence[T]", values)


def _in_int64(numbers: Sequence[int]) -> bool:
    return not numbers or INT64_MIN <= min(numbers) <= max(numbers) <= INT64_MAX


def _each_bytes(value_bytes: ValueBytes, values: Sequence[Value]) -> int:
    sizes = list(map(value_bytes, values))
    return -1 if sizes and min(sizes) < 0 else sum(sizes)


def _plain_text_keys(values: Sequence[Value]) -> bool:
    if set(map(type, values)) - {str}:
        return False
    texts = typing.cast("Sequence[str]", values)
    return not texts or max(map(len, texts)) * 4 <= limits.key_component_length_max_bytes


def _plain_bigint_keys(values: Sequence[Value]) -> bool:
    return not set(map(type, values)) - {int} and _in_int64(typing.cast("Sequence[int]", values))


def _never_plain(values: Sequence[Value]) -> bool:
    return False


ValueCheck = Callable[[Value], bool]
ValueBytes = Callable[[Value], int]
ColumnBytes = Callable[[Sequence[Value]], int]
ColumnCheck = Callable[[Sequence[Value]], bool]


@dataclasses.dataclass(frozen=True)
class TypeRules:
    """What a column type admits: `check`, what a cell may hold (None fits every type); `value_bytes`,
    the check and the size of a value in one call (what a batch runs for every value it writes:
    `value_bytes` when `check` holds, else -1); `plain_key`, a quick test that a key value passes both
    `check_key_value` and `check` (True proves it, False leaves it to those two). `column_bytes` and
    `plain_keys` are `value_bytes` (summed, or -1 when a value fails) and `plain_key` (all of them) over
    a column of values at once."""

    check: ValueCheck
    value_bytes: ValueBytes
    plain_key: ValueCheck
    column_bytes: ColumnBytes
    plain_keys: ColumnCheck


def _column_bytes_of(value_bytes: ValueBytes) -> ColumnBytes:
    return lambda values: _each_bytes(value_bytes, values)


TYPE_RULES: Final[Mapping[ColumnType, TypeRules]] = {
    ColumnType.TEXT: TypeRules(_text, _text_bytes, _plain_text_key, _text_column_bytes, _plain_text_keys),
    ColumnType.BIGINT: TypeRules(
        _bigint, _bigint_bytes, _plain_bigint_key, _bigint_column_bytes, _plain_bigint_keys
    ),
    ColumnType.BLOB: TypeRules(_blob, _blob_bytes, _never, _column_bytes_of(_blob_bytes), _never_plain),
    ColumnType.BOOLEAN: TypeRules(
        _boolean, _boolean_bytes, _never, _column_bytes_of(_boolean_bytes), _never_plain
    ),
}


def check_value(column_type: ColumnType, value: Value) -> bool:
    """Whether `value` fits `column_type` (None fits every type)."""
    return TYPE_RULES[column_type].check(value)


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
