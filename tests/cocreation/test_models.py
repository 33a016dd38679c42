"""Joint models end to end (the 运费险 case on the synthetic data of `jubao.bulk.shipping`): the platform's
orders and the insurer's policies, uploaded tokenized over Arrow Flight; the insurer trains a logistic
regression of claims on the platform's features inside jubao (a long-running operation), both receive its
coefficients and fit and never a row, and the insurer downloads the scores of its own policies over Flight.
Every request that breaks a rule is refused before a row is read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
import pytest
from jubao.bulk import schemas
from jubao.bulk.cocreation import token, tokenize, upload_dataset
from jubao.bulk.shipping import CATEGORY_EFFECTS, RETURN_RATE_PER_BP, SELLER_RATING_PER_TENTH, generate
from jubao.client import AsyncClient, JubaoError, Reason
from jubao.cocreation.v1 import cocreation_pb2 as pb

from tests.bulk.support import FlightProcess
from tests.cocreation.support import (
    ALL_ABILITIES,
    SECRET,
    expired_collaboration,
    platform_with_bank,
    refused,
    shipping_orders_dataset,
    shipping_policies_dataset,
)
from tests.platform.harness import demo_keys

ORDERS, POLICIES = 30_000, 12_000
POLLS_MAX = 600


@pytest.fixture
async def shipping(clients: dict[str, AsyncClient], flight: FlightProcess) -> str:
    """The platform (every ability) and the bank as the insurer (every ability), the orders and the policies
    of the synthetic case uploaded by their owners."""
    return await shipping_case(clients, flight)


async def shipping_case(
    clients: dict[str, AsyncClient],
    flight: FlightProcess,
    privacy: pb.DifferentialPrivacy | None = None,
    bounds: Sequence[pb.MeasureBounds] = (),
) -> str:
    """The synthetic case's collaboration (with differential privacy when `privacy` is set, and the
    orders' rule bounding the measures `bounds` names), its datasets uploaded; its id."""
    platform, bank = clients["platform"], clients["bank"]
    collaboration_id = await platform_with_bank(platform, bank, ALL_ABILITIES, privacy)
    orders = shipping_orders_dataset(collaboration_id)
    orders.rule.measure_bounds.extend(bounds)
    await platform.cocreation.RegisterDataset(orders)
    await bank.cocreation.RegisterDataset(shipping_policies_dataset(collaboration_id))
    case = generate(ORDERS, POLICIES, seed=7)
    keys = demo_keys()
    with flight.client(keys["demo-platform"]) as client:
        upload_dataset(client, collaboration_id, "orders", tokenize(case.orders, ["order_id"], SECRET))
    with flight.client(keys["demo-bank"]) as client:
        upload_dataset(client, collaboration_id, "policies", tokenize(case.policies, ["order_id"], SECRET))
    return collaboration_id


def _ref(dataset_id: str, column: str) -> pb.ColumnRef:
    return pb.ColumnRef(dataset_id=dataset_id, column=column)


FEATURES = [
    _ref("orders", "category"),
    _ref("orders", "buyer_return_rate_bp"),
    _ref("orders", "seller_rating"),
]


def _training(
    collaboration_id: str,
    features: list[pb.ColumnRef] | None = None,
    label: pb.ColumnRef | None = None,
    dataset_ids: tuple[str, ...] = ("orders", "policies"),
    request_id: str = "",
) -> pb.StartTrainingRequest:
    return pb.StartTrainingRequest(
        request_id=request_id,
        collaboration_id=collaboration_id,
        spec=pb.ModelSpec(
            dataset_ids=dataset_ids,
            features=FEATURES if features is None else features,
            label=label or _ref("policies", "claimed"),
            family=pb.MODEL_FAMILY_LOGISTIC,
        ),
    )


async def trained(client: AsyncClient, request: pb.StartTrainingRequest) -> pb.Model:
    """Start a training and follow it (GetModel) until it is done."""
    model = (await client.cocreation.StartTraining(request)).model
    for _ in range(POLLS_MAX):
        if model.done:
            return model
        await asyncio.sleep(0.05)
        model = (await client.cocreation.GetModel(pb.GetModelRequest(name=model.name))).model
    raise AssertionError(f"model {model.name} still {pb.Model.State.Name(model.state)}")


def _estimates(model: pb.Model) -> dict[str, float]:
    return {c.term: float(Decimal(c.estimate)) for c in model.fit.coefficients}


