"""The Cassandra backend binds its statements itself (`driver.Prepared`): the bytes it sends are the
driver's own for every column type, null included, and a value the driver would refuse is refused with
the driver's error."""

from __future__ import annotations

import asyncio

import pytest
from jubao_server.storage.cassandra import cql
from jubao_server.storage.cassandra.backend import CassandraBackend
from jubao_server.storage.cassandra.driver import Prepared
from jubao_server.storage.contract import Batch, Put, StorageBackend, Value

from tests.backends import CASSANDRA
from tests.storage.tables import LEDGER

ROWS: list[dict[str, Value]] = [
    {"amount": 5, "note": "五块", "flag": True, "payload": b"\x00\xff"},
    {"amount": -(2**63), "note": "", "flag": False, "payload": b""},
    {"amount": 2**63 - 1, "note": None, "flag": None, "payload": None},
]


async def _prepared(
    backend: StorageBackend, row: dict[str, Value], ttl_s: int | None
) -> tuple[Prepared, tuple[Value, ...]]:
    assert isinstance(backend, CassandraBackend)
    batch = Batch(LEDGER.partition("scope", "account-1"), (Put((7,), row, ttl_s=ttl_s),))
    [(text, params)] = cql.batch_statements(backend.keyspace, batch)
    statement = await asyncio.to_thread(backend._session.prepare, text)
    return Prepared(statement), params


@pytest.mark.parametrize("backend", [CASSANDRA], indirect=True)
@pytest.mark.parametrize("ttl_s", [None, 60])
async def test_a_bound_statement_carries_the_drivers_bytes(
    backend: StorageBackend, ttl_s: int | None
) -> None:
    for row in ROWS:
        prepared, params = await _prepared(backend, row, ttl_s)
        bound = prepared.bind(params)
        by_driver = prepared.statement.bind(params)
        assert bound.values == by_driver.values
        assert bound.raw_values == params
        assert bound.routing_key == by_driver.routing_key


@pytest.mark.parametrize("backend", [CASSANDRA], indirect=True)
async def test_a_value_of_the_wrong_type_gets_the_drivers_error(backend: StorageBackend) -> None:
    prepared, params = await _prepared(backend, ROWS[0], None)
    wrong = tuple("not a number" if value == ROWS[0]["amount"] else value for value in params)
    with pytest.raises(TypeError, match='column "amount"'):
        prepared.bind(wrong)
    with pytest.raises(ValueError, match="Too many arguments"):
        prepared.bind((*params, 1))
