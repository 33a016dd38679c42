"""Differential privacy of co-creation queries, end to end on both backends, and the differencing attack.

The platform's orders (buyer, category, city) and the insurer's claims (buyer, claimed 0/1) are joined on
the buyer's token. One buyer, the target, is the only one in its city: the sum of claims over the
category, minus the same sum without the target's city, is the target's claim. Both groups are far above
the threshold, so the minimum group size does not stop it (README and ARCHITECTURE.md say so); with
differential privacy each answer is noised and the difference tells the target's claim no better than
epsilon allows (`test_the_difference_of_two_noised_answers_hides_one_persons_claim`)."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pyarrow as pa
from jubao.bulk.cocreation import tokenize, upload_dataset
from jubao.client import AsyncClient, Reason
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.cocreation.convert import dataset_of
from jubao_server.cocreation.model import Aggregate, ColumnRef, Filter, Function, Privacy, Query
from jubao_server.cocreation.privacy import noise_of, noised
from jubao_server.cocreation.store import CocreationStore

from tests.bulk.support import FlightProcess
from tests.cocreation.support import (
    BUYERS,
    DIMENSION,
    INT64,
    JOIN,
    MEASURE,
    SECRET,
    STRING,
    orders,
    platform_and_insurer,
    refused,
    registration,
)
from tests.cocreation.support import THRESHOLD as SHOP_THRESHOLD
from tests.platform.harness import Running, demo_keys

SEED = 16_001
THRESHOLD = 5
TARGET_CITY = "lhasa"
# epsilon 2 for each member; a query costs 0.5 by default: four queries.
BUDGET_EPSILON_MICRO = 2_000_000
QUERY_EPSILON_MICRO = 500_000
DP = pb.DifferentialPrivacy(
    budget_epsilon_micro=BUDGET_EPSILON_MICRO, query_epsilon_micro=QUERY_EPSILON_MICRO
)


def _people() -> tuple[pa.Table, pa.Table]:
    """Seeded orders and claims: 29 other shoe buyers in two cities and 10 book buyers, one order each;
    the target (the only buyer in TARGET_CITY) claimed."""
    rng = random.Random(SEED)
    cities = ["hangzhou"] * 15 + ["shanghai"] * 14 + [TARGET_CITY]
    orders: dict[str, list[Any]] = {"buyer": [], "category": [], "city": []}
    claimed: list[int] = []
    for number, city in enumerate(cities + ["hangzhou"] * 10):
        orders["buyer"].append(f"1390000{number:04d}")
        orders["category"].append("shoes" if number < len(cities) else "books")
        orders["city"].append(city)
        claimed.append(1 if city == TARGET_CITY else rng.randint(0, 1))
    claims = {"buyer": list(orders["buyer"]), "claimed": claimed}
    return pa.table(orders), pa.table(claims)


def _datasets(collaboration_id: str) -> tuple[pb.RegisterDatasetRequest, pb.RegisterDatasetRequest]:
    orders = registration(
        collaboration_id,
        "orders",
        "Orders",
        {"buyer": (STRING, JOIN), "category": (STRING, DIMENSION), "city": (STRING, DIMENSION)},
        pb.AnalysisRule(
            group_by_columns=["category"], filter_columns=["category", "city"], min_group_size=THRESHOLD
        ),
    )
    claims = registration(
        collaboration_id,
        "claims",
        "Claims",
        {"buyer": (STRING, JOIN), "claimed": (INT64, MEASURE)},
        pb.AnalysisRule(
            aggregates=[
                pb.AllowedAggregate(
                    column="claimed", functions=[pb.AGGREGATE_FUNCTION_SUM, pb.AGGREGATE_FUNCTION_AVG]
                )
            ],
            min_group_size=THRESHOLD,
            measure_bounds=[pb.MeasureBounds(column="claimed", lower=0, upper=1)],
        ),
    )
    return orders, claims


async def _collaboration(
    clients: dict[str, AsyncClient], flight: FlightProcess, privacy: pb.DifferentialPrivacy | None
) -> str:
    """`platform_and_insurer`, with their datasets uploaded."""
    collaboration_id = await platform_and_insurer(clients, privacy)
    platform, bank = clients["platform"], clients["bank"]
    orders_request, claims_request = _datasets(collaboration_id)
    await platform.cocreation.RegisterDataset(orders_request)
    await bank.cocreation.RegisterDataset(claims_request)
    _upload(flight, collaboration_id)
    return collaboration_id


def _upload(flight: FlightProcess, collaboration_id: str) -> None:
    """Each member's dataset uploaded by its owner, tokenized."""
    orders, claims = _people()
    keys = demo_keys()
    with flight.client(keys["demo-platform"]) as client:
        upload_dataset(client, collaboration_id, "orders", tokenize(orders, ["buyer"], SECRET))
    with flight.client(keys["demo-bank"]) as client:
        upload_dataset(client, collaboration_id, "claims", tokenize(claims, ["buyer"], SECRET))