async def test_a_model_trained_on_the_join_recovers_the_true_relation(
    clients: dict[str, AsyncClient], shipping: str
) -> None:
    bank, platform = clients["bank"], clients["platform"]
    started = await bank.cocreation.StartTraining(_training(shipping, request_id="train-1"))
    assert started.model.state == pb.Model.STATE_RUNNING and not started.model.done
    model = await trained(bank, _training(shipping, request_id="train-1"))
    assert model.model_id == started.model.model_id
    other = _training(shipping, features=FEATURES[:1], request_id="train-1")
    await refused(bank.cocreation.StartTraining(other), Reason.REQUEST_ID_REUSED)
    assert model.state == pb.Model.STATE_SUCCEEDED and model.phase == pb.Model.PHASE_DONE, model.error_message
    fit = model.fit
    assert fit.rows == POLICIES and 0 < fit.positives < POLICIES
    assert fit.min_group_size == 50 and fit.levels_pooled == 0
    assert list(fit.reference_levels) == ["orders.category=apparel"]
    estimates = _estimates(model)
    assert estimates.keys() == {
        "intercept",
        "orders.buyer_return_rate_bp",
        "orders.seller_rating",
        *(f"orders.category={c}" for c in CATEGORY_EFFECTS if c != "apparel"),
    }
    # The generator's relation, recovered: sign and rough size.
    assert estimates["orders.buyer_return_rate_bp"] == pytest.approx(RETURN_RATE_PER_BP, rel=0.2)
    assert estimates["orders.seller_rating"] == pytest.approx(SELLER_RATING_PER_TENTH, rel=0.5)
    books = CATEGORY_EFFECTS["books"] - CATEGORY_EFFECTS["apparel"]
    assert estimates["orders.category=books"] == pytest.approx(books, abs=0.4)
    # Decimals with 6 places, never floats on the wire.
    assert all(len(c.estimate.split(".")[1]) == 6 for c in fit.coefficients)
    assert 0.6 < float(Decimal(fit.auc)) < 0.8
    assert Decimal(fit.deviance) < Decimal(fit.null_deviance)
    assert Decimal(fit.deviance) == pytest.approx(2 * POLICIES * Decimal(fit.log_loss), rel=Decimal("1e-5"))
    seen = (await platform.cocreation.GetModel(pb.GetModelRequest(name=model.name))).model
    assert seen.fit == fit and seen.trainer_tenant_id == "demo-bank"
    for client in (bank, platform):
        entries = (
            await client.cocreation.ListAuditEntries(pb.ListAuditEntriesRequest(collaboration_id=shipping))
        ).entries
        (entry,) = [e for e in entries if e.model_id == model.model_id]
        assert entry.analyst_tenant_id == "demo-bank" and not entry.HasField("query")
        assert list(entry.dataset_ids) == ["orders", "policies"]
        assert entry.rows_scanned == ORDERS + POLICIES and entry.model_spec.label.column == "claimed"


async def test_training_that_breaks_a_rule_is_refused_before_anything_is_read(
    clients: dict[str, AsyncClient], shipping: str
) -> None:
    bank = clients["bank"]
    premium = await refused(
        bank.cocreation.StartTraining(
            _training(shipping, features=[*FEATURES, _ref("policies", "premium_minor")])
        ),
        Reason.ANALYSIS_RULE_VIOLATED,
    )
    assert "premium_minor" in premium.message and "training_columns" in premium.message
    # A join key is never a feature: no rule can list it among its training columns.
    await refused(
        bank.cocreation.StartTraining(_training(shipping, features=[_ref("orders", "order_id")])),
        Reason.ANALYSIS_RULE_VIOLATED,
    )
    await refused(
        bank.cocreation.StartTraining(_training(shipping, label=_ref("orders", "category"))),
        Reason.INVALID_ARGUMENT,
    )
    await refused(
        bank.cocreation.StartTraining(_training(shipping, dataset_ids=("orders", "policies", "nowhere"))),
        Reason.DATASET_NOT_FOUND,
    )
    await refused(
        clients["operator"].cocreation.StartTraining(_training(shipping)), Reason.COLLABORATION_NOT_FOUND
    )
    await refused(
        bank.cocreation.GetModel(pb.GetModelRequest(name=f"collaborations/{shipping}/models/m-none")),
        Reason.MODEL_NOT_FOUND,
    )
    entries = (
        await bank.cocreation.ListAuditEntries(pb.ListAuditEntriesRequest(collaboration_id=shipping))
    ).entries
    assert not entries, "a refused training reads nothing"


async def test_a_join_of_fewer_keys_than_the_threshold_trains_nothing(
    clients: dict[str, AsyncClient], shipping: str, flight: FlightProcess
) -> None:
    """Policies on 60 orders the platform never had: their join is empty. The bank's strict copy (a
    threshold of 1,000) is refused at once: its 60 rows cannot make 1,000 keys."""
    bank = clients["bank"]
    strangers = pa.table(
        {
            "order_id": [f"x{n}" for n in range(60)],
            "premium_minor": [25] * 60,
            "claimed": [n % 2 for n in range(60)],
            "claim_minor": [0] * 60,
        }
    )
    for dataset_id, minimum in (("strangers", 0), ("strict", 1_000)):
        await bank.cocreation.RegisterDataset(shipping_policies_dataset(shipping, dataset_id, minimum))
        with flight.client(demo_keys()["demo-bank"]) as client:
            upload_dataset(client, shipping, dataset_id, tokenize(strangers, ["order_id"], SECRET))
    strict = _training(shipping, label=_ref("strict", "claimed"), dataset_ids=("orders", "strict"))
    await refused(bank.cocreation.StartTraining(strict), Reason.TOO_FEW_ROWS)
    empty = _training(shipping, label=_ref("strangers", "claimed"), dataset_ids=("orders", "strangers"))
    model = await trained(bank, empty)
    assert model.state == pb.Model.STATE_FAILED and model.done
    assert model.error_reason == Reason.TOO_FEW_ROWS.value and not model.HasField("fit")


