"""The Cassandra backend of the storage contract (see README.md in this folder for the design)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from cassandra.query import BatchStatement, BatchType, SimpleStatement

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.invariants import ensure
from jubao_server.storage.cassandra import cql, migrations
from jubao_server.storage.cassandra.driver import (
    DRIVER_ERRORS,
    NOT_SENT,
    REJECTED_STATEMENT,
    Prepared,
    ResultRows,
    build_cluster,
    consistency_level,
    execute,
    open_session,
)
from jubao_server.storage.config import CassandraSettings
from jubao_server.storage.contract import (
    NO_FAULTS,
    Batch,
    BatchOutcome,
    BulkPut,
    ColumnPage,
    Consistency,
    Faults,
    Following,
    Key,
    MigrationError,
    MigrationSet,
    Page,
    PartitionRef,
    Row,
    RowQuery,
    StorageBackend,
    StorageError,
    send_in_steps,
    value_bytes,
)
from jubao_server.storage.contract.conditions import failed_outcome
from jubao_server.storage.contract.migrations import Recorded, SchemaFile, carried_over, check_unchanged
from jubao_server.storage.contract.unknown import UnknownOutcome, read_touched, write_conditional
from jubao_server.storage.slots import Slots

_PROBE = "SELECT release_version FROM system.local"


@contextlib.contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Driver and node failures become StorageError; a rejected statement (a bug) propagates."""
    try:
        yield
    except REJECTED_STATEMENT:
        raise
    except DRIVER_ERRORS as error:
        raise StorageError(f"cassandra: {what}: {error!r}") from error