def _ref(dataset_id: str, column: str) -> pb.ColumnRef:
    return pb.ColumnRef(dataset_id=dataset_id, column=column)


def _claims_of_shoe_buyers(
    collaboration_id: str, *, without_target: bool, request_id: str = "", **fields: Any
) -> pb.RunQueryRequest:
    """The sum of claims of the shoe buyers (without the target's city: of everyone but the target);
    `request_id` "" lets the SDK give it a fresh one."""
    filters = [pb.Filter(column=_ref("orders", "category"), values=["shoes"])]
    if without_target:
        filters.append(pb.Filter(column=_ref("orders", "city"), values=["hangzhou", "shanghai"]))
    query = pb.Query(
        dataset_ids=["orders", "claims"],
        filters=filters,
        aggregates=[pb.Aggregate(function=pb.AGGREGATE_FUNCTION_SUM, column=_ref("claims", "claimed"))],
    )
    # Request ids are the tenant's: made unique per collaboration (the Cassandra keyspace outlives a run).
    unique = f"{collaboration_id}.{request_id}" if request_id else ""
    return pb.RunQueryRequest(collaboration_id=collaboration_id, query=query, request_id=unique, **fields)


def _sum(response: pb.RunQueryResponse) -> int:
    (row,) = response.result.rows
    value: int = row.cells[0].int64_value
    return value