async def test_the_insurer_scores_its_own_policies_and_nobody_else_can(
    clients: dict[str, AsyncClient], shipping: str, flight: FlightProcess
) -> None:
    model = await trained(clients["bank"], _training(shipping))
    keys = demo_keys()
    with flight.client(keys["demo-bank"]) as client:
        scores = client.score_dataset(shipping, model.model_id, "policies").read_all()
    assert scores.schema == schemas.SCORES
    assert scores.num_rows == POLICIES
    assert scores.column("row").to_pylist() == list(range(POLICIES))
    case = generate(ORDERS, POLICIES, seed=7)
    first = case.policies.column("order_id")[0].as_py()
    assert scores.column("token")[0].as_py() == token(SECRET, first)
    ppm = scores.column("score_ppm").to_numpy()
    assert ((ppm > 0) & (ppm < 1_000_000)).all()
    claimed = case.policies.column("claimed").to_numpy()
    # The scores rank the claims: the claimed policies' mean score is well above the others'.
    assert ppm[claimed == 1].mean() > 1.3 * ppm[claimed == 0].mean()
    with flight.client(keys["demo-platform"]) as client:
        with pytest.raises(JubaoError) as other:
            client.score_dataset(shipping, model.model_id, "policies").read_all()
        assert other.value.reason == Reason.NOT_DATASET_OWNER
    with flight.client(keys["demo-operator"]) as client:
        with pytest.raises(JubaoError) as stranger:
            client.score_dataset(shipping, model.model_id, "policies").read_all()
        assert stranger.value.reason == Reason.COLLABORATION_NOT_FOUND
    with flight.client(keys["demo-bank"]) as client:
        with pytest.raises(JubaoError) as unknown:
            client.score_dataset(shipping, "m-none", "policies").read_all()
        assert unknown.value.reason == Reason.MODEL_NOT_FOUND
    entries = (
        await clients["platform"].cocreation.ListAuditEntries(
            pb.ListAuditEntriesRequest(collaboration_id=shipping)
        )
    ).entries
    (scoring,) = [e for e in entries if e.scoring]
    assert scoring.analyst_tenant_id == "demo-bank" and scoring.groups_returned == POLICIES
    assert list(scoring.dataset_ids) == ["policies", "orders"]


async def test_an_expired_collaboration_trains_and_scores_nothing(
    clients: dict[str, AsyncClient], flight: FlightProcess
) -> None:
    platform = clients["platform"]
    collaboration_id = await expired_collaboration(platform)
    await refused(
        platform.cocreation.StartTraining(_training(collaboration_id)), Reason.COLLABORATION_EXPIRED
    )
    with flight.client(demo_keys()["demo-platform"]) as client:
        with pytest.raises(JubaoError) as expired:
            client.score_dataset(collaboration_id, "m-any", "orders").read_all()
        assert expired.value.reason == Reason.COLLABORATION_EXPIRED


async def test_members_list_the_models_page_by_page(clients: dict[str, AsyncClient], shipping: str) -> None:
    bank, platform = clients["bank"], clients["platform"]
    first = await trained(bank, _training(shipping, request_id="list-1"))
    second = await trained(platform, _training(shipping, features=FEATURES[1:], request_id="list-2"))
    listed: list[pb.Model] = []
    request = pb.ListModelsRequest(collaboration_id=shipping, page_size=1)
    for _ in range(3):
        page = await platform.cocreation.ListModels(request)
        assert len(page.models) <= 1
        listed += page.models
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert sorted(m.model_id for m in listed) == sorted([first.model_id, second.model_id])
    assert [m.model_id for m in listed] == sorted(m.model_id for m in listed)
    # Each as GetModel shows it to the caller.
    for model in listed:
        got = (await platform.cocreation.GetModel(pb.GetModelRequest(name=model.name))).model
        assert model == got and model.HasField("fit")
    await refused(
        clients["operator"].cocreation.ListModels(pb.ListModelsRequest(collaboration_id=shipping)),
        Reason.COLLABORATION_NOT_FOUND,
    )
    other = pb.ListModelsRequest(collaboration_id="co-elsewhere", page_token=request.page_token)
    await refused(platform.cocreation.ListModels(other), Reason.INVALID_PAGE_TOKEN)
