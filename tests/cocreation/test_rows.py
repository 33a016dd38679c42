"""A dataset's rows over Arrow Flight, on every shared backend: only its owner uploads them, tokenized;
they are stored once however often the upload is sent; a withdrawal deletes them and takes no more."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest
from jubao.bulk.client import BulkClient
from jubao.bulk.cocreation import tokenize, upload_dataset
from jubao.errors import JubaoError
from jubao.reasons import Reason
from jubao_server.bulk.arrow import to_ipc
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.cocreation.convert import dataset_of
from jubao_server.cocreation.ingest import arrow_schema
from jubao_server.cocreation.model import Ability, Aggregate, ColumnRef, DatasetState, Filter, Function, Query
from jubao_server.cocreation.query import plan, run
from jubao_server.cocreation.rooms import Cocreation
from jubao_server.errors import ApiError
from jubao_server.storage.contract import StorageBackend

from tests.bulk.support import FlightProcess
from tests.cocreation.support import claims_dataset, grant_cocreation

SECRET = b"agreed-out-of-band-0123456789abcdef"
ROWS = 5000


def _claims(rows: int) -> pa.Table:
    return pa.table(
        {
            "buyer": [f"138{i:08d}" for i in range(rows)],
            "category": [("shoes", "books", "toys")[i % 3] for i in range(rows)],
            "claimed": [i % 2 for i in range(rows)],
            "claim_minor": [(i % 2) * 1200 for i in range(rows)],
            "note": ["private" for _ in range(rows)],
        }
    )


async def _room(backend: StorageBackend) -> tuple[Cocreation, str]:
    """demo-platform's collaboration with demo-bank contributing the dataset `claims`."""
    await grant_cocreation(backend)
    co = Cocreation(backend, SYSTEM_CLOCK)
    room = await co.create(
        "demo-platform",
        "",
        "运费险",
        (Ability.ANALYZE, Ability.CONTRIBUTE, Ability.RECEIVE_RESULTS),
        SYSTEM_CLOCK.wall_ms() + 86_400_000,
    )
    collaboration_id = room.collaboration.collaboration_id
    await co.invite("demo-platform", collaboration_id, "demo-bank", (Ability.CONTRIBUTE,))
    await co.accept("demo-bank", collaboration_id)
    await co.register(
        "demo-bank", dataset_of(claims_dataset(collaboration_id), "demo-bank", SYSTEM_CLOCK.wall_ms())
    )
    return co, collaboration_id


def _refused(reason: Reason, client: BulkClient, collaboration_id: str, table: pa.Table) -> None:
    with pytest.raises(JubaoError) as caught:
        upload_dataset(client, collaboration_id, "claims", table)
    assert caught.value.reason == reason, caught.value


async def _stored_rows(co: Cocreation, collaboration_id: str) -> pa.Table:
    chunks = [
        pa.ipc.open_stream(data).read_all()
        async for data in co.store.chunks("demo-bank", collaboration_id, "claims")
    ]
    return pa.concat_tables(chunks) if chunks else pa.table({})


