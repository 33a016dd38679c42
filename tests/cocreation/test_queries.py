"""Aggregate queries end to end (worked examples of the shipping-return insurance case, 运费险): the
platform's orders and the insurer's claims, uploaded tokenized over Arrow Flight, joined on the buyer's
token by the gRPC server. Each owner's rule decides what may be grouped, filtered and aggregated; groups of
fewer buyers than the threshold are suppressed and counted; results go only to members that may receive
them; whoever is not a member learns nothing."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from jubao.bulk.cocreation import tokenize, upload_dataset
from jubao.client import AsyncClient, Reason
from jubao.cocreation.v1 import cocreation_pb2 as pb

from tests.bulk.support import FlightProcess
from tests.cocreation.support import (
    BUYERS,
    DIMENSION,
    INT64,
    JOIN,
    MEASURE,
    SECRET,
    STRING,
    THRESHOLD,
    claims,
    claims_dataset,
    orders,
    platform_with_bank,
    refused,
)
from tests.platform.harness import demo_keys


def _orders_dataset(collaboration_id: str) -> pb.RegisterDatasetRequest:
    return pb.RegisterDatasetRequest(
        collaboration_id=collaboration_id,
        dataset_id="orders",
        display_name="Orders and returns",
        columns=[
            pb.Column(name="buyer", type=STRING, role=JOIN),
            pb.Column(name="category", type=STRING, role=DIMENSION),
            pb.Column(name="returns", type=INT64, role=MEASURE),
        ],
        rule=pb.AnalysisRule(
            group_by_columns=["category"],
            filter_columns=["category"],
            aggregates=[pb.AllowedAggregate(column="returns", functions=[pb.AGGREGATE_FUNCTION_SUM])],
            min_group_size=THRESHOLD,
        ),
    )


@pytest.fixture
async def collaboration(clients: dict[str, AsyncClient], flight: FlightProcess) -> str:
    """The platform (every ability) and the bank as the insurer (contributes and analyses, never receives
    results), each dataset uploaded by its owner, tokenized with the secret they agreed on."""
    platform, bank = clients["platform"], clients["bank"]
    collaboration_id = await platform_with_bank(platform, bank, [pb.ABILITY_CONTRIBUTE, pb.ABILITY_ANALYZE])
    await platform.cocreation.RegisterDataset(_orders_dataset(collaboration_id))
    await bank.cocreation.RegisterDataset(claims_dataset(collaboration_id))
    placed = orders()
    keys = demo_keys()
    with flight.client(keys["demo-platform"]) as client:
        upload_dataset(client, collaboration_id, "orders", tokenize(placed, ["buyer"], SECRET))
    with flight.client(keys["demo-bank"]) as client:
        upload_dataset(client, collaboration_id, "claims", tokenize(claims(placed), ["buyer"], SECRET))
    return collaboration_id


def _ref(dataset_id: str, column: str) -> pb.ColumnRef:
    return pb.ColumnRef(dataset_id=dataset_id, column=column)


def _query(collaboration_id: str, **fields: Any) -> pb.RunQueryRequest:
    query = pb.Query(
        dataset_ids=["orders", "claims"],
        group_by=[_ref("orders", "category")],
        aggregates=[
            pb.Aggregate(function=pb.AGGREGATE_FUNCTION_COUNT),
            pb.Aggregate(function=pb.AGGREGATE_FUNCTION_AVG, column=_ref("claims", "claimed")),
            pb.Aggregate(function=pb.AGGREGATE_FUNCTION_SUM, column=_ref("claims", "claim_minor")),
            pb.Aggregate(function=pb.AGGREGATE_FUNCTION_SUM, column=_ref("orders", "returns")),
        ],
    )
    for field, value in fields.items():
        query.ClearField(field)  # type: ignore[arg-type]
        getattr(query, field).extend(value)
    return pb.RunQueryRequest(collaboration_id=collaboration_id, query=query)


def _expected() -> dict[str, tuple[int, float, int, int]]:
    """The answer worked out in plain Python: per category, the joined rows, the claim rate over them,
    the claims' amount and the returns."""
    placed = orders().to_pylist()
    policies = {row["buyer"]: row for row in claims(orders()).to_pylist()}
    groups: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for order in placed:
        claim = policies[order["buyer"]]
        groups[order["category"]].append((claim["claimed"], claim["claim_minor"], order["returns"]))
    return {
        category: (
            len(rows),
            sum(r[0] for r in rows) / len(rows),
            sum(r[1] for r in rows),
            sum(r[2] for r in rows),
        )
        for category, rows in groups.items()
        if BUYERS[category] >= THRESHOLD
    }


