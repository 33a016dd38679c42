"""Query results too large for their response: kept for the member that ran the query and downloaded by it
over Arrow Flight (the ticket in `QueryResult.download`), by nobody else, for a day; the SDK's `run_query`
answers an Arrow table either way. And a query claims its request id only when it has an effect to apply
once: a kept result (its retry answers the same ticket) or a spend under differential privacy; one answered
in full by its response writes no claim. On SQLite and Cassandra, through the gRPC server and its Flight
process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from google.protobuf import any_pb2
from jubao.bulk.cocreation import tokenize, upload_dataset
from jubao.bulk.results import download_result
from jubao.client import AsyncClient, Client, ClientConfig, JubaoError, Reason
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao_server import limits
from jubao_server.app import migrate
from jubao_server.cocreation.store import CocreationStore
from jubao_server.cocreation.tables import REQUESTS, RESULTS
from jubao_server.storage.contract import Batch as StoredBatch
from jubao_server.storage.contract import Put, StorageBackend
from jubao_server.storage.memory import MemoryBackend

from tests.bulk.support import FlightProcess
from tests.cocreation.support import (
    ALL_ABILITIES,
    DIMENSION,
    INT64,
    JOIN,
    MEASURE,
    SECRET,
    STRING,
    platform_with_bank,
    refused,
    registration,
)
from tests.cocreation.test_cli import Cli
from tests.platform.harness import Running, demo_keys
from tests.sim.virtual_time import SimClock

# More shops than a response carries, each bought from by BUYERS_PER_SHOP buyers (the threshold is 2).
SHOPS = limits.cocreation_result_inline_groups_max + 200
BUYERS_PER_SHOP = 3
DAY_MS = 24 * 3600 * 1000


def _orders() -> pa.Table:
    """An order per buyer: the shop it bought from, and its returns."""
    buyers = SHOPS * BUYERS_PER_SHOP
    return pa.table(
        {
            "buyer": [f"b{i:06d}" for i in range(buyers)],
            "shop": [f"shop-{i // BUYERS_PER_SHOP:05d}" for i in range(buyers)],
            "returns": pa.array([i % 4 for i in range(buyers)], pa.int64()),
        }
    )


def _claims() -> pa.Table:
    """A policy per buyer; every other buyer claimed 1500 fen."""
    buyers = SHOPS * BUYERS_PER_SHOP
    return pa.table(
        {
            "buyer": [f"b{i:06d}" for i in range(buyers)],
            "claim_minor": [1500 * (i % 2) for i in range(buyers)],
        }
    )


def _datasets(collaboration_id: str) -> tuple[pb.RegisterDatasetRequest, pb.RegisterDatasetRequest]:
    summed = [pb.AllowedAggregate(column="claim_minor", functions=[pb.AGGREGATE_FUNCTION_SUM])]
    orders = registration(
        collaboration_id,
        "orders",
        "Orders by shop",
        {"buyer": (STRING, JOIN), "shop": (STRING, DIMENSION), "returns": (INT64, MEASURE)},
        pb.AnalysisRule(
            group_by_columns=["shop"],
            filter_columns=["shop"],
            aggregates=[pb.AllowedAggregate(column="returns", functions=[pb.AGGREGATE_FUNCTION_SUM])],
            min_group_size=2,
        ),
    )
    claims = registration(
        collaboration_id,
        "claims",
        "Claims",
        {"buyer": (STRING, JOIN), "claim_minor": (INT64, MEASURE)},
        pb.AnalysisRule(aggregates=summed, min_group_size=2),
    )
    return orders, claims


async def _shops(
    clients: dict[str, AsyncClient], flight: FlightProcess, privacy: pb.DifferentialPrivacy | None = None
) -> str:
    """The platform and the bank, both with every ability, the platform's orders and the bank's claims
    uploaded; the collaboration's id."""
    platform, bank = clients["platform"], clients["bank"]
    collaboration_id = await platform_with_bank(platform, bank, ALL_ABILITIES, privacy)
    orders, claims = _datasets(collaboration_id)
    await platform.cocreation.RegisterDataset(orders)
    await bank.cocreation.RegisterDataset(claims)
    keys = demo_keys()
    with flight.client(keys["demo-platform"]) as client:
        upload_dataset(client, collaboration_id, "orders", tokenize(_orders(), ["buyer"], SECRET))
    with flight.client(keys["demo-bank"]) as client:
        upload_dataset(client, collaboration_id, "claims", tokenize(_claims(), ["buyer"], SECRET))
    return collaboration_id


