"""The statement texts the SQLite and Cassandra backends build once per table and reuse: a text follows
its table (not the table's name) and the shape of a range read (not the values of its bounds)."""

from __future__ import annotations

import dataclasses

from jubao_server.storage.cassandra import cql
from jubao_server.storage.contract import Bound, RowQuery, Table
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
