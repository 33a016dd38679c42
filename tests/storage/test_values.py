"""The quick checks of values and key values a batch runs (`TypeRules.value_bytes`, `.plain_key`) agree
with the full ones on any value, of every column type."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jubao_server import limits
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract.values import (
    INT64_MAX,
    INT64_MIN,
    TYPE_RULES,
    ColumnType,
    Value,
    check_key_value,
    check_value,
    value_bytes,
)


class _Number(enum.IntEnum):
    ONE = 1


_KEY_CHARACTERS_MAX = limits.key_component_length_max_bytes // 4
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN - 2, max_value=INT64_MAX + 2),
    st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN - 1, INT64_MAX + 1, _Number.ONE]),
    st.text(max_size=_KEY_CHARACTERS_MAX + 3),
    st.text(min_size=_KEY_CHARACTERS_MAX - 2, max_size=_KEY_CHARACTERS_MAX + 2),
    st.binary(max_size=64),
)


@given(st.sampled_from(list(ColumnType)), VALUES)
def test_a_value_is_sized_when_it_fits_its_column(column_type: ColumnType, value: Value) -> None:
    expected = value_bytes(value) if check_value(column_type, value) else -1
    assert TYPE_RULES[column_type].value_bytes(value) == expected


@given(st.sampled_from(list(ColumnType)), VALUES)
def test_a_plain_key_passes_the_full_key_checks(column_type: ColumnType, value: Value) -> None:
    if TYPE_RULES[column_type].plain_key(value):
        check_key_value(value)
        assert check_value(column_type, value)


def test_the_quick_key_test_takes_the_common_keys() -> None:
    assert TYPE_RULES[ColumnType.TEXT].plain_key("acct-000001")
    assert TYPE_RULES[ColumnType.BIGINT].plain_key(7)
    assert not TYPE_RULES[ColumnType.BIGINT].plain_key(True)
    assert not TYPE_RULES[ColumnType.TEXT].plain_key(None)
    with pytest.raises(InvariantViolation):
        check_key_value(None)


# Columns of values as a bulk put checks them: mostly of one type (the quick paths), or of any.
COLUMNS = st.one_of(
    st.lists(VALUES, min_size=1, max_size=8),
    st.lists(st.one_of(st.none(), st.integers(min_value=INT64_MIN - 2, max_value=INT64_MAX + 2)), min_size=1),
    st.lists(st.one_of(st.none(), st.text(max_size=_KEY_CHARACTERS_MAX + 3)), min_size=1),
    st.lists(st.text(min_size=_KEY_CHARACTERS_MAX - 2, max_size=_KEY_CHARACTERS_MAX + 2), min_size=1),
)


@given(st.sampled_from(list(ColumnType)), COLUMNS)
def test_a_column_is_sized_as_its_values_are(column_type: ColumnType, values: list[Value]) -> None:
    """`column_bytes` is the sum of the values' `value_bytes`, or -1 when one of them does not fit."""
    rules = TYPE_RULES[column_type]
    sizes = [rules.value_bytes(value) for value in values]
    assert rules.column_bytes(values) == (-1 if min(sizes) < 0 else sum(sizes))


@given(st.sampled_from(list(ColumnType)), COLUMNS)
def test_a_column_of_plain_keys_is_plain_value_by_value(column_type: ColumnType, values: list[Value]) -> None:
    rules = TYPE_RULES[column_type]
    assert rules.plain_keys(values) == all(rules.plain_key(value) for value in values)
