"""`cocreation_train_rows_per_s`: a joint model of the 运费险 case trained on one backend, in this process:
the synthetic orders and policies (`jubao.bulk.shipping`) are stored straight into a collaboration's
datasets as their upload leaves them (Arrow IPC chunks in the owners' scopes, the datasets READY), then a
training runs from its record to the end (both datasets read from storage, joined in DuckDB, the logistic
regression fitted, the model and its audit entry written) and is timed whole. The figure is the joined rows
the model was fitted on per second."""

from __future__ import annotations

import time
import uuid
from typing import Final

import pyarrow as pa
from jubao.bulk.shipping import generate
from jubao_server import limits
from jubao_server.bulk.arrow import to_ipc
from jubao_server.clock import Clock
from jubao_server.cocreation.ingest import arrow_schema
from jubao_server.cocreation.model import (
    Ability,
    Collaboration,
    Column,
    ColumnRef,
    ColumnType,
    Dataset,
    DatasetState,
    Member,
    MemberState,
    Model,
    ModelFamily,
    ModelPhase,
    ModelSpec,
    ModelState,
    Role,
    Room,
    Rule,
    replaced,
)
from jubao_server.cocreation.store import CocreationStore
from jubao_server.cocreation.training import Models, plan
from jubao_server.invariants import ensure
from jubao_server.storage.contract import StorageBackend

from loadtest.report import Figure, figure

PLATFORM: Final = "bench-platform"
INSURER: Final = "bench-insurer"
DAY_MS: Final = 24 * 3600 * 1000
STRING, INT64 = ColumnType.STRING, ColumnType.INT64


async def run_cocreation_train_bench(
    backend: StorageBackend, clock: Clock, orders: int, policies: int
) -> list[Figure]:
    """Train the 运费险 model on `orders` orders and `policies` policies."""
    store = CocreationStore(backend, clock)
    room = await _write_room(store, clock, orders, policies)
    spec = ModelSpec(
        ("orders", "policies"),
        tuple(ColumnRef("orders", c) for c in ("category", "buyer_return_rate_bp", "seller_rating")),
        ColumnRef("policies", "claimed"),
        ModelFamily.LOGISTIC,
    )
    now_ms = clock.wall_ms()
    model = Model(
        room.collaboration.collaboration_id, "bench-model", INSURER, spec, ModelState.RUNNING,
        ModelPhase.READING, 0, now_ms, now_ms,
    )  # fmt: skip
    await store.create_model(model)
    models = Models(store, clock, threads=1)
    started = time.perf_counter()
    done = await models.run(model, plan(room, INSURER, spec))
    seconds = time.perf_counter() - started
    ensure(done.fit is not None and done.fit.rows == policies, f"the bench's model: {done.error_message}")
    notes = (
        f"{orders:,} orders joined with {policies:,} policies on their tokens, 3 features (a category of 6 "
        f"levels, 2 numeric), read from storage, joined, fitted and stored in {seconds:.2f} s"
    )
    return [
        figure("cocreation_train_rows_per_s", round(policies / seconds, 1), "rows/s", backend.name, notes)
    ]


async def _write_room(store: CocreationStore, clock: Clock, orders: int, policies: int) -> Room:
    now_ms = clock.wall_ms()
    collaboration_id = f"co-bench-{uuid.uuid4().hex[:12]}"
    abilities = (Ability.CONTRIBUTE, Ability.ANALYZE, Ability.RECEIVE_RESULTS)
    members = {t: Member(t, abilities, MemberState.ACTIVE, now_ms) for t in (PLATFORM, INSURER)}
    case = generate(orders, policies)
    orders_columns = (
        ("order_id", STRING, Role.JOIN_KEY),
        ("category", STRING, Role.DIMENSION),
        ("buyer_return_rate_bp", INT64, Role.MEASURE),
        ("seller_rating", INT64, Role.MEASURE),
    )
    policies_columns = (
        ("order_id", STRING, Role.JOIN_KEY),
        ("premium_minor", INT64, Role.MEASURE),
        ("claimed", INT64, Role.MEASURE),
        ("claim_minor", INT64, Role.MEASURE),
    )
    features = ("category", "buyer_return_rate_bp", "seller_rating")
    declared = (
        _dataset(collaboration_id, "orders", PLATFORM, orders_columns, features),
        _dataset(collaboration_id, "policies", INSURER, policies_columns, ("claimed",)),
    )
    counts = {"orders": orders, "policies": policies}
    datasets = {
        d.dataset_id: replaced(
            d, row_count=counts[d.dataset_id], create_time_ms=now_ms, update_time_ms=now_ms
        )
        for d in declared
    }
    collaboration = Collaboration(collaboration_id, "bench", PLATFORM, now_ms, now_ms + DAY_MS)
    room = Room(collaboration, members, datasets, 1)
    ensure(await store.create(room), "a fresh bench collaboration")
    await _write_rows(store, datasets["orders"], case.orders)
    await _write_rows(store, datasets["policies"], case.policies)
    return room


def _dataset(
    collaboration_id: str,
    dataset_id: str,
    owner: str,
    columns: tuple[tuple[str, ColumnType, Role], ...],
    training: tuple[str, ...],
) -> Dataset:
    """A READY dataset (its row count and times set by the caller), whose `training` columns may train."""
    rule = Rule((), (), (), limits.cocreation_min_group_size_default, (), training)
    listed = tuple(Column(*c) for c in columns)
    return Dataset(collaboration_id, dataset_id, owner, dataset_id, listed, rule, DatasetState.READY, 0, 0, 0)


async def _write_rows(store: CocreationStore, dataset: Dataset, table: pa.Table) -> None:
    state = await store.rows_state(dataset.owner, dataset.collaboration_id, dataset.dataset_id)
    step = limits.cocreation_chunk_rows_max
    table = table.cast(arrow_schema(dataset))
    for start in range(0, table.num_rows, step):
        part = table.slice(start, step)
        stored = await store.append_chunk(dataset, state, to_ipc(part), part.num_rows)
        ensure(stored is not None, "the bench alone writes its rows")
        state = stored if stored is not None else state
