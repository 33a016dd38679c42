"""The statement texts the SQLite and Cassandra backends build once per table and reuse: a text follows
its table (not the table's name) and the shape of a range read (not the values of its bounds)."""

from __future__ import annotations

import dataclasses

from jubao_server.storage.cassandra import cql
from jubao_server.storage.contract import (
    Batch,
    Bound,
    Condition,
    Put,
    RowAbsent,
    RowMatches,
    RowQuery,
    Table,
    Value,
)
from jubao_server.storage.sqlite import sql

from tests.storage.tables import LEDGER

KEYSPACE = "jubao_texts"


def _cql_select_row(table: Table) -> str:
    return cql.select_row(KEYSPACE, table)


def _sql_page(query: RowQuery) -> str:
    return sql.select_page(query.partition.table, query.shape)


def _cql_page(query: RowQuery) -> str:
    return cql.select_page(KEYSPACE, query)[0]


def test_a_table_is_equal_only_to_itself() -> None:
    twin = dataclasses.replace(LEDGER)
    assert twin != LEDGER
    assert len({LEDGER, twin, LEDGER}) == 2


def test_two_tables_of_one_name_get_their_own_texts() -> None:
    narrower = Table(
        name=LEDGER.name,
        partition_key=LEDGER.partition_key,
        clustering_key=LEDGER.clustering_key,
        columns={c: t for c, t in LEDGER.columns.items() if c != "payload"},
        static_columns=LEDGER.static_columns,
    )
    for select in (sql.select_row, _cql_select_row):
        assert '"payload"' in select(LEDGER)
        assert '"payload"' not in select(narrower)
    assert "payload" in sql.row_columns(LEDGER)
    assert "payload" not in sql.row_columns(narrower)


def _query(lower: Bound | None = None, upper: Bound | None = None, reverse: bool = False) -> RowQuery:
    return RowQuery(LEDGER.partition("scope", "account-1"), lower, upper, reverse, limit=10)


def test_a_page_text_follows_the_shape_of_its_bounds_not_their_values() -> None:
    from_one, from_two = _query(Bound((1,), True)), _query(Bound((2,), True))
    after_one = _query(Bound((1,), False))
    up_to_nine = _query(upper=Bound((9,), True))
    reversed_ = _query(Bound((1,), True), reverse=True)
    for text in (_sql_page, _cql_page):
        assert text(from_one) == text(from_two)
        assert len({text(from_one), text(after_one), text(up_to_nine), text(reversed_)}) == 4
    assert ">= (:lo_0)" in sql.select_page(LEDGER, from_one.shape)
    assert "> (:lo_0)" in sql.select_page(LEDGER, after_one.shape)
    assert cql.select_page(KEYSPACE, from_one)[1] == ("scope", "account-1", 1, 11)
    assert cql.select_page(KEYSPACE, from_two)[1] == ("scope", "account-1", 2, 11)


def _cql_puts(*puts: Put, conditions: tuple[Condition, ...] = ()) -> list[tuple[str, tuple[Value, ...]]]:
    return cql.batch_statements(
        KEYSPACE, Batch(LEDGER.partition("scope", "account-1"), puts, conditions=conditions)
    )


def test_a_put_text_follows_its_shape_not_its_values_nor_the_order_of_its_columns() -> None:
    one, other = _cql_puts(
        Put((1,), {"amount": 5, "note": "a"}), Put((2,), {"note": "b", "amount": 6}, ttl_s=None)
    )
    assert one[0] is other[0]
    assert one[1] == ("scope", "account-1", 1, 5, "a")
    assert other[1] == ("scope", "account-1", 2, 6, "b")
    [timed] = _cql_puts(Put((1,), {"amount": 5, "note": "a"}, ttl_s=60))
    assert timed[0].endswith(" USING TTL ?") and timed[1][-1] == 60
    [absent] = _cql_puts(Put((2,), {"amount": 5, "note": "a"}), conditions=(RowAbsent((2,)),))
    marker, update = _cql_puts(
        Put((3,), {"amount": 5}, ttl_s=60), conditions=(RowMatches((3,), {"amount": 4}),)
    )
    assert len({one[0], timed[0], absent[0], marker[0], update[0]}) == 5
    assert absent[0].endswith(" IF NOT EXISTS")
    assert marker == (
        'INSERT INTO "jubao_texts"."conf_ledger" ("scope", "account", "seq") VALUES (?, ?, ?) USING TTL ?',
        ("scope", "account-1", 3, 60),
    )
    assert update[0].endswith(' IF "amount" = ?') and update[1] == (60, 5, "scope", "account-1", 3, 4)
