"""The ledger on the local three-node cluster (`make cassandra-cluster-up`; `make test` starts it), with the
settings of `scripts/cassandra/cluster.toml`: replication factor 3, reads and writes at QUORUM, conditional
writes at SERIAL. With one node killed (SIGKILL) payments go on and reads see every acknowledged one;
with two killed a payment is refused (UNAVAILABLE) within a bound instead of hanging; once the nodes are
back, its retry with the same request id applies it exactly once, and the ledger reconciles.

The test kills and restarts the cluster's nodes, so it holds a lock that other checkouts' runs of it
wait for (the cluster is shared the way the single node is)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Final

import pytest
from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.model import Transfer, TransferState
from jubao_server.storage.cassandra.backend import CassandraBackend
from jubao_server.storage.contract import StorageError

from loadtest.cluster import cluster_lock as held_cluster_lock
from loadtest.cluster import node_command
from tests.backends import ON_THE_CLUSTER
from tests.cluster_keyspace import cluster_settings
from tests.ledger.support import balance, completed, ids_in_distinct_shards, open_account, pay, total

# A payment that cannot reach a quorum must be refused within this (the driver's request timeout and
# the ledger's bounded retries), not hang.
REFUSAL_WITHIN_S: Final = 120.0
SHARDS: Final = 4
# Credits to payees in other shards are delivered after the payer's debit: how long they may take with a
# node down on a loaded machine.
DELIVERY_WITHIN_S: Final = 60.0
DELIVERY_POLL_S: Final = 0.2

pytestmark = ON_THE_CLUSTER


def _nodes(action: str, *indexes: int, kill: bool = False) -> None:
    """`node.py cluster ACTION --node N` for each node given (all of them when none is)."""
    for index in indexes or (None,):
        node_command(action, index, kill=kill)


async def _delivered(ledger: Ledger, tenant: str, *transfers: Transfer) -> None:
    """Wait (bounded) until every transfer has its credits delivered."""
    polls_max = int(DELIVERY_WITHIN_S / DELIVERY_POLL_S)
    for transfer in transfers:
        state = (
            await completed(ledger, tenant, transfer.transfer_id, polls_max=polls_max, poll_s=DELIVERY_POLL_S)
        ).state
        assert state is TransferState.COMPLETED, (
            f"{transfer.transfer_id} not delivered after {DELIVERY_WITHIN_S} s"
        )


@pytest.fixture
def cluster_lock() -> Iterator[None]:
    with held_cluster_lock():
        yield


@pytest.fixture
async def cluster(cluster_lock: None) -> AsyncIterator[CassandraBackend]:
    """The cluster's backend, migrated, with every node up before and after the test."""
    settings = cluster_settings()
    try:
        backend = await CassandraBackend.connect(settings, SYSTEM_CLOCK)
    except StorageError as error:
        message = f"the Cassandra cluster is not running: run `make cassandra-cluster-up` ({error})"
        if os.environ.get("CI") == "true" or os.environ.get("JUBAO_TEST_CLUSTER") == "required":
            pytest.fail(message)
        pytest.skip(message)
    try:
        _nodes("up")
        await migrate(backend)
        yield backend
    finally:
        await backend.close()
        _nodes("up")


def test_the_cluster_settings_replicate_three_times_at_quorum() -> None:
    settings = cluster_settings()
    assert settings.replication.replication_factor == 3
    assert (settings.consistency, settings.serial_consistency) == ("QUORUM", "SERIAL")
    assert sorted(settings.contact_points) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


async def test_payments_survive_one_node_down_and_are_refused_whole_with_two(
    cluster: CassandraBackend,
) -> None:
    tenant = f"t{uuid.uuid4().hex[:20]}"
    ledger = Ledger(cluster, PaymentsSettings(shard_count=SHARDS, shard_lease_ms=2_000))
    bank, alice, bob, carol = ids_in_distinct_shards("acct", SHARDS, 4)
    await open_account(ledger, tenant, bank, allow_negative=True)
    for account in (alice, bob, carol):
        await open_account(ledger, tenant, account)
    await pay(ledger, tenant, bank, (alice, 10_000))

    _nodes("down", 3, kill=True)
    funded = await pay(ledger, tenant, bank, (bob, 5_000))
    split = await pay(ledger, tenant, alice, (carol, 1_000), (bob, 500))
    await _delivered(ledger, tenant, funded, split)
    assert [await balance(ledger, tenant, a) for a in (bank, alice, bob, carol)] == [
        -15_000,
        8_500,
        5_500,
        1_000,
    ]

    _nodes("down", 2, kill=True)
    with pytest.raises((ApiError, StorageError)) as refused:
        await asyncio.wait_for(
            pay(ledger, tenant, bob, (carol, 700), request_id="r-quorum"), REFUSAL_WITHIN_S
        )
    if isinstance(refused.value, ApiError):
        assert refused.value.code is ErrorCode.UNAVAILABLE, refused.value
    await ledger.stop()

    _nodes("up", 2, 3)
    ledger = Ledger(cluster, PaymentsSettings(shard_count=SHARDS, shard_lease_ms=2_000))
    first = await pay(ledger, tenant, bob, (carol, 700), request_id="r-quorum")
    again = await pay(ledger, tenant, bob, (carol, 700), request_id="r-quorum")
    assert again.transfer_id == first.transfer_id
    await _delivered(ledger, tenant, first)
    assert [await balance(ledger, tenant, a) for a in (bank, alice, bob, carol)] == [
        -15_000,
        8_500,
        4_800,
        1_700,
    ]
    assert await total(ledger, tenant) == 0
    report = await ledger.reconcile(tenant)
    assert report.discrepancies == ()
    await ledger.stop()
