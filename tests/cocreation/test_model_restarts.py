"""A training whose server stopped mid-run does not stay RUNNING: once its lease lapses, the next call
that reads the model (in another server) resumes it from its stored request and it succeeds with the fit
an uninterrupted run gives; a request that no longer passes its checks fails the model with the reason;
a model cut short on every run fails as TRAINING_INTERRUPTED. Two `Cocreation` objects on one store are
two server processes: `stop` cancels the runs in flight, as a stopping server does."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from jubao.client import Reason
from jubao_server import limits
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.cocreation.demo import seed_shipping
from jubao_server.cocreation.model import ColumnRef, Model, ModelFamily, ModelSpec, ModelState
from jubao_server.cocreation.rooms import Cocreation
from jubao_server.storage.contract import StorageBackend

LEASE_MS = 1_500
PLATFORM, INSURER = "restart-platform", "restart-insurer"
SPEC = ModelSpec(
    ("orders", "policies"),
    (ColumnRef("orders", "category"), ColumnRef("orders", "buyer_return_rate_bp")),
    ColumnRef("policies", "claimed"),
    ModelFamily.LOGISTIC,
)
POLLS_MAX = 1_200


def _server(backend: StorageBackend) -> Cocreation:
    return Cocreation(backend, SYSTEM_CLOCK, model_lease_ms=LEASE_MS)


async def _collaboration(server: Cocreation) -> str:
    collaboration_id = f"co-restart-{uuid.uuid4().hex[:12]}"
    members = (PLATFORM, INSURER)
    assert await seed_shipping(
        server.store, SYSTEM_CLOCK, collaboration_id, members, orders=5_000, policies=1_000
    )
    return collaboration_id


async def _model(server: Cocreation, collaboration_id: str, model_id: str) -> Model:
    model, _ = await server.model(INSURER, collaboration_id, model_id)
    return model


async def _done(server: Cocreation, collaboration_id: str, model_id: str) -> Model:
    for _ in range(POLLS_MAX):
        model = await _model(server, collaboration_id, model_id)
        if model.state is not ModelState.RUNNING:
            return model
        await asyncio.sleep(0.05)
    raise AssertionError(f"model {model_id} still running")


async def _lapse() -> None:
    await asyncio.sleep(LEASE_MS / 1000 + 0.1)


async def test_a_training_cut_short_by_a_stopped_server_is_resumed_by_another(
    store: tuple[StorageBackend, dict[str, str]],
) -> None:
    backend, _ = store
    first = _server(backend)
    collaboration_id = await _collaboration(first)
    started = await first.train(INSURER, collaboration_id, "cut-1", SPEC)
    await first.stop()  # the server stops with the training in flight
    second = _server(backend)
    try:
        held = await _model(second, collaboration_id, started.model_id)
        assert held.state is ModelState.RUNNING and held.runs == 1, "a live lease is not taken over"
        await _lapse()
        resumed = await _done(second, collaboration_id, started.model_id)
        assert resumed.state is ModelState.SUCCEEDED and resumed.runs == 2, resumed.error_message
        whole = await second.train(INSURER, collaboration_id, "whole-1", SPEC)
        control = await _done(second, collaboration_id, whole.model_id)
        assert resumed.fit is not None and control.fit is not None
        assert resumed.fit.rows == control.fit.rows == 1_000
        for mine, theirs in zip(resumed.fit.coefficients, control.fit.coefficients, strict=True):
            assert mine.term == theirs.term
            assert abs(Decimal(mine.estimate) - Decimal(theirs.estimate)) <= Decimal("0.000002")
        # A retry of the request answers the resumed model; its run is not started again.
        again = await second.train(INSURER, collaboration_id, "cut-1", SPEC)
        assert again == resumed
    finally:
        await second.stop()


async def test_a_training_that_no_longer_passes_its_checks_fails_and_one_always_cut_short_gives_up(
    store: tuple[StorageBackend, dict[str, str]],
) -> None:
    backend, _ = store
    server = _server(backend)
    collaboration_id = await _collaboration(server)
    withdrawn = await server.train(INSURER, collaboration_id, "withdrawn-1", SPEC)
    interrupted = await server.train(INSURER, collaboration_id, "interrupted-1", SPEC)
    await server.stop()
    for run in range(2, limits.cocreation_model_runs_max + 1):
        await _lapse()
        server = _server(backend)
        model = await _model(server, collaboration_id, interrupted.model_id)
        assert (model.state, model.runs) == (ModelState.RUNNING, run)
        await server.stop()  # cut short again, before its run reads a row
    await _lapse()
    server = _server(backend)
    try:
        await server.withdraw(PLATFORM, collaboration_id, "orders")
        failed = await _model(server, collaboration_id, withdrawn.model_id)
        assert failed.state is ModelState.FAILED and failed.error_reason == Reason.DATASET_WITHDRAWN.value
        gave_up = await _model(server, collaboration_id, interrupted.model_id)
        assert gave_up.state is ModelState.FAILED
        assert gave_up.error_reason == Reason.TRAINING_INTERRUPTED.value, gave_up.error_message
        assert f"{limits.cocreation_model_runs_max} times" in gave_up.error_message
    finally:
        await server.stop()
