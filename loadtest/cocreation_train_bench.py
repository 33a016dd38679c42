"""`cocreation_train_rows_per_s`: a joint model of the 运费险 case trained on one backend, in this process:
the synthetic orders and policies (`jubao.bulk.shipping`) are stored straight into a collaboration's
datasets as their upload leaves them (`cocreation.demo.seed_shipping`, as `make run` seeds its demo), then a
training runs from its record to the end (both datasets read from storage, joined in DuckDB, the logistic
regression fitted, the model and its audit entry written) and is timed whole. The figure is the joined rows
the model was fitted on per second."""

from __future__ import annotations

import time
import uuid
from typing import Final

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.cocreation.demo import seed_shipping
from jubao_server.cocreation.model import (
    ColumnRef,
    Model,
    ModelFamily,
    ModelPhase,
    ModelSpec,
    ModelState,
)
from jubao_server.cocreation.store import CocreationStore
from jubao_server.cocreation.training import Models, TrainingPlan, plan
from jubao_server.invariants import ensure
from jubao_server.storage.contract import StorageBackend

from loadtest.report import Figure, figure

MEMBERS: Final = ("bench-platform", "bench-insurer")
INSURER: Final = MEMBERS[1]


async def run_cocreation_train_bench(
    backend: StorageBackend, clock: Clock, orders: int, policies: int
) -> list[Figure]:
    """Train the 运费险 model on `orders` orders and `policies` policies."""
    store = CocreationStore(backend, clock)
    collaboration_id = f"co-bench-{uuid.uuid4().hex[:12]}"
    seeded = await seed_shipping(store, clock, collaboration_id, MEMBERS, orders=orders, policies=policies)
    ensure(seeded, "a fresh bench collaboration")
    room = await store.load(collaboration_id)
    ensure(room is not None, "the bench's room is stored")
    if room is None:
        return []
    spec = ModelSpec(
        ("orders", "policies"),
        tuple(ColumnRef("orders", c) for c in ("category", "buyer_return_rate_bp", "seller_rating")),
        ColumnRef("policies", "claimed"),
        ModelFamily.LOGISTIC,
    )
    models = Models(store, clock, threads=1, lease_ms=limits.cocreation_model_lease_ms_default)
    checked = plan(room, INSURER, spec)
    # Two trainings: the first of a process also loads scikit-learn and DuckDB; the second is the figure.
    seconds = [await _timed(store, models, clock, checked, f"bench-model-{run}") for run in range(2)]
    notes = (
        f"{orders:,} orders joined with {policies:,} policies on their tokens, 3 features (a category of 6 "
        f"levels, 2 numeric), read from storage, joined, fitted and stored in {seconds[1]:.2f} s (the "
        f"process's first training, loading scikit-learn and DuckDB: {seconds[0]:.2f} s)"
    )
    return [
        figure("cocreation_train_rows_per_s", round(policies / seconds[1], 1), "rows/s", backend.name, notes)
    ]


async def _timed(
    store: CocreationStore, models: Models, clock: Clock, checked: TrainingPlan, model_id: str
) -> float:
    """The seconds one training takes, from its stored record to its stored model."""
    now_ms = clock.wall_ms()
    model = Model(
        checked.datasets[0].collaboration_id, model_id, INSURER, checked.spec, ModelState.RUNNING,
        ModelPhase.READING, 0, now_ms, now_ms,
    )  # fmt: skip
    stored, _ = await store.create_model(model)
    started = time.perf_counter()
    done = await models.run(stored, checked)
    seconds = time.perf_counter() - started
    rows = checked.datasets[1].row_count
    ensure(done is not None and done.fit is not None and done.fit.rows == rows, f"the bench's model: {done}")
    return seconds