async def test_the_threshold_alone_lets_two_queries_isolate_one_person(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    collaboration_id = await _collaboration(clients, flight, None)
    platform = clients["platform"].cocreation
    everyone = await platform.RunQuery(_claims_of_shoe_buyers(collaboration_id, without_target=False))
    others = await platform.RunQuery(_claims_of_shoe_buyers(collaboration_id, without_target=True))
    # Both groups (30 and 29 buyers) are far above the threshold: nothing is suppressed ...
    assert (everyone.result.groups_suppressed, others.result.groups_suppressed) == (0, 0)
    assert not everyone.result.HasField("noise")
    # ... and their difference is the target's claim, exactly.
    assert _sum(everyone) - _sum(others) == 1
    orders, claims = _people()
    truth = dict(zip(claims.column("buyer").to_pylist(), claims.column("claimed").to_pylist(), strict=True))
    target = orders.column("buyer").to_pylist()[orders.column("city").to_pylist().index(TARGET_CITY)]
    assert _sum(everyone) - _sum(others) == truth[target]


def _privacy_query() -> tuple[Privacy, Query]:
    """The attack's query in the domain's terms, with the datasets' rules as registered."""
    query = Query(
        dataset_ids=("orders", "claims"),
        filters=(Filter(ColumnRef("orders", "category"), ("shoes",)),),
        group_by=(),
        aggregates=(Aggregate(Function.SUM, ColumnRef("claims", "claimed")),),
    )
    return Privacy(BUDGET_EPSILON_MICRO, QUERY_EPSILON_MICRO), query


def test_the_difference_of_two_noised_answers_hides_one_persons_claim() -> None:
    """The attacker sees two noised sums, with and without the target, and guesses the target's claim
    from their difference. The two worlds (the target claimed or not) differ in one person's value, which
    moves the first sum by 1 and the second not at all: under the first sum's epsilon no guess is right
    more often than e^eps / (1 + e^eps) over the two worlds; without noise it is always right. 20,000
    trials put the measured accuracy within 0.03 of its true value but with probability exp(-36)
    (Hoeffding), so the test cannot flake, though OpenDP's noise comes from its own CSPRNG and cannot be
    seeded (the data and the worlds are: SEED)."""
    privacy, query = _privacy_query()
    orders, claims = (dataset_of(r, owner, 0) for r, owner in zip(_datasets("c"), ("p", "b"), strict=True))
    noise = noise_of(privacy, (orders, claims), query, 0)
    # The distinct keys and the sum share the query's epsilon; one buyer moves the sum by at most 1.
    assert noise.sensitivities == (1, 1)
    share = noise.share_epsilon_micro
    epsilon = share / 1_000_000
    others = sum(_people()[1].column("claimed").to_pylist()[:29])
    trials = 20_000
    rng = random.Random(SEED)
    worlds = [rng.randint(0, 1) for _ in range(trials)]
    # The mechanism noises each element of a vector independently: one call draws every trial's noise.
    everyone = noised([others + claimed for claimed in worlds], 1, share)
    without = noised([others] * trials, 1, share)
    right = sum(int((e - w >= 1) == bool(c)) for e, w, c in zip(everyone, without, worlds, strict=True))
    exact_right = sum(int(((others + c) - others >= 1) == bool(c)) for c in worlds)
    bound = math.exp(epsilon) / (1 + math.exp(epsilon))
    assert exact_right == trials
    assert right / trials <= bound + 0.03, (right / trials, bound)


async def test_with_differential_privacy_answers_are_noised_and_paid_for(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    collaboration_id = await _collaboration(clients, flight, DP)
    platform = clients["platform"].cocreation
    shown = await platform.GetCollaboration(pb.GetCollaborationRequest(collaboration_id=collaboration_id))
    assert shown.collaboration.differential_privacy == DP
    everyone = await platform.RunQuery(
        _claims_of_shoe_buyers(collaboration_id, without_target=False, request_id="attack-1")
    )
    assert everyone.result.noise.epsilon_micro == QUERY_EPSILON_MICRO
    assert "OpenDP" in everyone.result.noise.mechanism
    assert everyone.privacy_cost == pb.PrivacyCost(
        epsilon_micro=QUERY_EPSILON_MICRO,
        budget_epsilon_micro=BUDGET_EPSILON_MICRO,
        remaining_epsilon_micro=BUDGET_EPSILON_MICRO - QUERY_EPSILON_MICRO,
    )
    # A retry answers the same noised sum and spends nothing more.
    again = await platform.RunQuery(
        _claims_of_shoe_buyers(collaboration_id, without_target=False, request_id="attack-1")
    )
    assert again == everyone
    entries = await clients["bank"].cocreation.ListAuditEntries(
        pb.ListAuditEntriesRequest(collaboration_id=collaboration_id)
    )
    assert [e.epsilon_micro for e in entries.entries] == [QUERY_EPSILON_MICRO]
    # Refused before anything is read or spent: an average, an epsilon out of range. (The SDK gives every
    # request a request id; a DP query without one is INVALID_ARGUMENT.)
    average = _claims_of_shoe_buyers(collaboration_id, without_target=True, request_id="avg")
    average.query.aggregates[0].function = pb.AGGREGATE_FUNCTION_AVG
    error = await refused(platform.RunQuery(average), Reason.INVALID_ARGUMENT)
    assert [v.field for v in error.field_violations] == ["query.aggregates[0].function"]
    await refused(
        platform.RunQuery(
            _claims_of_shoe_buyers(
                collaboration_id,
                without_target=True,
                request_id="big",
                epsilon_micro=BUDGET_EPSILON_MICRO + 1,
            )
        ),
        Reason.INVALID_ARGUMENT,
    )
    preview = await platform.RunQuery(
        _claims_of_shoe_buyers(collaboration_id, without_target=True, validate_only=True)
    )
    assert preview.privacy_cost.remaining_epsilon_micro == BUDGET_EPSILON_MICRO - 2 * QUERY_EPSILON_MICRO


async def test_preview_spends_nothing_and_a_spent_budget_refuses(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    collaboration_id = await _collaboration(clients, flight, DP)
    platform = clients["platform"].cocreation
    for _ in range(3):
        preview = await platform.RunQuery(
            _claims_of_shoe_buyers(collaboration_id, without_target=False, validate_only=True)
        )
        assert not preview.HasField("result")
        assert preview.privacy_cost == pb.PrivacyCost(
            epsilon_micro=QUERY_EPSILON_MICRO,
            budget_epsilon_micro=BUDGET_EPSILON_MICRO,
            remaining_epsilon_micro=BUDGET_EPSILON_MICRO - QUERY_EPSILON_MICRO,
        )
    # A query may spend more of the budget for less noise: three quarters of it, then the last quarter.
    big = await platform.RunQuery(
        _claims_of_shoe_buyers(
            collaboration_id, without_target=False, request_id="big", epsilon_micro=1_500_000
        )
    )
    assert big.privacy_cost.remaining_epsilon_micro == QUERY_EPSILON_MICRO
    last = await platform.RunQuery(
        _claims_of_shoe_buyers(collaboration_id, without_target=True, request_id="last")
    )
    assert last.privacy_cost.remaining_epsilon_micro == 0
    for validate_only in (True, False):
        error = await refused(
            platform.RunQuery(
                _claims_of_shoe_buyers(
                    collaboration_id, without_target=True, request_id="more", validate_only=validate_only
                )
            ),
            Reason.PRIVACY_BUDGET_EXHAUSTED,
        )
        assert error.code.name == "RESOURCE_EXHAUSTED"
    # The budget is each member's: the insurer has spent nothing, but it may not receive results.
    await refused(
        clients["bank"].cocreation.RunQuery(
            _claims_of_shoe_buyers(collaboration_id, without_target=False, request_id="bank")
        ),
        Reason.ABILITY_MISSING,
    )


async def test_concurrent_queries_never_overspend_and_a_request_spends_once(
    clients: dict[str, AsyncClient], flight: FlightProcess, running: Running
) -> None:
    collaboration_id = await _collaboration(clients, flight, DP)
    platform = clients["platform"].cocreation
    store = CocreationStore(running.server.backend, SYSTEM_CLOCK)
    # The same request sent four times at once: one spend, one answer.
    same = [
        platform.RunQuery(_claims_of_shoe_buyers(collaboration_id, without_target=False, request_id="same"))
        for _ in range(4)
    ]
    answers = await asyncio.gather(*same)
    assert all(a.result == answers[0].result for a in answers)
    assert await store.spent(collaboration_id, "demo-platform") == QUERY_EPSILON_MICRO
    # Three distinct queries at once, with budget for two of them: two answer, one is refused.
    racing = [
        platform.RunQuery(
            _claims_of_shoe_buyers(
                collaboration_id, without_target=bool(i % 2), request_id=f"race-{i}", epsilon_micro=750_000
            )
        )
        for i in range(3)
    ]
    outcomes = await asyncio.gather(*racing, return_exceptions=True)
    refusals = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refusals) == 1, outcomes
    assert getattr(refusals[0], "reason", None) == Reason.PRIVACY_BUDGET_EXHAUSTED
    assert await store.spent(collaboration_id, "demo-platform") == BUDGET_EPSILON_MICRO


async def test_nobody_without_the_abilities_spends_anyones_budget(
    clients: dict[str, AsyncClient], flight: FlightProcess, running: Running
) -> None:
    collaboration_id = await _collaboration(clients, flight, DP)
    store = CocreationStore(running.server.backend, SYSTEM_CLOCK)
    request = _claims_of_shoe_buyers(collaboration_id, without_target=False, request_id="x")
    await refused(clients["operator"].cocreation.RunQuery(request), Reason.COLLABORATION_NOT_FOUND)
    await refused(clients["bank"].cocreation.RunQuery(request), Reason.ABILITY_MISSING)
    preview = _claims_of_shoe_buyers(collaboration_id, without_target=False, validate_only=True)
    await refused(clients["operator"].cocreation.RunQuery(preview), Reason.COLLABORATION_NOT_FOUND)
    for tenant_id in ("demo-operator", "demo-bank", "demo-platform"):
        assert await store.spent(collaboration_id, tenant_id) == 0


async def test_one_persons_rows_are_capped_and_summed_measures_clamped(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    """The contribution bounds the sensitivities rest on: at most `rows_per_join_key_max` rows of a buyer
    are read, and a summed measure is clamped to its bounds. With epsilon 25 per statistic the noise is
    under 3 in absolute value but with probability below e^-30, while the bounds move the answers by more."""
    budget = pb.DifferentialPrivacy(budget_epsilon_micro=100_000_000, query_epsilon_micro=50_000_000)
    collaboration_id = await platform_and_insurer(clients, budget)
    platform = clients["platform"].cocreation
    placed = orders()  # two orders per buyer; returns 0, 1 or 2
    for dataset_id, rows_per_key in (("once", 0), ("twice", 2)):
        await platform.RegisterDataset(
            registration(
                collaboration_id,
                dataset_id,
                dataset_id,
                {"buyer": (STRING, JOIN), "category": (STRING, DIMENSION), "returns": (INT64, MEASURE)},
                pb.AnalysisRule(
                    group_by_columns=["category"],
                    aggregates=[pb.AllowedAggregate(column="returns", functions=[pb.AGGREGATE_FUNCTION_SUM])],
                    min_group_size=SHOP_THRESHOLD,
                    rows_per_join_key_max=rows_per_key,
                    measure_bounds=[pb.MeasureBounds(column="returns", lower=0, upper=1)],
                ),
            )
        )
        with flight.client(demo_keys()["demo-platform"]) as client:
            upload_dataset(client, collaboration_id, dataset_id, tokenize(placed, ["buyer"], SECRET))

    def ask(dataset_id: str, aggregate: pb.Aggregate) -> pb.RunQueryRequest:
        query = pb.Query(
            dataset_ids=[dataset_id], group_by=[_ref(dataset_id, "category")], aggregates=[aggregate]
        )
        return pb.RunQueryRequest(
            collaboration_id=collaboration_id, query=query, request_id=f"{collaboration_id}.{dataset_id}"
        )

    def by_category(response: pb.RunQueryResponse) -> dict[str, int]:
        return {row.cells[0].string_value: row.cells[1].int64_value for row in response.result.rows}

    counted = by_category(
        await platform.RunQuery(ask("once", pb.Aggregate(function=pb.AGGREGATE_FUNCTION_COUNT)))
    )
    summed = by_category(
        await platform.RunQuery(
            ask("twice", pb.Aggregate(function=pb.AGGREGATE_FUNCTION_SUM, column=_ref("twice", "returns")))
        )
    )
    rows = placed.to_pylist()
    for category, buyers in BUYERS.items():
        if buyers < SHOP_THRESHOLD:
            assert category not in counted and category not in summed
            continue
        # One row of each buyer, not both of its orders.
        assert abs(counted[category] - buyers) < 3, (category, counted)
        returns = [row["returns"] for row in rows if row["category"] == category]
        clamped, raw = sum(min(r, 1) for r in returns), sum(returns)
        assert abs(summed[category] - clamped) < 3, (category, summed, clamped, raw)
        if category == "shoes":  # 8 orders of 2 returns: unclamped, the sum would be 8 more
            assert raw - clamped == 8


async def test_the_creator_sets_differential_privacy_before_any_dataset_is_uploaded(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    collaboration_id = await platform_and_insurer(clients)
    platform, bank = clients["platform"].cocreation, clients["bank"].cocreation
    orders_request, claims_request = _datasets(collaboration_id)
    await platform.RegisterDataset(orders_request)
    await bank.RegisterDataset(claims_request)
    turn_on = pb.SetDifferentialPrivacyRequest(collaboration_id=collaboration_id, differential_privacy=DP)
    await refused(bank.SetDifferentialPrivacy(turn_on), Reason.CREATOR_ONLY)
    await refused(
        clients["operator"].cocreation.SetDifferentialPrivacy(turn_on), Reason.COLLABORATION_NOT_FOUND
    )
    too_dear = pb.SetDifferentialPrivacyRequest(
        collaboration_id=collaboration_id,
        differential_privacy=pb.DifferentialPrivacy(budget_epsilon_micro=1_000, query_epsilon_micro=2_000),
    )
    await refused(platform.SetDifferentialPrivacy(too_dear), Reason.INVALID_ARGUMENT)
    turned = await platform.SetDifferentialPrivacy(turn_on)
    assert turned.collaboration.differential_privacy == DP
    _upload(flight, collaboration_id)
    # Rows have been uploaded: the privacy can no longer change.
    richer = pb.SetDifferentialPrivacyRequest(
        collaboration_id=collaboration_id,
        differential_privacy=pb.DifferentialPrivacy(
            budget_epsilon_micro=10 * BUDGET_EPSILON_MICRO, query_epsilon_micro=QUERY_EPSILON_MICRO
        ),
    )
    await refused(platform.SetDifferentialPrivacy(richer), Reason.INVALID_STATE)
    answer = await platform.RunQuery(
        _claims_of_shoe_buyers(collaboration_id, without_target=False, request_id="after")
    )
    assert answer.result.noise.epsilon_micro == QUERY_EPSILON_MICRO
