"""Test-only tables (migrations/<backend>/0001_conformance.*): a clustered table with static columns,
a table without clustering columns and one with two clustering columns."""

from __future__ import annotations

from jubao_server.storage.contract import ColumnType, Table

T = ColumnType

LEDGER = Table(
    name="conf_ledger",
    partition_key=("account",),
    clustering_key=("seq",),
    columns={
        "account": T.TEXT,
        "seq": T.BIGINT,
        "balance": T.BIGINT,
        "epoch": T.BIGINT,
        "amount": T.BIGINT,
        "note": T.TEXT,
        "flag": T.BOOLEAN,
        "payload": T.BLOB,
    },
    static_columns=frozenset({"balance", "epoch"}),
)

KV = Table(
    name="conf_kv",
    partition_key=("k",),
    columns={"k": T.TEXT, "v": T.TEXT, "n": T.BIGINT},
)

EVENTS = Table(
    name="conf_events",
    partition_key=("stream",),
    clustering_key=("ts", "id"),
    columns={"stream": T.TEXT, "ts": T.BIGINT, "id": T.TEXT, "body": T.TEXT},
)

CONFORMANCE_TABLES = (LEDGER, KV, EVENTS)
