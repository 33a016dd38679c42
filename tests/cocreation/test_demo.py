"""The 运费险 demo collaboration `make run` seeds: written once whatever the number of server processes
that seed it, both datasets ready with the members' tokens, and answering the walk-through's query."""

from __future__ import annotations

from jubao.bulk.shipping import CATEGORY_EFFECTS, generate
from jubao.bulk.tokens import token
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.cocreation.demo import DEMO_COLLABORATION_ID, DEMO_SECRET, INSURER, seed_demo
from jubao_server.cocreation.model import Aggregate, ColumnRef, DatasetState, Function, Query
from jubao_server.cocreation.query import read_rows
from jubao_server.cocreation.rooms import Cocreation
from jubao_server.storage.contract import StorageBackend

ORDERS = 10_000


async def test_the_demo_is_seeded_once_and_answers_the_claim_rate_by_category(
    store: tuple[StorageBackend, dict[str, str]],
) -> None:
    backend, _ = store
    cocreation = Cocreation(backend, SYSTEM_CLOCK)
    await seed_demo(cocreation.store, SYSTEM_CLOCK, ORDERS)  # a Cassandra keyspace may have it already
    assert not await seed_demo(cocreation.store, SYSTEM_CLOCK, ORDERS)
    room = await cocreation.room(INSURER, DEMO_COLLABORATION_ID)
    assert {d.dataset_id: (d.owner, d.state, d.row_count) for d in room.datasets.values()} == {
        "orders": ("demo-platform", DatasetState.READY, ORDERS),
        "policies": (INSURER, DatasetState.READY, ORDERS // 5),
    }
    stored = await read_rows(cocreation.store, room.dataset("policies"), ["order_id"])
    first = generate(ORDERS, ORDERS // 5).policies.column("order_id")[0].as_py()
    assert stored.column("order_id")[0].as_py() == token(DEMO_SECRET, first)
    claim_rate = Query(
        ("orders", "policies"),
        (),
        (ColumnRef("orders", "category"),),
        (Aggregate(Function.COUNT, None), Aggregate(Function.AVG, ColumnRef("policies", "claimed"))),
    )
    result, _ = await cocreation.query(INSURER, DEMO_COLLABORATION_ID, claim_rate)
    assert sorted(result.rows.column(0).to_pylist()) == sorted(CATEGORY_EFFECTS)
    assert sum(result.rows.column(1).to_pylist()) == ORDERS // 5 and result.groups_suppressed == 0