class _PreparedCache:
    """Prepared statements by CQL text (one text per table and statement shape), least recently used
    evicted beyond the bound. Preparing blocks in the driver, so it runs in a thread, one at a time."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._entries: collections.OrderedDict[str, Prepared] = collections.OrderedDict()
        self._preparing = asyncio.Lock()

    async def get(self, text: str) -> Prepared:
        found = self._entries.get(text)
        if found is None:
            async with self._preparing:
                return self._entries.get(text) or await self._prepare(text)
        self._entries.move_to_end(text)
        return found

    async def _prepare(self, text: str) -> Prepared:
        with _storage_errors("prepare"):
            prepared = Prepared(await asyncio.to_thread(self._session.prepare, text))
        self._entries[text] = prepared
        if len(self._entries) > limits.cassandra_prepared_statements_max:
            self._entries.popitem(last=False)
        return prepared


class CassandraBackend(StorageBackend):
    """TTLs are Cassandra's own: the coordinator stamps each written cell and the replicas expire it on
    their clocks, so the injected clock does not decide expiry here (it dates the migration records)."""

    name = "cassandra"

    def __init__(
        self, settings: CassandraSettings, clock: Clock, faults: Faults, cluster: Any, session: Any
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._faults = faults
        self._cluster = cluster
        self._session = session
        self._serial = consistency_level(settings.serial_consistency)
        self._prepared = _PreparedCache(session)
        self._in_flight = Slots(limits.cassandra_requests_in_flight_max)
        self._closed = False

    @classmethod
    async def connect(
        cls, settings: CassandraSettings, clock: Clock, *, faults: Faults = NO_FAULTS
    ) -> CassandraBackend:
        """Connect to the cluster (in a thread: the driver blocks while it discovers the ring)."""
        cluster = build_cluster(settings)
        where = f"connect to {','.join(settings.contact_points)}:{settings.port}"
        try:
            with _storage_errors(where):
                session = await asyncio.to_thread(open_session, cluster)
        except BaseException:
            await asyncio.to_thread(cluster.shutdown)
            raise
        return cls(settings, clock, faults, cluster, session)

    @property
    def keyspace(self) -> str:
        return self._settings.keyspace

    # ------------------------------------------------------------------ reads

    async def read_row(
        self, partition: PartitionRef, clustering: Key = (), consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        await self._faults.before_operation()
        table = partition.table
        ensure(len(clustering) == len(table.clustering_key), f"{table.name}: wrong clustering arity")
        params = cql.partition_values(partition) + clustering
        rows = await self._read(cql.select_row(self.keyspace, table), params, consistency)
        return _row(cql.row_columns(table), rows[0]) if rows else None

    async def read_static(
        self, partition: PartitionRef, consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        await self._faults.before_operation()
        table = partition.table
        ensure(bool(table.static_columns), f"{table.name}: no static columns")
        text = cql.select_static(self.keyspace, table)
        rows = await self._read(text, cql.partition_values(partition), consistency)
        if not rows or all(value is None for value in rows[0]):
            return None
        return _row(table.static_column_order, rows[0])

    async def read_page(self, query: RowQuery) -> Page:
        columns, records, more = await self._page_records(query)
        found = tuple(_row(columns, r) for r in records)
        last = cql.clustering_of(query.partition.table, found[-1].values) if more else None
        return Page(found, next_after=last)

    async def read_columns(self, query: RowQuery, names: Sequence[str]) -> ColumnPage:
        columns, records, more = await self._page_records(query)
        positions = {name: i for i, name in enumerate(columns)}
        transposed = list(zip(*records, strict=True)) if records else [() for _ in columns]
        last = cql.clustering_of(query.partition.table, _row(columns, records[-1]).values) if more else None
        return ColumnPage({name: list(transposed[positions[name]]) for name in names}, len(records), last)

    async def _page_records(self, query: RowQuery) -> tuple[tuple[str, ...], list[tuple[Any, ...]], bool]:
        """The page's row columns, its records (at most `limit`) and whether more follow."""
        await self._faults.before_operation()
        table = query.partition.table
        columns = cql.row_columns(table)
        first_clustering = columns.index(table.clustering_key[0])
        rows = await self._read(*cql.select_page(self.keyspace, query), query.consistency)
        # A partition holding only static columns reads as one row with null clustering columns.
        found = [r for r in rows if r[first_clustering] is not None]
        return columns, found[: query.limit], len(found) > query.limit

    async def _read(self, text: str, params: cql.Params, consistency: Consistency) -> ResultRows:
        statement = (await self._prepared.get(text)).bind(params)
        statement.is_idempotent = True
        if consistency is Consistency.SERIAL:
            statement.consistency_level = self._serial
        with _storage_errors("read"):
            return await self._send(statement)

    # ----------------------------------------------------------------- writes

    async def write(self, batch: Batch) -> BatchOutcome:
        await self._faults.before_operation()
        if not batch.conditional:
            statement = await self._statement(batch)
            with _storage_errors(f"write {batch.partition.table.name}"):
                await self._send(statement)
            return BatchOutcome(applied=True)
        return await write_conditional(self, self._faults, batch, self._write_once)

    async def write_following(self, following: Sequence[Following]) -> None:
        """The writes that follow an applied batch (a journal's entries and transfers: bulk puts, or
        batches each on a partition of its own) go as UNLOGGED batches of several partitions, at most
        `cassandra_following_statements_max` statements and about `cassandra_following_bytes_max` bytes
        of values each: one request to the coordinator where one per partition cost the driver about
        as much again per statement; `storage_writes_in_flight_max` requests at once (a recovered shard's
        journal may be long). Not atomic across partitions, which following writes never were (each is
        an idempotent rewrite, written again after a crash)."""
        requests: list[list[Any]] = [[]]
        size_bytes = 0
        for write in following:
            ensure(not write.conditional, "following batches are unconditional")
            for prepared, params in await self._following_statements(write):
                statement = prepared.bind(params)
                params_bytes = sum(value_bytes(v) for v in params)
                full = len(requests[-1]) >= limits.cassandra_following_statements_max
                over = size_bytes + params_bytes > limits.cassandra_following_bytes_max
                if requests[-1] and (full or over):
                    requests.append([])
                    size_bytes = 0
                requests[-1].append(statement)
                size_bytes += params_bytes
        await send_in_steps([statements for statements in requests if statements], self._send_unlogged)

    async def _following_statements(self, write: Following) -> list[tuple[Prepared, cql.Params]]:
        """A following write's statements, prepared: a bulk put's one INSERT for every row."""
        if isinstance(write, BulkPut):
            text, rows = cql.bulk_statements(self.keyspace, write)
            prepared = await self._prepared.get(text)
            return [(prepared, params) for params in rows]
        return [
            (await self._prepared.get(text), params)
            for text, params in cql.batch_statements(self.keyspace, write)
        ]

    async def _send_unlogged(self, statements: list[Any]) -> None:
        await self._faults.before_operation()
        with _storage_errors("write following batches"):
            await self._send(_unlogged(statements, idempotent=True))

    async def _write_once(self, batch: Batch) -> BatchOutcome:
        """One attempt of a conditional batch; UnknownOutcome when its answer was lost."""
        statement = await self._statement(batch)
        if await self._compare_and_set(batch, statement):
            return BatchOutcome(applied=True)
        rows, static = await read_touched(self, batch)
        return failed_outcome(batch, rows, static)

    async def _compare_and_set(self, batch: Batch, statement: Any) -> bool:
        """Whether the conditional statement applied. Only an error that proves nothing was sent is a
        StorageError; any other failure (timeouts of every kind, a lost connection) leaves it unknown."""
        table = batch.partition.table.name
        try:
            rows = await self._send(statement)
        except REJECTED_STATEMENT:
            raise
        except NOT_SENT as error:
            raise StorageError(f"cassandra: conditional write {table} not sent: {error!r}") from error
        except DRIVER_ERRORS as error:
            raise UnknownOutcome(f"{table}: {error!r}") from error
        # An LWT answers with `[applied]` first; a batch whose only condition compares nothing has none.
        if not rows:
            return True
        applied = rows[0][0]
        ensure(isinstance(applied, bool), f"{table}: conditional write answered without [applied]")
        return bool(applied)

    async def _statement(self, batch: Batch) -> Any:
        """One bound statement, or an UNLOGGED batch of them (one partition: atomic and isolated)."""
        bound = [
            (await self._prepared.get(text)).bind(params)
            for text, params in cql.batch_statements(self.keyspace, batch)
        ]
        # Conditional writes must never be re-sent blindly; plain ones rewrite the same cells.
        return _unlogged(bound, idempotent=not batch.conditional)

    async def _send(self, statement: Any) -> ResultRows:
        ensure(not self._closed, "cassandra backend used after close")
        async with self._in_flight:
            return await execute(self._session, statement)

    # -------------------------------------------------------------- migrations

    async def migrate(self, sets: Sequence[MigrationSet]) -> list[str]:
        await self._faults.before_operation()
        loaded = [(s, migrations.load_files(s)) for s in sets]
        await self._ddl(migrations.keyspace_cql(self.keyspace, self._settings.replication), "keyspace")
        with _storage_errors("use keyspace"):
            await asyncio.to_thread(self._session.set_keyspace, self.keyspace)
        await self._ddl(migrations.table_cql(self.keyspace), migrations.TABLE)
        applied: list[str] = []
        for migration_set, files in loaded:
            applied.extend(await self._migrate_set(migration_set, files))
        await self._await_schema_agreement()
        return applied

    async def _migrate_set(
        self, migration_set: MigrationSet, files: list[migrations.MigrationFile]
    ) -> list[str]:
        recorded = await self._recorded(migration_set.name)
        former = {} if migration_set.formerly is None else await self._recorded(migration_set.formerly)
        applied: list[str] = []
        for file in files:
            schema = file.schema
            if schema.version not in recorded:
                earlier = former.get(schema.version)
                if earlier is not None and carried_over(schema, earlier):
                    await self._record(schema, earlier.applied_at_ms)
                elif await self._apply(file):
                    applied.append(schema.label)
                    continue
                recorded = await self._recorded(migration_set.name)
            check_unchanged(schema, recorded[schema.version])
        return applied

    async def _apply(self, file: migrations.MigrationFile) -> bool:
        """Run the file's statements (each `IF NOT EXISTS`), then record it. False when a concurrent
        migration recorded it first."""
        for text in file.statements:
            await self._ddl(text, file.schema.label)
        return await self._record(file.schema, self._clock.wall_ms())

    async def _record(self, schema: SchemaFile, applied_at_ms: int) -> bool:
        """Record the file as applied (IF NOT EXISTS); False when a concurrent migration recorded it first."""
        statement = (await self._prepared.get(migrations.record_cql(self.keyspace))).bind(
            (schema.set_name, schema.version, schema.name, schema.checksum, applied_at_ms)
        )
        # A lost answer fails the run; the next run finds the file unrecorded and applies it again.
        with _storage_errors(f"record {schema.label}"):
            rows = await self._send(statement)
        return bool(rows[0][0])

    async def _recorded(self, set_name: str) -> dict[int, Recorded]:
        text = migrations.recorded_cql(self.keyspace)
        rows = await self._read(text, (set_name,), Consistency.SERIAL)
        return {
            version: Recorded(name, checksum, applied_at_ms)
            for version, name, checksum, applied_at_ms in rows
        }

    async def _ddl(self, text: str, where: str) -> None:
        statement = SimpleStatement(text, is_idempotent=True)
        try:
            with _storage_errors(f"migrate {where}"):
                await self._send(statement)
        except REJECTED_STATEMENT as error:
            raise MigrationError(f"{where}: {error}") from error

    async def _await_schema_agreement(self) -> None:
        with _storage_errors("schema agreement"):
            agreed = await asyncio.to_thread(self._cluster.control_connection.wait_for_schema_agreement)
        if not agreed:
            raise StorageError("cassandra: the nodes did not agree on the schema in time")

    # ------------------------------------------------------------------- admin

    async def ready(self) -> bool:
        if self._closed:
            return False
        try:
            with _storage_errors("probe"):
                await self._send(SimpleStatement(_PROBE, is_idempotent=True))
        except StorageError:
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._cluster.shutdown)


def _unlogged(statements: list[Any], idempotent: bool) -> Any:
    """One statement, or an UNLOGGED batch of several."""
    statement: Any = statements[0]
    if len(statements) > 1:
        statement = BatchStatement(batch_type=BatchType.UNLOGGED)
        for item in statements:
            statement.add(item)
    statement.is_idempotent = idempotent
    return statement


def _row(columns: tuple[str, ...], values: tuple[Any, ...]) -> Row:
    return Row(dict(zip(columns, values, strict=True)))
