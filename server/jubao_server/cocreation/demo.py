"""The 运费险 demo collaboration `make run` seeds (`cocreation.demo_orders` > 0): the demo platform's orders
and the demo insurer's policies, drawn by `jubao.bulk.shipping` and tokenized with `DEMO_SECRET` as each
member's SDK would have, stored as their uploads leave them (Arrow IPC chunks in each owner's scope), the
datasets READY, both members active with every ability. Every server process seeds at start; the room's
conditional creation lets one of them write it, and a store that has it already is left as it is.

`seed_shipping` is also the setup of the training bench (`loadtest/cocreation_train_bench.py`)."""

from __future__ import annotations

import functools
from typing import Final

import pyarrow as pa
import structlog
from jubao.bulk.shipping import generate
from jubao.bulk.tokens import tokenize

from jubao_server import limits
from jubao_server.bulk.arrow import to_ipc
from jubao_server.bulk.uploads import chunk_rows
from jubao_server.clock import Clock
from jubao_server.cocreation.ingest import arrow_schema
from jubao_server.cocreation.model import (
    Ability,
    Change,
    Collaboration,
    Column,
    ColumnType,
    Dataset,
    DatasetState,
    Function,
    Member,
    MemberState,
    Role,
    Room,
    Rule,
)
from jubao_server.cocreation.store import CocreationStore
from jubao_server.invariants import ensure

log = structlog.get_logger("jubao.cocreation")

DEMO_COLLABORATION_ID: Final = "co-demo-shipping-insurance"
PLATFORM: Final = "demo-platform"
INSURER: Final = "demo-insurer"
# The secret the demo's members agreed on: public, as everything of the demo is.
DEMO_SECRET: Final = b"jubao demo collaboration secret (public)"
_STRING, _INT64 = ColumnType.STRING, ColumnType.INT64
_ORDERS: Final = (
    Column("order_id", _STRING, Role.JOIN_KEY),
    Column("category", _STRING, Role.DIMENSION),
    Column("buyer_return_rate_bp", _INT64, Role.MEASURE),
    Column("seller_rating", _INT64, Role.MEASURE),
)
_POLICIES: Final = (
    Column("order_id", _STRING, Role.JOIN_KEY),
    Column("premium_minor", _INT64, Role.MEASURE),
    Column("claimed", _INT64, Role.MEASURE),
    Column("claim_minor", _INT64, Role.MEASURE),
)
_YEAR_MS: Final = 365 * 24 * 3600 * 1000


async def seed_demo(store: CocreationStore, clock: Clock, orders: int) -> bool:
    """Seed the demo collaboration with `orders` orders (and a fifth as many policies) unless the store
    has it; whether this call wrote it."""
    if await store.load(DEMO_COLLABORATION_ID) is not None:
        return False
    members = (PLATFORM, INSURER)
    seeded = await seed_shipping(
        store, clock, DEMO_COLLABORATION_ID, members, orders=orders, policies=orders // 5
    )
    if seeded:
        log.info("co-creation demo seeded", collaboration_id=DEMO_COLLABORATION_ID, orders=orders)
    return seeded


async def seed_shipping(
    store: CocreationStore,
    clock: Clock,
    collaboration_id: str,
    members: tuple[str, str],
    *,
    orders: int,
    policies: int,
) -> bool:
    """A collaboration of a platform and an insurer (`members`) with the 运费险 case's orders and policies,
    READY; False (nothing written) if its id is taken."""
    now_ms = clock.wall_ms()
    platform, insurer = members
    abilities = (Ability.CONTRIBUTE, Ability.ANALYZE, Ability.RECEIVE_RESULTS)
    features = ("category", "buyer_return_rate_bp", "seller_rating")
    orders_rule = Rule(
        ("category",), ("category",), (("buyer_return_rate_bp", (Function.AVG,)),), 100, (), training=features
    )
    policies_rule = Rule((), (), (("claimed", (Function.SUM, Function.AVG)),), 100, (), training=("claimed",))
    declared = (
        ("orders", platform, _ORDERS, orders_rule),
        ("policies", insurer, _POLICIES, policies_rule),
    )
    datasets = {
        name: Dataset(
            collaboration_id, name, owner, name, columns, rule, DatasetState.RECEIVING, 0, now_ms, now_ms
        )
        for name, owner, columns, rule in declared
    }
    room = Room(
        Collaboration(collaboration_id, "运费险 (demo)", platform, now_ms, now_ms + _YEAR_MS),
        {t: Member(t, abilities, MemberState.ACTIVE, now_ms) for t in members},
        datasets,
        1,
    )
    # The room first: the process that wins it alone draws and writes the rows.
    if not await store.create(room):
        return False
    case = generate(orders, policies)
    for name, rows in (("orders", case.orders), ("policies", case.policies)):
        await _write_rows(store, datasets[name], tokenize(rows, ["order_id"], DEMO_SECRET))
        await store.change(collaboration_id, functools.partial(_committed, name, rows.num_rows, now_ms))
    return True


def _committed(dataset_id: str, rows: int, now_ms: int, room: Room) -> Change:
    return room.committed(dataset_id, rows, now_ms)


async def _write_rows(store: CocreationStore, dataset: Dataset, table: pa.Table) -> None:
    """The rows stored in chunks as an upload stores them (`ingest.DatasetIngest.receive`)."""
    state = await store.rows_state(dataset.owner, dataset.collaboration_id, dataset.dataset_id)
    for batch in table.cast(arrow_schema(dataset)).to_batches():
        step = chunk_rows(batch, limits.cocreation_chunk_rows_max)
        for start in range(0, batch.num_rows, step):
            part = pa.Table.from_batches([batch.slice(start, step)])
            stored = await store.append_chunk(dataset, state, to_ipc(part), part.num_rows)
            ensure(stored is not None, "the seeding alone writes its rows")
            state = stored if stored is not None else state
