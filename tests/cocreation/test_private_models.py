"""Joint models under differential privacy, end to end on both backends: a training's cost is shown
before it runs (validate_only), paid once per request id when it starts, refused with nothing stored once
the budget is spent, and its fit is noised (output perturbation, `training.private_fit`); and the
mechanism's premise, checked on the exact minimum: every row's vector has an L2 norm of at most 1, and
one person's rows move the minimum by at most 2R/Λ."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from jubao.bulk.shipping import generate
from jubao.client import AsyncClient, Reason
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao_server.cocreation.model import ColumnRef, Fit, ModelFamily, ModelSpec
from jubao_server.cocreation.privacy import TrainingNoise
from jubao_server.cocreation.training import (
    in_units,
    linear_predictor,
    private_design,
    regularised_minimum,
)

from tests.bulk.support import FlightProcess
from tests.cocreation.support import (
    refused,
)
from tests.cocreation.test_models import ORDERS, POLICIES, shipping_case, trained
from tests.platform.harness import demo_keys

EPSILON_MICRO = 1_000_000
DP = pb.DifferentialPrivacy(budget_epsilon_micro=2 * EPSILON_MICRO, query_epsilon_micro=EPSILON_MICRO)


@pytest.fixture
async def private_shipping(clients: dict[str, AsyncClient], flight: FlightProcess) -> str:
    """The 运费险 case in a collaboration with differential privacy: the buyer's return rate is bounded
    (0 to 10,000 basis points) by its owner, the seller's rating is not."""
    bounds = pb.MeasureBounds(column="buyer_return_rate_bp", lower=0, upper=10_000)
    return await shipping_case(clients, flight, DP, [bounds])


def _ref(dataset_id: str, column: str) -> pb.ColumnRef:
    return pb.ColumnRef(dataset_id=dataset_id, column=column)


def _training(collaboration_id: str, request_id: str, *features: pb.ColumnRef) -> pb.StartTrainingRequest:
    return pb.StartTrainingRequest(
        request_id=request_id,
        collaboration_id=collaboration_id,
        spec=pb.ModelSpec(
            dataset_ids=["orders", "policies"],
            features=features or [_ref("orders", "category"), _ref("orders", "buyer_return_rate_bp")],
            label=_ref("policies", "claimed"),
            family=pb.MODEL_FAMILY_LOGISTIC,
        ),
    )


async def _models(client: AsyncClient, collaboration_id: str) -> list[pb.Model]:
    listed = await client.cocreation.ListModels(pb.ListModelsRequest(collaboration_id=collaboration_id))
    return list(listed.models)


async def test_a_private_training_is_previewed_paid_once_and_noised(
    clients: dict[str, AsyncClient], private_shipping: str, flight: FlightProcess
) -> None:
    bank = clients["bank"]
    preview = _training(private_shipping, "")
    preview.validate_only = True
    for _ in range(2):
        cost = (await bank.cocreation.StartTraining(preview)).privacy_cost
        assert (cost.epsilon_micro, cost.remaining_epsilon_micro) == (EPSILON_MICRO, EPSILON_MICRO)
    assert not await _models(bank, private_shipping), "a preview stores no model"
    unbounded = _training(private_shipping, "dp-0", _ref("orders", "seller_rating"))
    violated = await refused(bank.cocreation.StartTraining(unbounded), Reason.ANALYSIS_RULE_VIOLATED)
    assert "measure_bounds" in violated.message and "seller_rating" in violated.message

    first = await trained(bank, _training(private_shipping, "dp-1"))
    assert first.state == pb.Model.STATE_SUCCEEDED, first.error_message
    assert first.epsilon_micro == EPSILON_MICRO
    again = await trained(bank, _training(private_shipping, "dp-1"))
    assert again.model_id == first.model_id and again.fit == first.fit
    cost = (await bank.cocreation.StartTraining(preview)).privacy_cost
    assert cost.remaining_epsilon_micro == 0, "the retry of dp-1 spent nothing"
    fit = first.fit
    # Released: noised counts and coefficients, no fit metric.
    assert (fit.auc, fit.log_loss, fit.deviance, fit.null_deviance) == ("", "", "", "")
    assert abs(fit.rows - POLICIES) < 200 and 0 < fit.positives < fit.rows
    estimates = {c.term: Decimal(c.estimate) for c in fit.coefficients}
    assert {"intercept", "orders.buyer_return_rate_bp"} < estimates.keys()
    assert estimates["orders.buyer_return_rate_bp"] > 0, "the true relation's sign survives the noise"

    # The insurer scores its policies with the private model (scoring spends nothing): they rank claims.
    with flight.client(demo_keys()["demo-bank"]) as client:
        scores = client.score_dataset(private_shipping, first.model_id, "policies").read_all()
    ppm = scores.column("score_ppm").to_numpy()
    claimed = generate(ORDERS, POLICIES, seed=7).policies.column("claimed").to_numpy()
    assert scores.num_rows == POLICIES and ppm[claimed == 1].mean() > ppm[claimed == 0].mean()

    second = await trained(bank, _training(private_shipping, "dp-2"))
    assert second.fit.coefficients != fit.coefficients, "each training draws its own noise"
    exhausted = await refused(
        bank.cocreation.StartTraining(_training(private_shipping, "dp-3")), Reason.PRIVACY_BUDGET_EXHAUSTED
    )
    assert exhausted.code.name == "RESOURCE_EXHAUSTED"
    assert sorted(m.model_id for m in await _models(bank, private_shipping)) == sorted(
        [first.model_id, second.model_id]
    ), "a refused training stores nothing"
    entries = (
        await clients["platform"].cocreation.ListAuditEntries(
            pb.ListAuditEntriesRequest(collaboration_id=private_shipping)
        )
    ).entries
    trainings = [e for e in entries if e.model_id and not e.scoring]
    assert sorted(e.epsilon_micro for e in trainings) == [EPSILON_MICRO, EPSILON_MICRO]