async def test_the_owner_uploads_tokenized_rows_once_and_nobody_else_can(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    co, collaboration_id = await _room(store[0])
    table = tokenize(_claims(ROWS), ["buyer"], SECRET)

    with flight_process.client(keys["demo-platform"]) as creator:
        _refused(Reason.NOT_DATASET_OWNER, creator, collaboration_id, table)
    with flight_process.client(keys["demo-operator"]) as outsider:
        _refused(Reason.COLLABORATION_NOT_FOUND, outsider, collaboration_id, table)
    with flight_process.client(keys["demo-fund"]) as unentitled:
        _refused(Reason.PRODUCT_NOT_ENABLED, unentitled, collaboration_id, table)

    with flight_process.client(keys["demo-bank"]) as bank:
        _refused(Reason.INVALID_ARGUMENT, bank, collaboration_id, _claims(10))  # join keys in clear
        first = upload_dataset(bank, collaboration_id, "claims", table.slice(0, 1000))
        assert (first.rows_received, first.rows_sent) == (1000, 1000)
        # Committed: the dataset is ready with its rows, and takes no more.
        room = await co.room("demo-bank", collaboration_id)
        assert (room.dataset("claims").state, room.dataset("claims").row_count) == (DatasetState.READY, 1000)
        _refused(Reason.UPLOAD_COMMITTED, bank, collaboration_id, table)
        # Sent again, the same rows store nothing twice.
        again = upload_dataset(bank, collaboration_id, "claims", table.slice(0, 1000))
        assert (again.rows_received, again.rows_sent) == (1000, 0)

    stored = await _stored_rows(co, collaboration_id)
    assert stored.equals(table.slice(0, 1000).cast(stored.schema))
    assert "13800000000" not in stored.column("buyer").to_pylist()

    await co.withdraw("demo-bank", collaboration_id, "claims")
    assert (await _stored_rows(co, collaboration_id)).num_rows == 0
    with flight_process.client(keys["demo-bank"]) as bank:
        _refused(Reason.DATASET_WITHDRAWN, bank, collaboration_id, table)


async def test_a_broken_upload_resumes_where_the_stored_rows_end(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    co, collaboration_id = await _room(store[0])
    table = tokenize(_claims(ROWS), ["buyer"], SECRET)
    state = await co.store.rows_state("demo-bank", collaboration_id, "claims")
    room = await co.room("demo-bank", collaboration_id)
    first_part = table.slice(0, 2000).to_batches()[0]
    # Rows stored without a commit, as a DoPut cut short leaves them.
    await co.store.append_chunk(
        room.dataset("claims"),
        state,
        to_ipc(pa.Table.from_batches([first_part]).cast(arrow_schema(room.dataset("claims")))),
        2000,
    )
    with flight_process.client(keys["demo-bank"]) as bank:
        receipt = upload_dataset(bank, collaboration_id, "claims", table)
    assert (receipt.rows_received, receipt.rows_sent) == (ROWS, ROWS - 2000)
    assert (await _stored_rows(co, collaboration_id)).num_rows == ROWS


async def test_a_query_reads_the_stored_rows_on_every_backend(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    co, collaboration_id = await _room(store[0])
    claims = _claims(ROWS)
    with flight_process.client(keys["demo-bank"]) as bank:
        upload_dataset(bank, collaboration_id, "claims", tokenize(claims, ["buyer"], SECRET))
    by_category = ColumnRef("claims", "category")
    query = Query(
        dataset_ids=("claims",),
        filters=(Filter(by_category, ("shoes", "books")),),
        group_by=(by_category,),
        aggregates=(
            Aggregate(Function.COUNT, None),
            Aggregate(Function.SUM, ColumnRef("claims", "claim_minor")),
        ),
    )
    result, cost = await co.query("demo-platform", collaboration_id, query)
    assert cost is None  # no differential privacy: nothing spent
    expected = {
        category: (
            sum(1 for row in claims.to_pylist() if row["category"] == category),
            sum(row["claim_minor"] for row in claims.to_pylist() if row["category"] == category),
        )
        for category in ("books", "shoes")
    }
    assert result.rows.to_pylist() == [
        {"g0": category, "a0": count, "a1": total} for category, (count, total) in expected.items()
    ]
    assert (result.groups_suppressed, result.rows_scanned) == (0, ROWS)


async def test_a_query_planned_before_a_withdrawal_is_not_answered(
    store: tuple[StorageBackend, dict[str, str]], flight_process: FlightProcess, keys: dict[str, str]
) -> None:
    co, collaboration_id = await _room(store[0])
    with flight_process.client(keys["demo-bank"]) as bank:
        upload_dataset(bank, collaboration_id, "claims", tokenize(_claims(100), ["buyer"], SECRET))
    query = Query(("claims",), (), (), (Aggregate(Function.COUNT, None),))
    checked = plan(await co.room("demo-platform", collaboration_id), "demo-platform", query)
    await co.withdraw("demo-bank", collaboration_id, "claims")
    with pytest.raises(ApiError) as caught:
        await run(co.store, checked, 1)
    assert caught.value.reason == Reason.DATASET_WITHDRAWN


async def test_an_expired_collaborations_rows_are_deleted_by_the_sweep(
    store: tuple[StorageBackend, dict[str, str]],
) -> None:
    backend = store[0]
    await grant_cocreation(backend)
    co = Cocreation(backend, SYSTEM_CLOCK)
    # The collaboration must outlive the setup and the first sweep, also on a slow machine.
    expire_ms = SYSTEM_CLOCK.wall_ms() + 3000
    room = await co.create("demo-platform", "", "short", (Ability.CONTRIBUTE,), expire_ms)
    collaboration_id = room.collaboration.collaboration_id
    dataset = await co.register(
        "demo-platform", dataset_of(claims_dataset(collaboration_id), "demo-platform", SYSTEM_CLOCK.wall_ms())
    )
    data = to_ipc(tokenize(_claims(10), ["buyer"], SECRET).cast(arrow_schema(dataset)))
    state = await co.store.rows_state("demo-platform", collaboration_id, "claims")
    assert await co.store.append_chunk(dataset, state, data, 10) is not None
    await co.sweep()  # not expired yet: nothing changes
    assert (await co.room("demo-platform", collaboration_id)).dataset(
        "claims"
    ).state is DatasetState.RECEIVING
    await asyncio.sleep((expire_ms - SYSTEM_CLOCK.wall_ms()) / 1000 + 0.1)
    assert await co.sweep() >= 1
    swept = await co.room("demo-platform", collaboration_id)
    assert swept.dataset("claims").state is DatasetState.WITHDRAWN
    chunks = [c async for c in co.store.chunks("demo-platform", collaboration_id, "claims")]
    assert chunks == []
    assert (expire_ms, collaboration_id) not in await co.store.due(SYSTEM_CLOCK.wall_ms())