async def test_claim_rate_by_category_over_the_join_with_small_groups_suppressed(
    clients: dict[str, AsyncClient], collaboration: str
) -> None:
    answer = await clients["platform"].cocreation.RunQuery(_query(collaboration))
    result = answer.result
    assert list(result.columns) == [
        "orders.category",
        "count(*)",
        "avg(claims.claimed)",
        "sum(claims.claim_minor)",
        "sum(orders.returns)",
    ]
    got = {
        row.cells[0].string_value: (
            row.cells[1].int64_value,
            row.cells[2].double_value,
            row.cells[3].int64_value,
            row.cells[4].int64_value,
        )
        for row in result.rows
    }
    expected = _expected()
    assert got.keys() == expected.keys()
    for category, (rows, rate, claimed_minor, returns) in expected.items():
        count, got_rate, total, got_returns = got[category]
        assert (count, total, got_returns) == (rows, claimed_minor, returns), category
        assert got_rate == pytest.approx(rate), category
    assert [row.cells[0].string_value for row in result.rows] == ["books", "pens", "shoes"]  # toys: 2 buyers
    assert (result.groups_suppressed, result.min_group_size) == (1, THRESHOLD)
    assert result.rows_scanned == 2 * sum(BUYERS.values()) + sum(BUYERS.values()) + 2


async def test_filtering_down_to_a_few_people_leaves_nothing_to_see(
    clients: dict[str, AsyncClient], collaboration: str
) -> None:
    platform = clients["platform"]
    toys = pb.Filter(column=_ref("orders", "category"), values=["toys"])
    answer = await platform.cocreation.RunQuery(_query(collaboration, filters=[toys]))
    assert (list(answer.result.rows), answer.result.groups_suppressed) == ([], 1)
    # No group-by: the whole join is one group, and it is thresholded too.
    whole = await platform.cocreation.RunQuery(_query(collaboration, filters=[toys], group_by=[]))
    assert (list(whole.result.rows), whole.result.groups_suppressed) == ([], 1)
    pens = pb.Filter(column=_ref("orders", "category"), values=["pens"])
    kept = await platform.cocreation.RunQuery(_query(collaboration, filters=[pens], group_by=[]))
    assert [row.cells[0].int64_value for row in kept.result.rows] == [2 * BUYERS["pens"]]