def _joined(rng: np.random.Generator, rows: int) -> pa.Table:
    """Joined rows as `private_fit` reads them: a key, a numeric and a categorical feature, a label."""
    return pa.table(
        {
            "__key": [f"k{n}" for n in range(rows)],
            "f0": rng.integers(-50, 400, size=rows),
            "f1": rng.choice(["a", "b", "c"], size=rows).tolist(),
            "__label": rng.integers(0, 2, size=rows),
        }
    )


def test_one_person_moves_the_exact_private_minimum_by_at_most_its_sensitivity() -> None:
    """The premise of output perturbation, on the exact (noiseless) minimum: every row's vector has a norm
    of at most 1, that of a person whose numeric feature lies far outside its bounds too (the clamp and
    the scale hold it), and adding that person moves the coefficients by at most 2/Λ in L2 norm."""
    rng = np.random.default_rng(16_002)
    spec = ModelSpec(
        ("d",), (ColumnRef("d", "f0"), ColumnRef("d", "f1")), ColumnRef("d", "__label"), ModelFamily.LOGISTIC
    )
    noise = TrainingNoise(EPSILON_MICRO, 1, ((0, 300), None))
    levels = ("a", "b", "c")
    base = _joined(rng, 400)
    penalty = 0.5
    moved = []
    for outlier in (10**9, -(10**9), 150):
        for label in (0, 1):
            person = pa.table(
                {"__key": ["target"], "f0": [outlier], "f1": ["c"], "__label": [label]}, schema=base.schema
            )
            minima = []
            for table in (base, pa.concat_tables([base, person])):
                matrix, _ = private_design(table, spec, noise, levels_kept=(levels,))
                assert np.linalg.norm(matrix, axis=1).max() <= 1 + 1e-12
                minima.append(regularised_minimum(matrix, table.column("__label").to_numpy(), penalty))
            moved.append(float(np.linalg.norm(minima[0] - minima[1])))
    assert 0 < max(moved) <= 2 / penalty


def test_a_private_fit_in_the_features_units_predicts_what_its_design_does() -> None:
    """The coefficients a private fit releases (in the features' own units, the numeric one centred by its
    bounds) give rows within the bounds the log-odds of the design they were fitted on."""
    rng = np.random.default_rng(16_003)
    spec = ModelSpec(
        ("d",), (ColumnRef("d", "f0"), ColumnRef("d", "f1")), ColumnRef("d", "__label"), ModelFamily.LOGISTIC
    )
    noise = TrainingNoise(EPSILON_MICRO, 1, ((-50, 400), None))
    table = _joined(rng, 300)
    matrix, columns = private_design(table, spec, noise, levels_kept=(("b", "a", "c"),))
    weights = regularised_minimum(matrix, table.column("__label").to_numpy(), 0.05)
    coefficients = in_units(spec, columns, weights.tolist())
    assert [c.term for c in coefficients] == ["intercept", "d.f0", "d.f1=a", "d.f1=c"]
    found = Fit(300, 0, coefficients, "", "", "", "", 0, 2, ())
    features = {ColumnRef("d", "f0"): table.column("f0"), ColumnRef("d", "f1"): table.column("f1")}
    predicted = linear_predictor(found, features, table.num_rows)
    # Within the rounding of the 6 places each estimate keeps (half a millionth, times |f0| <= 400).
    assert np.abs(predicted - matrix @ weights).max() <= 0.5e-6 * (1 + 400 + 1)