def _by_shop(collaboration_id: str, request_id: str = "") -> pb.RunQueryRequest:
    ref = pb.ColumnRef
    query = pb.Query(
        dataset_ids=["orders", "claims"],
        group_by=[ref(dataset_id="orders", column="shop")],
        aggregates=[
            pb.Aggregate(function=pb.AGGREGATE_FUNCTION_COUNT),
            pb.Aggregate(
                function=pb.AGGREGATE_FUNCTION_SUM, column=ref(dataset_id="claims", column="claim_minor")
            ),
        ],
    )
    return pb.RunQueryRequest(collaboration_id=collaboration_id, query=query, request_id=request_id)


def _expected() -> pa.Table:
    """Per shop, in shop order: its buyers and their claims, worked out in plain Python."""
    claimed = dict(
        zip(_claims().column("buyer").to_pylist(), _claims().column("claim_minor").to_pylist(), strict=True)
    )
    shops: dict[str, list[int]] = {}
    for buyer, shop in zip(
        _orders().column("buyer").to_pylist(), _orders().column("shop").to_pylist(), strict=True
    ):
        shops.setdefault(shop, []).append(claimed[buyer])
    return pa.table(
        {
            "orders.shop": list(shops),
            "count(*)": pa.array([len(c) for c in shops.values()], pa.int64()),
            "sum(claims.claim_minor)": pa.array([sum(c) for c in shops.values()], pa.int64()),
        }
    )


def _result_id(ticket: bytes) -> str:
    packed = any_pb2.Any.FromString(ticket)
    command = pb.GetQueryResult()
    assert packed.Unpack(command)
    return command.result_id


def _download(flight: FlightProcess, tenant: str, ticket: bytes) -> pa.Table:
    with flight.client(demo_keys()[f"demo-{tenant}"]) as client:
        return download_result(client, ticket)


def _refused_download(flight: FlightProcess, tenant: str, ticket: bytes, reason: Reason) -> None:
    with pytest.raises(JubaoError) as caught:
        _download(flight, tenant, ticket)
    assert caught.value.reason == reason, caught.value


async def _claimed(backend: StorageBackend, tenant_id: str, request_id: str) -> bool:
    return await backend.read_row(REQUESTS.partition(tenant_id, request_id)) is not None


async def test_a_large_result_is_kept_and_downloaded_over_flight_by_its_analyst_alone(
    clients: dict[str, AsyncClient], flight: FlightProcess, running: Running
) -> None:
    collaboration_id = await _shops(clients, flight)
    answer = await clients["platform"].cocreation.RunQuery(_by_shop(collaboration_id))
    result = answer.result
    assert (list(result.rows), result.download.row_count) == ([], SHOPS)
    assert list(result.columns) == _expected().column_names
    assert result.rows_scanned == 2 * SHOPS * BUYERS_PER_SHOP
    expires_in_ms = result.download.expire_time.ToMilliseconds() - int(time.time() * 1000)
    assert DAY_MS - 60_000 < expires_in_ms <= DAY_MS
    ticket = result.download.ticket
    downloaded = _download(flight, "platform", ticket)
    assert downloaded.equals(_expected().cast(downloaded.schema))
    assert downloaded.schema.types == [pa.string(), pa.int64(), pa.int64()]
    # The bank is a member with every ability, but the result is the platform's: not in the bank's scope.
    _refused_download(flight, "bank", ticket, Reason.QUERY_RESULT_NOT_FOUND)
    _refused_download(flight, "operator", ticket, Reason.COLLABORATION_NOT_FOUND)
    guessed = any_pb2.Any()
    guessed.Pack(pb.GetQueryResult(collaboration_id=collaboration_id, result_id="0" * 32))
    _refused_download(flight, "platform", guessed.SerializeToString(), Reason.QUERY_RESULT_NOT_FOUND)
    # Its chunks are checked against their digests.
    partition = RESULTS.partition("demo-platform", collaboration_id, _result_id(ticket))
    damaged = Put((0,), {"data": b"not what was kept"})
    await running.server.backend.write(StoredBatch(partition, (damaged,)))
    _refused_download(flight, "platform", ticket, Reason.CHECKSUM_MISMATCH)


