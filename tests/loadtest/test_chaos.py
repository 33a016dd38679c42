"""The short chaos run (`python -m loadtest chaos --short`, `make chaos` is the long one) on the three-node
cluster: the Double 11 mix on two servers while a Cassandra node is killed and started again, a server is
killed and started again, a server is paused past its lease and resumed, and a node and a server are killed
at once. Nothing acknowledged may be lost or applied twice, and the ledger must reconcile; the report names
each fault with its figures and the plot marks them. Speed is not asserted."""

from __future__ import annotations

from pathlib import Path

from loadtest import chaos
from tests.backends import ON_THE_CLUSTER
from tests.cassandra_node import CLUSTER_KEYSPACE

pytestmark = ON_THE_CLUSTER

FAULTS = ["node kill", "server kill", "server pause", "node + server kill"]


def test_the_short_chaos_run_loses_and_duplicates_nothing(cluster: None, tmp_path: Path) -> None:
    outcome = chaos.run_chaos(chaos.SHORT, workers=2, output_dir=tmp_path, keyspace=CLUSTER_KEYSPACE)
    document = outcome.document
    table = chaos.table(document)
    assert outcome.report.passed, f"{outcome.report.summary()}\n{table}"
    assert document["money"] == {
        "lost_or_duplicated_minor": 0,
        "missing_movements": 0,
        "duplicated_movements": 0,
    }, table
    assert document["check"]["unresolved"] == 0, table
    assert [fault["name"] for fault in document["faults"]] == FAULTS
    for fault in document["faults"]:
        assert fault["started_s"] < fault["ended_s"] <= fault["window_end_s"], table
        assert len(fault["actions"]) >= 2, table
    assert document["totals"]["ok"] > 0, table
    assert outcome.json_path.exists() and outcome.png_path.exists()
