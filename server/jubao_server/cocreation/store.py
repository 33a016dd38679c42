"""The co-creation product's storage (tables in `tables.py`): rooms (a collaboration's partition, read
whole and written back under its version), the tenants' membership index, datasets' rows as Arrow IPC
chunks in their owner's scope, the members' privacy budgets, and query results kept for their analyst."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Final

import msgspec

from jubao_server import limits
from jubao_server.bulk.store import ChecksumMismatch
from jubao_server.clock import Clock
from jubao_server.cocreation.model import (
    AuditEntry,
    Change,
    Collaboration,
    Dataset,
    Member,
    Model,
    Room,
    Spend,
    collaboration_not_found,
    conflict,
)
from jubao_server.cocreation.tables import (
    AUDIT,
    BUDGETS,
    COLLABORATION_ROW,
    COLLABORATIONS,
    DATASET_ROW,
    EXPIRIES,
    MEMBER_ROW,
    MEMBERSHIPS,
    MODELS,
    RESULTS,
    ROWS,
    SHARED_SCOPE,
)
from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    Batch,
    Bound,
    Consistency,
    Delete,
    PartitionRef,
    Put,
    RowAbsent,
    RowMatches,
    RowQuery,
    StaticMatches,
    StorageBackend,
    Value,
    write_all,
)

_ROOM_ROWS_MAX: Final = 1 + limits.cocreation_members_max + limits.cocreation_datasets_max
_RECORD_TYPES: Final = {COLLABORATION_ROW: Collaboration, MEMBER_ROW: Member, DATASET_ROW: Dataset}
# The head row of a kept result: before its chunks (0, 1, ...), which expire an hour after it.
_HEAD_SEQ: Final = -1
_CHUNKS_OUTLIVE_HEAD_S: Final = 3600
# Attempts of a change that lost the race for a room's version to another change.
_CHANGE_ATTEMPTS_MAX: Final = 8


@dataclasses.dataclass(frozen=True)
class StoredModel:
    """A model and its record (msgspec JSON) as stored: what a conditional write of it compares."""

    model: Model
    record: bytes


@dataclasses.dataclass(frozen=True)
class SpendOutcome:
    """A spend's write: applied, or not because the request already spent (`earlier`) or because another
    query spent meanwhile (`spent_epsilon_micro` is what the budget has spent now)."""

    applied: bool
    earlier: Spend | None
    spent_epsilon_micro: int


@dataclasses.dataclass(frozen=True)
class RowsState:
    """The static counters of a dataset's rows partition."""

    rows_received: int
    chunk_count: int
    withdrawn: bool