async def test_every_owners_rule_is_checked_before_anything_is_read(
    clients: dict[str, AsyncClient], collaboration: str
) -> None:
    platform = clients["platform"]
    by_token = await refused(
        platform.cocreation.RunQuery(_query(collaboration, group_by=[_ref("orders", "buyer")])),
        Reason.ANALYSIS_RULE_VIOLATED,
    )
    assert [v.field for v in by_token.field_violations] == ["orders.rule.group_by_columns"]
    assert "owner demo-platform" in by_token.message
    note = pb.Filter(column=_ref("claims", "note"), values=["kept private"])
    await refused(
        platform.cocreation.RunQuery(_query(collaboration, filters=[note])), Reason.ANALYSIS_RULE_VIOLATED
    )
    by_key = pb.Filter(column=_ref("claims", "buyer"), values=["a" * 64])
    await refused(
        platform.cocreation.RunQuery(_query(collaboration, filters=[by_key])), Reason.ANALYSIS_RULE_VIOLATED
    )
    largest = pb.Aggregate(function=pb.AGGREGATE_FUNCTION_MAX, column=_ref("claims", "claim_minor"))
    by_max = await refused(
        platform.cocreation.RunQuery(_query(collaboration, aggregates=[largest])),
        Reason.ANALYSIS_RULE_VIOLATED,
    )
    assert [v.field for v in by_max.field_violations] == ["claims.rule.aggregates"]
    assert "owner demo-bank" in by_max.message
    await refused(
        platform.cocreation.RunQuery(_query(collaboration, group_by=[_ref("claims", "nothing")])),
        Reason.INVALID_ARGUMENT,
    )
    await refused(
        platform.cocreation.RunQuery(
            pb.RunQueryRequest(collaboration_id=collaboration, query=pb.Query(dataset_ids=["orders", "gone"]))
        ),
        Reason.INVALID_ARGUMENT,
    )


async def test_results_go_only_to_members_that_receive_them(
    clients: dict[str, AsyncClient], collaboration: str
) -> None:
    # The insurer analyses but never receives results; the operator is not a member.
    await refused(clients["bank"].cocreation.RunQuery(_query(collaboration)), Reason.ABILITY_MISSING)
    await refused(
        clients["operator"].cocreation.RunQuery(_query(collaboration)), Reason.COLLABORATION_NOT_FOUND
    )


async def test_a_withdrawn_dataset_is_never_read_again(
    clients: dict[str, AsyncClient], collaboration: str
) -> None:
    await clients["bank"].cocreation.WithdrawDataset(
        pb.WithdrawDatasetRequest(collaboration_id=collaboration, dataset_id="claims")
    )
    await refused(clients["platform"].cocreation.RunQuery(_query(collaboration)), Reason.DATASET_WITHDRAWN)


async def test_every_query_that_read_rows_is_audited_for_its_analyst_and_the_owners(
    clients: dict[str, AsyncClient], collaboration: str
) -> None:
    platform, bank = clients["platform"], clients["bank"]
    first = await platform.cocreation.RunQuery(_query(collaboration))
    pens = pb.Filter(column=_ref("orders", "category"), values=["pens"])
    await platform.cocreation.RunQuery(_query(collaboration, filters=[pens]))
    # Refused before reading: nothing to record.
    await refused(
        platform.cocreation.RunQuery(_query(collaboration, group_by=[_ref("orders", "buyer")])),
        Reason.ANALYSIS_RULE_VIOLATED,
    )
    entries: list[pb.AuditEntry] = []
    token = ""
    for _ in range(10):
        page = await bank.cocreation.ListAuditEntries(
            pb.ListAuditEntriesRequest(collaboration_id=collaboration, page_size=1, page_token=token)
        )
        entries += page.entries
        token = page.next_page_token
        if not token:
            break
    assert len(entries) == 2
    entry = entries[0]
    assert (entry.analyst_tenant_id, list(entry.dataset_ids), list(entry.owner_tenant_ids)) == (
        "demo-platform",
        ["orders", "claims"],
        ["demo-platform", "demo-bank"],
    )
    assert entry.query == _query(collaboration).query
    assert (entry.rows_scanned, entry.groups_returned, entry.groups_suppressed) == (
        first.result.rows_scanned,
        len(first.result.rows),
        first.result.groups_suppressed,
    )
    assert list(entries[1].query.filters) == [pens]
    mine = await platform.cocreation.ListAuditEntries(
        pb.ListAuditEntriesRequest(collaboration_id=collaboration)
    )
    assert list(mine.entries) == entries
    await refused(
        clients["operator"].cocreation.ListAuditEntries(
            pb.ListAuditEntriesRequest(collaboration_id=collaboration)
        ),
        Reason.COLLABORATION_NOT_FOUND,
    )