async def test_a_member_that_left_downloads_nothing(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    collaboration_id = await _shops(clients, flight)
    bank = clients["bank"]
    answer = await bank.cocreation.RunQuery(_by_shop(collaboration_id))
    ticket = answer.result.download.ticket
    assert _download(flight, "bank", ticket).num_rows == SHOPS
    await bank.cocreation.LeaveCollaboration(pb.LeaveCollaborationRequest(collaboration_id=collaboration_id))
    _refused_download(flight, "bank", ticket, Reason.COLLABORATION_NOT_FOUND)


async def test_run_query_answers_an_arrow_table_whichever_way_the_groups_came(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    collaboration_id = await _shops(clients, flight)
    config = ClientConfig(
        endpoint=clients["platform"].config.endpoint,
        bulk_endpoint=f"127.0.0.1:{flight.port}",
        api_key=demo_keys()["demo-platform"],
    )
    async with AsyncClient(config) as platform:
        large = await platform.cocreation.run_query(_by_shop(collaboration_id))
        assert large.equals(_expected())
        few = pb.Filter(
            column=pb.ColumnRef(dataset_id="orders", column="shop"), values=["shop-00000", "shop-00001"]
        )
        small_request = _by_shop(collaboration_id)
        small_request.query.filters.append(few)
        small = await platform.cocreation.run_query(small_request)
        assert small.equals(_expected().slice(0, 2))

    def blocking() -> pa.Table:
        with Client(config) as client:
            return client.cocreation.run_query(_by_shop(collaboration_id))

    assert (await asyncio.to_thread(blocking)).equals(_expected())
    as_bank = ClientConfig(
        endpoint=config.endpoint, bulk_endpoint=config.bulk_endpoint, api_key=demo_keys()["demo-bank"]
    )
    async with AsyncClient(as_bank) as bank:
        # The bank is a member: its query is its own, and so is the download.
        assert (await bank.cocreation.run_query(_by_shop(collaboration_id))).num_rows == SHOPS


async def test_only_a_query_with_an_effect_claims_its_request_id(
    clients: dict[str, AsyncClient], flight: FlightProcess, running: Running
) -> None:
    collaboration_id = await _shops(clients, flight)
    platform, backend = clients["platform"], running.server.backend
    few = pb.Filter(column=pb.ColumnRef(dataset_id="orders", column="shop"), values=["shop-00007"])
    small = _by_shop(collaboration_id, f"small-{collaboration_id}")
    small.query.filters.append(few)
    first = await platform.cocreation.RunQuery(small)
    assert len(first.result.rows) == 1
    assert not await _claimed(backend, "demo-platform", f"small-{collaboration_id}")
    # Nothing was claimed: the same id with another query simply runs it.
    other = await platform.cocreation.RunQuery(_by_shop(collaboration_id, f"small-{collaboration_id}"))
    assert other.result.download.row_count == SHOPS
    # A kept result is applied once per request id: its retry answers the same ticket.
    kept = await platform.cocreation.RunQuery(_by_shop(collaboration_id, f"large-{collaboration_id}"))
    assert await _claimed(backend, "demo-platform", f"large-{collaboration_id}")
    again = await platform.cocreation.RunQuery(_by_shop(collaboration_id, f"large-{collaboration_id}"))
    assert again.result.download.ticket == kept.result.download.ticket
    fresh = await platform.cocreation.RunQuery(_by_shop(collaboration_id, f"large-2-{collaboration_id}"))
    assert fresh.result.download.ticket != kept.result.download.ticket
    await refused(
        platform.cocreation.RunQuery(_claimed_elsewhere(collaboration_id)), Reason.REQUEST_ID_REUSED
    )


def _claimed_elsewhere(collaboration_id: str) -> pb.RunQueryRequest:
    """Another query under the kept result's request id."""
    request = _by_shop(collaboration_id, f"large-{collaboration_id}")
    request.query.aggregates.pop()
    return request


async def test_a_large_result_under_differential_privacy_is_kept_and_paid_for_once(
    clients: dict[str, AsyncClient], flight: FlightProcess, running: Running
) -> None:
    privacy = pb.DifferentialPrivacy(budget_epsilon_micro=50_000_000, query_epsilon_micro=20_000_000)
    collaboration_id = await _shops(clients, flight, privacy)
    platform = clients["platform"]
    counted = _by_shop(collaboration_id, f"private-{collaboration_id}")
    counted.query.aggregates.pop()  # a sum would need its measure's bounds
    answer = await platform.cocreation.RunQuery(counted)
    assert (
        answer.result.HasField("noise")
        and answer.result.download.row_count > limits.cocreation_result_inline_groups_max
    )
    assert await _claimed(running.server.backend, "demo-platform", f"private-{collaboration_id}")
    spent = answer.privacy_cost.remaining_epsilon_micro
    again = await platform.cocreation.RunQuery(counted)
    assert again.result.download.ticket == answer.result.download.ticket
    assert again.privacy_cost.remaining_epsilon_micro == spent == 30_000_000
    noised = _download(flight, "platform", answer.result.download.ticket)
    assert noised.num_rows == answer.result.download.row_count
    assert noised.column_names == ["orders.shop", "count(*)"]


async def test_the_command_line_writes_a_large_result_to_a_file(
    clients: dict[str, AsyncClient], flight: FlightProcess, running: Running, tmp_path: Path
) -> None:
    collaboration_id = await _shops(clients, flight)
    platform = Cli(running, flight, "demo-platform")
    by_shop = (
        "query", collaboration_id, "--dataset", "orders", "--dataset", "claims", "--group-by", "orders.shop",
        "--aggregate", "count", "--aggregate", "sum:claims.claim_minor",
    )  # fmt: skip
    await platform.run(*by_shop, "--output", str(tmp_path / "shops.parquet"), as_json=False)
    written = pq.read_table(tmp_path / "shops.parquet")
    assert written.equals(_expected().cast(written.schema))
    shown = await platform.run(*by_shop, as_json=False)
    assert f"{SHOPS} groups, too many for a response" in shown.stdout
    assert f"jubao cocreation result {collaboration_id}" in shown.stdout
    few = await platform.run(
        *by_shop, "--filter", "orders.shop=shop-00001,shop-00002", "--output", str(tmp_path / "few.csv"),
        as_json=False,
    )  # fmt: skip
    assert "2 groups written" in few.stdout
    assert pa_csv.read_csv(tmp_path / "few.csv").column("count(*)").to_pylist() == [BUYERS_PER_SHOP] * 2


async def test_a_kept_result_is_whole_until_it_expires() -> None:
    clock = SimClock()
    backend = MemoryBackend(clock)
    await migrate(backend)
    store = CocreationStore(backend, clock)
    await store.keep_result("demo-platform", "co-kept", "r1", [b"first", b"second"], 2)

    async def kept() -> list[bytes] | None:
        chunks = await store.result_chunks("demo-platform", "co-kept", "r1")
        return None if chunks is None else [chunk async for chunk in chunks]

    assert await kept() == [b"first", b"second"]
    assert await store.result_chunks("demo-bank", "co-kept", "r1") is None
    clock.advance(limits.cocreation_result_ttl_s - 1)
    assert await kept() == [b"first", b"second"]
    clock.advance(2)
    assert await kept() is None