class CocreationStore:
    def __init__(self, backend: StorageBackend, clock: Clock) -> None:
        self._backend = backend
        self.clock = clock

    def now_ms(self) -> int:
        return self.clock.wall_ms()

    # Rooms

    async def load(self, collaboration_id: str, *, serial: bool = False) -> Room | None:
        query = RowQuery(
            COLLABORATIONS.partition(SHARED_SCOPE, collaboration_id),
            limit=_ROOM_ROWS_MAX,
            consistency=Consistency.SERIAL if serial else Consistency.DEFAULT,
        )
        page = await self._backend.read_page(query)
        collaboration = None
        members: dict[str, Member] = {}
        datasets: dict[str, Dataset] = {}
        version = 0
        for row in page.rows:
            kind = row.as_text("row_kind")
            record = row["record"]
            ensure(isinstance(record, bytes), f"a {kind} row has its record")
            decoded = msgspec.json.decode(
                record if isinstance(record, bytes) else b"", type=_RECORD_TYPES[kind]
            )
            if isinstance(decoded, Collaboration):
                collaboration = decoded
            elif isinstance(decoded, Member):
                members[decoded.tenant_id] = decoded
            else:
                datasets[decoded.dataset_id] = decoded
            stored_version = row["version"]
            version = stored_version if isinstance(stored_version, int) else version
        if collaboration is None:
            return None
        return Room(collaboration, members, datasets, version)

    async def open_room(self, collaboration_id: str, tenant_id: str) -> Room:
        """The room for a call of `tenant_id` on its data: visible to it and not expired (else
        COLLABORATION_NOT_FOUND or COLLABORATION_EXPIRED)."""
        room = await self.load(collaboration_id)
        if room is None:
            raise collaboration_not_found(collaboration_id)
        return room.open_to(tenant_id, self.now_ms())

    async def create(self, room: Room) -> bool:
        """Store a new room, its members and datasets (False when its id is taken) and index it for its
        members; its expiry is indexed first, so that no stored room escapes the sweep."""
        collaboration = room.collaboration
        expiry = Put(
            (collaboration.expire_time_ms, collaboration.collaboration_id), {"create_time_ms": self.now_ms()}
        )
        await self._backend.write(Batch(EXPIRIES.partition(SHARED_SCOPE), (expiry,)))
        key = (COLLABORATION_ROW, "")
        puts = (
            Put(key, {"record": msgspec.json.encode(collaboration)}),
            *_record_puts(room.members.values(), room.datasets.values()),
        )
        batch = Batch(
            COLLABORATIONS.partition(SHARED_SCOPE, collaboration.collaboration_id),
            puts,
            static_values={"version": 1},
            conditions=(RowAbsent(key),),
        )
        if not (await self._backend.write(batch)).applied:
            return False
        await self._index(collaboration.collaboration_id, room.members.values())
        return True

    async def change(self, collaboration_id: str, step: Callable[[Room], Change]) -> Change:
        """Apply `step` to the room as stored and write what it changed under the version it was read at;
        read again and re-apply when another change won. `step` raises what refuses the change (NOT_FOUND
        when the room is missing is the caller's: it receives no room)."""
        for _ in range(_CHANGE_ATTEMPTS_MAX):
            room = await self.load(collaboration_id, serial=True)
            if room is None:
                raise LookupError(collaboration_id)
            change = step(room)
            if change.empty:
                return change
            batch = Batch(
                COLLABORATIONS.partition(SHARED_SCOPE, collaboration_id),
                tuple(_record_puts(change.members, change.datasets, change.collaboration)),
                static_values={"version": room.version + 1},
                conditions=(StaticMatches({"version": room.version}),),
            )
            if (await self._backend.write(batch)).applied:
                await self._index(collaboration_id, change.members)
                return dataclasses.replace(
                    change, room=dataclasses.replace(change.room, version=room.version + 1)
                )
        raise conflict(collaboration_id)

    async def _index(self, collaboration_id: str, members: Iterable[Member]) -> None:
        now_ms = self.now_ms()
        batches = [
            Batch(MEMBERSHIPS.partition(m.tenant_id), (Put((collaboration_id,), {"create_time_ms": now_ms}),))
            for m in members
        ]
        await write_all(self._backend, batches)

    async def memberships(
        self, tenant_id: str, after: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        """Ids of the collaborations `tenant_id` was invited to, in id order after `after`, and where the
        next page starts (None: the list ended)."""
        query = RowQuery(
            MEMBERSHIPS.partition(tenant_id),
            lower=Bound((after,), inclusive=False) if after is not None else None,
            limit=limit,
        )
        page = await self._backend.read_page(query)
        ids = [row.as_text("collaboration_id") for row in page.rows]
        return ids, (ids[-1] if page.next_after is not None and ids else None)

    async def due(self, now_ms: int) -> list[tuple[int, str]]:
        """Collaborations expired by `now_ms` (their expiry and id), the earliest first, at most
        `cocreation_expiries_per_sweep_max`."""
        query = RowQuery(
            EXPIRIES.partition(SHARED_SCOPE),
            upper=Bound((now_ms,), inclusive=True),
            limit=limits.cocreation_expiries_per_sweep_max,
        )
        page = await self._backend.read_page(query)
        return [(row.as_int("expire_time_ms"), row.as_text("collaboration_id")) for row in page.rows]

    async def swept(self, expire_time_ms: int, collaboration_id: str) -> None:
        await self._backend.write(
            Batch(EXPIRIES.partition(SHARED_SCOPE), deletes=(Delete((expire_time_ms, collaboration_id)),))
        )

    # The audit log

    async def audit(self, collaboration_id: str, entry: AuditEntry) -> None:
        put = Put((entry.time_ms, entry.audit_id), {"record": msgspec.json.encode(entry)})
        await self._backend.write(Batch(AUDIT.partition(SHARED_SCOPE, collaboration_id), (put,)))

    async def audit_page(
        self, collaboration_id: str, after: tuple[int, str] | None, limit: int
    ) -> tuple[list[AuditEntry], tuple[int, str] | None]:
        """Audit entries in time order after `after`, and where the next page starts (None: the end)."""
        query = RowQuery(
            AUDIT.partition(SHARED_SCOPE, collaboration_id),
            lower=Bound(after, inclusive=False) if after is not None else None,
            limit=limit,
        )
        page = await self._backend.read_page(query)
        entries = [msgspec.json.decode(_blob(row["record"]), type=AuditEntry) for row in page.rows]
        last = (entries[-1].time_ms, entries[-1].audit_id) if entries else None
        return entries, (last if page.next_after is not None else None)

    # Privacy budgets

    async def spent(self, collaboration_id: str, tenant_id: str) -> int:
        """The epsilon (in millionths) `tenant_id` has spent in the collaboration."""
        row = await self._backend.read_static(
            BUDGETS.partition(SHARED_SCOPE, collaboration_id, tenant_id), Consistency.SERIAL
        )
        return _int(row["spent_epsilon_micro"]) if row is not None else 0

    async def spend_of(self, collaboration_id: str, tenant_id: str, request_id: str) -> Spend | None:
        """What request `request_id` of `tenant_id` spent, if it did."""
        row = await self._backend.read_row(
            BUDGETS.partition(SHARED_SCOPE, collaboration_id, tenant_id), (request_id,), Consistency.SERIAL
        )
        if row is None or row["record"] is None:
            return None
        return msgspec.json.decode(_blob(row["record"]), type=Spend)

    async def spend(
        self, collaboration_id: str, tenant_id: str, spent_epsilon_micro: int, spend: Spend
    ) -> SpendOutcome:
        """Record `spend` on the budget that has spent `spent_epsilon_micro`, if it still has and the
        request has not spent yet (one conditional batch)."""
        batch = Batch(
            BUDGETS.partition(SHARED_SCOPE, collaboration_id, tenant_id),
            (Put((spend.request_id,), {"record": msgspec.json.encode(spend)}),),
            static_values={"spent_epsilon_micro": spent_epsilon_micro + spend.epsilon_micro},
            conditions=(
                StaticMatches({"spent_epsilon_micro": spent_epsilon_micro or None}),
                RowAbsent((spend.request_id,)),
            ),
        )
        outcome = await self._backend.write(batch)
        if outcome.applied:
            return SpendOutcome(True, None, spent_epsilon_micro + spend.epsilon_micro)
        row = outcome.current_rows.get((spend.request_id,))
        earlier = msgspec.json.decode(_blob(row["record"]), type=Spend) if row is not None else None
        static = outcome.current_static
        now = _int(static["spent_epsilon_micro"]) if static is not None else 0
        return SpendOutcome(False, earlier, now)

    # Models

    async def create_model(self, model: Model) -> tuple[StoredModel, bool]:
        """Store a new model's record: it, and True; or, when its id is taken (a retry), the record stored
        first, and False."""
        partition = MODELS.partition(SHARED_SCOPE, model.collaboration_id)
        record = msgspec.json.encode(model)
        outcome = await self._backend.write(
            Batch(
                partition,
                (Put((model.model_id,), {"record": record}),),
                conditions=(RowAbsent((model.model_id,)),),
            )
        )
        if outcome.applied:
            return StoredModel(model, record), True
        stored = await self.model_record(model.collaboration_id, model.model_id, serial=True)
        ensure(stored is not None, "a model whose id is taken can be read")
        return (stored if stored is not None else StoredModel(model, record)), False

    async def replace_model(self, previous: StoredModel, model: Model) -> StoredModel | None:
        """Write `model` over `previous` if its record is still the one stored (one conditional batch): the
        run that holds a model's lease writes it, and a server takes over a lapsed one, so that of two
        writers that read the same record one wins. None when another writer changed it first."""
        record = msgspec.json.encode(model)
        key = (model.model_id,)
        batch = Batch(
            MODELS.partition(SHARED_SCOPE, model.collaboration_id),
            (Put(key, {"record": record}),),
            conditions=(RowMatches(key, {"record": previous.record}),),
        )
        return StoredModel(model, record) if (await self._backend.write(batch)).applied else None

    async def model_record(
        self, collaboration_id: str, model_id: str, *, serial: bool = False
    ) -> StoredModel | None:
        """A model and its record as stored (the condition of a `replace_model`)."""
        row = await self._backend.read_row(
            MODELS.partition(SHARED_SCOPE, collaboration_id),
            (model_id,),
            Consistency.SERIAL if serial else Consistency.DEFAULT,
        )
        if row is None:
            return None
        record = _blob(row["record"])
        return StoredModel(msgspec.json.decode(record, type=Model), record)

    async def models_page(
        self, collaboration_id: str, after: str | None, limit: int
    ) -> tuple[list[StoredModel], str | None]:
        """The collaboration's models in id order after `after`, and where the next page starts (None: the
        end)."""
        query = RowQuery(
            MODELS.partition(SHARED_SCOPE, collaboration_id),
            lower=Bound((after,), inclusive=False) if after is not None else None,
            limit=limit,
        )
        page = await self._backend.read_page(query)
        records = [_blob(row["record"]) for row in page.rows]
        models = [StoredModel(msgspec.json.decode(r, type=Model), r) for r in records]
        return models, (models[-1].model.model_id if models and page.next_after is not None else None)

    # Rows

    async def rows_state(self, owner: str, collaboration_id: str, dataset_id: str) -> RowsState:
        row = await self._backend.read_static(
            ROWS.partition(owner, collaboration_id, dataset_id), Consistency.SERIAL
        )
        if row is None:
            return RowsState(0, 0, False)
        return RowsState(_int(row["rows_received"]), _int(row["chunk_count"]), row["withdrawn"] is True)

    async def append_chunk(
        self, dataset: Dataset, state: RowsState, data: bytes, rows: int
    ) -> RowsState | None:
        """Store a chunk of `rows` rows where `state` says the rows end; None when another writer moved
        them first, or the dataset was withdrawn (nothing written)."""
        expected = {
            "rows_received": state.rows_received or None,
            "chunk_count": state.chunk_count or None,
            "withdrawn": None,
        }
        values: dict[str, Value] = {
            "first_row": state.rows_received,
            "row_count": rows,
            **_chunk_values(data),
        }
        after = RowsState(state.rows_received + rows, state.chunk_count + 1, False)
        batch = Batch(
            ROWS.partition(dataset.owner, dataset.collaboration_id, dataset.dataset_id),
            (Put((state.chunk_count,), values),),
            static_values={"rows_received": after.rows_received, "chunk_count": after.chunk_count},
            conditions=(StaticMatches(expected),),
        )
        return after if (await self._backend.write(batch)).applied else None

    def chunks(self, owner: str, collaboration_id: str, dataset_id: str) -> AsyncIterator[bytes]:
        """The dataset's chunks in row order (each an Arrow IPC stream), checked against their digests."""
        partition = ROWS.partition(owner, collaboration_id, dataset_id)
        return self._chunks(RowQuery(partition, limit=limits.cocreation_chunks_per_read_max), dataset_id)

    async def _chunks(self, query: RowQuery, what: str) -> AsyncIterator[bytes]:
        """The `data` of the rows `query` reads, page after page (the next one read while this one is
        handed out), each checked against its `sha256`."""
        pages_max = limits.cocreation_dataset_rows_max // limits.cocreation_chunks_per_read_max + 1
        pending = asyncio.ensure_future(self._backend.read_page(query))
        try:
            for _ in range(pages_max):
                page = await pending
                if page.next_after is not None:
                    query = query.after(page.next_after)
                    pending = asyncio.ensure_future(self._backend.read_page(query))
                for row in page.rows:
                    data, digest = row["data"], row["sha256"]
                    if not isinstance(data, bytes) or hashlib.sha256(data).digest() != digest:
                        raise ChecksumMismatch(f"chunk {row['seq']!r} of {what} is damaged")
                    yield data
                if page.next_after is None:
                    return
        finally:
            pending.cancel()

    # Query results kept for their analyst

    async def keep_result(
        self, analyst: str, collaboration_id: str, result_id: str, chunks: list[bytes], rows: int
    ) -> None:
        """Store a result's chunks (Arrow IPC), then its head, which expires after
        `cocreation_result_ttl_s`: a result is read only while its head is there, and its chunks outlive
        it (by `_CHUNKS_OUTLIVE_HEAD_S`), so it is whole whenever it is read."""
        partition = RESULTS.partition(analyst, collaboration_id, result_id)
        ttl_s = limits.cocreation_result_ttl_s
        data = [
            Batch(partition, (Put((seq,), _chunk_values(chunk), ttl_s=ttl_s + _CHUNKS_OUTLIVE_HEAD_S),))
            for seq, chunk in enumerate(chunks)
        ]
        await write_all(self._backend, data)
        head = Put((_HEAD_SEQ,), {"row_count": rows, "chunk_count": len(chunks)}, ttl_s=ttl_s)
        await self._backend.write(Batch(partition, (head,)))

    async def result_chunks(
        self, analyst: str, collaboration_id: str, result_id: str
    ) -> AsyncIterator[bytes] | None:
        """The chunks of a result `analyst` kept, in row order, checked against their digests; None when
        it has none of that id (or not whole)."""
        partition = RESULTS.partition(analyst, collaboration_id, result_id)
        head = await self._backend.read_row(partition, (_HEAD_SEQ,))
        if head is None:
            return None
        return self._result_chunks(partition, _int(head["chunk_count"]), result_id)

    async def _result_chunks(
        self, partition: PartitionRef, count: int, result_id: str
    ) -> AsyncIterator[bytes]:
        query = RowQuery(
            partition, lower=Bound((0,), inclusive=True), limit=limits.cocreation_chunks_per_read_max
        )
        read = 0
        async for data in self._chunks(query, f"result {result_id}"):
            read += 1
            yield data
        if read != count:
            raise ChecksumMismatch(f"result {result_id} has {read} of its {count} chunks")

    async def delete_rows(self, owner: str, collaboration_id: str, dataset_id: str) -> None:
        """Mark the rows withdrawn (no chunk is stored after this), then delete every chunk."""
        partition = ROWS.partition(owner, collaboration_id, dataset_id)
        for _ in range(_CHANGE_ATTEMPTS_MAX):
            state = await self.rows_state(owner, collaboration_id, dataset_id)
            if state.withdrawn:
                break
            mark = Batch(
                partition,
                static_values={"withdrawn": True},
                conditions=(StaticMatches({"withdrawn": None}),),
            )
            if (await self._backend.write(mark)).applied:
                break
        state = await self.rows_state(owner, collaboration_id, dataset_id)
        step = limits.batch_rows_max
        deletes = [
            Batch(
                partition,
                deletes=tuple(Delete((seq,)) for seq in range(start, min(start + step, state.chunk_count))),
            )
            for start in range(0, state.chunk_count, step)
        ]
        await write_all(self._backend, deletes)


def _record_puts(
    members: Iterable[Member], datasets: Iterable[Dataset], collaboration: Collaboration | None = None
) -> list[Put]:
    puts = (
        [Put((COLLABORATION_ROW, ""), {"record": msgspec.json.encode(collaboration)})]
        if collaboration
        else []
    )
    puts += [Put((MEMBER_ROW, m.tenant_id), {"record": msgspec.json.encode(m)}) for m in members]
    puts += [Put((DATASET_ROW, d.dataset_id), {"record": msgspec.json.encode(d)}) for d in datasets]
    return puts


def _chunk_values(data: bytes) -> dict[str, Value]:
    return {"data": data, "sha256": hashlib.sha256(data).digest()}


def _blob(value: object) -> bytes:
    ensure(isinstance(value, bytes), "a record is stored")
    return value if isinstance(value, bytes) else b""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
