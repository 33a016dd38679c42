"""Aggregate queries over the join of members' datasets (DuckDB over Arrow).

A query is structured (datasets, filters, group-by, aggregates), never SQL from the caller. It is checked
against the room before any row is read (`plan`): the caller is an active member with the analyze and
receive-results abilities, every dataset is ready, and every column the query uses is one its dataset's
rule allows for that use; the join key is used only to join, which the rules guarantee (a rule can name
no join key). Then (`run`) the datasets' rows are read from their owners' scopes into Arrow tables, the
SQL the plan compiles to (identifiers checked at registration and quoted, values bound as parameters)
runs in an in-memory DuckDB on a worker thread, and every group whose distinct join keys number fewer
than the largest `min_group_size` of the datasets is suppressed and counted. With differential privacy
(`privacy.py`) each dataset is read at most `rows_per_join_key_max` rows per join key, sums are clamped to
their measure's bounds, every count and sum is noised, and the threshold applies to the noised count."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Final

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from jubao.reasons import FieldViolation, Reason

from jubao_server import limits
from jubao_server.bulk.arrow import from_ipc, to_ipc
from jubao_server.cocreation.ingest import arrow_schema
from jubao_server.cocreation.model import (
    Ability,
    AuditEntry,
    ColumnRef,
    Dataset,
    Function,
    Query,
    Room,
    raise_if_any,
)
from jubao_server.cocreation.privacy import Noise, noise_of, noised
from jubao_server.cocreation.store import CocreationStore
from jubao_server.errors import ApiError, ErrorCode, failed_precondition

_KEYS: Final = "__keys"
_SQL: Final = {
    Function.COUNT: "COUNT({})",
    Function.COUNT_DISTINCT: "COUNT(DISTINCT {})",
    Function.SUM: "CAST(SUM({}) AS BIGINT)",
    Function.AVG: "AVG({})",
    Function.MIN: "MIN({})",
    Function.MAX: "MAX({})",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """A query checked against its room: the datasets it reads, and the threshold of its groups."""

    query: Query
    datasets: tuple[Dataset, ...]
    min_group_size: int
    # Differential privacy: how the result is noised (None: exact).
    noise: Noise | None = None

    @property
    def rows(self) -> int:
        return sum(d.row_count for d in self.datasets)


def audit_entry(audit_id: str, time_ms: int, analyst: str, checked: Plan, result: Result) -> AuditEntry:
    """The audit log's record of a query that read rows (under differential privacy, the true count of
    suppressed groups is kept from its analyst too)."""
    return AuditEntry(
        audit_id=audit_id,
        time_ms=time_ms,
        analyst=analyst,
        datasets=tuple(d.dataset_id for d in checked.datasets),
        owners=tuple(d.owner for d in checked.datasets),
        query=checked.query,
        rows_scanned=result.rows_scanned,
        groups_returned=result.rows.num_rows,
        groups_suppressed=result.groups_suppressed,
        epsilon_micro=result.epsilon_micro,
    )


class Download(msgspec.Struct, frozen=True):
    """Where a result too large for its response was kept (`results.py`), for its analyst to download."""

    collaboration_id: str
    result_id: str
    row_count: int
    expire_time_ms: int


@dataclasses.dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: pa.Table  # the groups kept: group-by columns then aggregates, in the query's order
    groups_suppressed: int
    min_group_size: int
    rows_scanned: int
    # The epsilon the noise of the result spent (0: exact).
    epsilon_micro: int = 0
    # Set once a result too large for its response is kept (its rows are then left out here).
    download: Download | None = None

    @property
    def to_keep(self) -> bool:
        """Whether the result has more groups than a response carries, and is not kept yet."""
        return self.download is None and self.rows.num_rows > limits.cocreation_result_inline_groups_max


class _Stored(msgspec.Struct, frozen=True):
    columns: tuple[str, ...]
    rows: bytes  # Arrow IPC
    groups_suppressed: int
    min_group_size: int
    rows_scanned: int
    epsilon_micro: int
    download: Download | None = None


def encode_result(result: Result) -> bytes:
    """A result as a spend keeps it, to answer a retry again (`decode_result`)."""
    stored = _Stored(
        result.columns,
        to_ipc(result.rows),
        result.groups_suppressed,
        result.min_group_size,
        result.rows_scanned,
        result.epsilon_micro,
        result.download,
    )
    return msgspec.json.encode(stored)


def decode_result(data: bytes) -> Result:
    stored = msgspec.json.decode(data, type=_Stored)
    rows = pa.ipc.open_stream(pa.py_buffer(stored.rows)).read_all()
    return Result(
        stored.columns,
        rows,
        stored.groups_suppressed,
        stored.min_group_size,
        stored.rows_scanned,
        stored.epsilon_micro,
        stored.download,
    )


def plan(room: Room, caller: str, query: Query, epsilon_micro: int = 0) -> Plan:
    """The query checked against the room and every dataset's rule (and, under differential privacy, its
    noise: `epsilon_micro` 0 is the collaboration's default cost), or the error that refuses it (nothing
    has been read)."""
    room.active_member(caller, Ability.ANALYZE)
    room.active_member(caller, Ability.RECEIVE_RESULTS)
    datasets = tuple(room.readable(d) for d in query.dataset_ids)
    by_id = {d.dataset_id: d for d in datasets}
    violations = analyst_violations(datasets, caller)
    for index, ref in enumerate(query.group_by):
        dataset = by_id[ref.dataset_id]
        if ref.column not in dataset.rule.group_by:
            violations.append(broken(dataset, "group_by_columns", ref.column, f"group_by[{index}]"))
    for index, where in enumerate(query.filters):
        dataset = by_id[where.column.dataset_id]
        if where.column.column not in dataset.rule.filters:
            violations.append(broken(dataset, "filter_columns", where.column.column, f"filters[{index}]"))
    for index, aggregate in enumerate(query.aggregates):
        measured = aggregate.column
        if measured is None:
            continue
        dataset = by_id[measured.dataset_id]
        if aggregate.function not in dataset.rule.functions(measured.column):
            violations.append(
                broken(
                    dataset,
                    "aggregates",
                    measured.column,
                    f"aggregates[{index}] ({aggregate.function.value})",
                )
            )
    raise_if_broken(violations)
    min_group_size = max(d.rule.min_group_size for d in datasets)
    privacy = room.collaboration.privacy
    noise = noise_of(privacy, datasets, query, epsilon_micro) if privacy is not None else None
    result = Plan(query, datasets, min_group_size, noise)
    if result.rows > limits.cocreation_query_rows_max:
        raise failed_precondition(
            Reason.LIMIT_EXCEEDED,
            f"a query reads at most {limits.cocreation_query_rows_max} rows, not {result.rows}",
        )
    return result


def analyst_violations(datasets: Sequence[Dataset], caller: str) -> list[FieldViolation]:
    """The datasets whose rule names analysts other than `caller`."""
    return [
        broken(dataset, "analyst_tenant_ids", "", f"{caller} is not among the analysts its owner allows")
        for dataset in datasets
        if dataset.rule.analysts and caller not in dataset.rule.analysts
    ]


def raise_if_broken(violations: list[FieldViolation]) -> None:
    """INVALID_ARGUMENT ANALYSIS_RULE_VIOLATED naming the rules an analysis breaks, if it breaks any."""
    if violations:
        raise ApiError(
            ErrorCode.INVALID_ARGUMENT,
            Reason.ANALYSIS_RULE_VIOLATED,
            "; ".join(v.description for v in violations[: limits.error_field_violations_max]),
            field_violations=tuple(violations),
            metadata={"rule": violations[0].field},
        )


def broken(dataset: Dataset, rule: str, column: str, use: str) -> FieldViolation:
    """A use the rule of `dataset` does not allow: the field names the dataset and the rule."""
    what = f"column {column}" if column else "the caller"
    owned = f"dataset {dataset.dataset_id} (owner {dataset.owner})"
    description = f"{use}: {what} of {owned} is not allowed by its rule's {rule}"
    return FieldViolation(f"{dataset.dataset_id}.rule.{rule}", description)


def shape_violations(query: Query, room: Room) -> list[FieldViolation]:
    """What is wrong with the query's shape: its bounds, repeated datasets, references to datasets it does not
    join or columns they do not have, values that do not fit their column."""
    violations: list[FieldViolation] = []
    bounds = (
        ("dataset_ids", len(query.dataset_ids), 1, limits.cocreation_query_datasets_max),
        ("filters", len(query.filters), 0, limits.cocreation_query_filters_max),
        ("group_by", len(query.group_by), 0, limits.cocreation_query_group_by_max),
        ("aggregates", len(query.aggregates), 1, limits.cocreation_query_aggregates_max),
    )
    for field, count, low, high in bounds:
        if not low <= count <= high:
            violations.append(FieldViolation(f"query.{field}", f"{low} to {high}"))
    if len(set(query.dataset_ids)) != len(query.dataset_ids):
        violations.append(FieldViolation("query.dataset_ids", "a dataset is named twice"))
    refs = [(f"query.group_by[{i}]", ref) for i, ref in enumerate(query.group_by)]
    refs += [(f"query.filters[{i}].column", f.column) for i, f in enumerate(query.filters)]
    refs += [(f"query.aggregates[{i}].column", a.column) for i, a in enumerate(query.aggregates) if a.column]
    for field, ref in refs:
        violations += _ref_violations(field, ref, query, room)
    for index, aggregate in enumerate(query.aggregates):
        if aggregate.column is None and aggregate.function is not Function.COUNT:
            violations.append(FieldViolation(f"query.aggregates[{index}].column", "required but for COUNT"))
    for index, where in enumerate(query.filters):
        column = _column(room, where.column)
        if not 1 <= len(where.values) <= limits.cocreation_filter_values_max:
            violations.append(
                FieldViolation(
                    f"query.filters[{index}]", f"1 to {limits.cocreation_filter_values_max} values"
                )
            )
        elif column is not None and not all(isinstance(v, str) == (column == "string") for v in where.values):
            violations.append(
                FieldViolation(f"query.filters[{index}]", f"values of the column's type ({column})")
            )
    return violations


def _ref_violations(field: str, ref: ColumnRef, query: Query, room: Room) -> list[FieldViolation]:
    if ref.dataset_id not in query.dataset_ids:
        return [
            FieldViolation(f"{field}.dataset_id", f"{ref.dataset_id} is not among the query's dataset_ids")
        ]
    dataset = room.datasets.get(ref.dataset_id)
    if dataset is not None and dataset.column(ref.column) is None:
        return [FieldViolation(f"{field}.column", f"dataset {ref.dataset_id} has no column {ref.column}")]
    return []


def _column(room: Room, ref: ColumnRef) -> str | None:
    dataset = room.datasets.get(ref.dataset_id)
    column = dataset.column(ref.column) if dataset is not None else None
    return column.type.value if column is not None else None


def check_shape(query: Query, room: Room) -> None:
    raise_if_any(shape_violations(query, room))


async def run(store: CocreationStore, checked: Plan, threads: int) -> Result:
    """Read the datasets' rows, run the query, suppress the groups below the threshold."""
    reads = (read_rows(store, dataset, _used(checked.query, dataset)) for dataset in checked.datasets)
    tables = await asyncio.gather(*reads)
    await check_unwithdrawn(store, checked.datasets)
    sql, parameters = compile_sql(checked)
    grouped = await asyncio.to_thread(execute, tables, sql, parameters, threads)
    noise = checked.noise
    if noise is not None:
        grouped = _noised(grouped, len(checked.query.group_by), noise)
    kept = pc.greater_equal(grouped.column(_KEYS), checked.min_group_size)
    rows = grouped.filter(kept).drop_columns([_KEYS])
    # Under differential privacy the groups below the threshold are not counted: how many groups had any
    # row at all is not noised.
    suppressed = grouped.num_rows - rows.num_rows if noise is None else 0
    if rows.num_rows > limits.cocreation_result_groups_max:
        raise failed_precondition(
            Reason.LIMIT_EXCEEDED,
            f"{rows.num_rows} groups; at most {limits.cocreation_result_groups_max}: group by fewer columns",
        )
    labels = tuple(ref.label for ref in checked.query.group_by) + tuple(
        a.label for a in checked.query.aggregates
    )
    scanned = sum(t.num_rows for t in tables)
    spent = noise.epsilon_micro if noise is not None else 0
    return Result(labels, rows, suppressed, checked.min_group_size, scanned, spent)


def _noised(grouped: pa.Table, group_columns: int, noise: Noise) -> pa.Table:
    """The grouped table with its statistics (the distinct keys, then the aggregates: the columns after
    the group-by ones) noised, each spending its share of the query's epsilon."""
    share = noise.share_epsilon_micro
    columns = grouped.columns[:group_columns]
    for offset, sensitivity in enumerate(noise.sensitivities):
        exact = grouped.column(group_columns + offset).to_pylist()
        columns.append(pa.array(noised(exact, sensitivity, share), pa.int64()))
    return pa.table(columns, names=grouped.column_names)


def _used(query: Query, dataset: Dataset) -> list[str]:
    """The columns of `dataset` the query reads: its join key, then those it names."""
    named = [ref.column for ref in query.group_by if ref.dataset_id == dataset.dataset_id]
    named += [f.column.column for f in query.filters if f.column.dataset_id == dataset.dataset_id]
    named += [
        a.column.column for a in query.aggregates if a.column and a.column.dataset_id == dataset.dataset_id
    ]
    return list(dict.fromkeys([dataset.join_key, *named]))


async def check_unwithdrawn(store: CocreationStore, datasets: Sequence[Dataset]) -> None:
    """DATASET_WITHDRAWN if one of the datasets was withdrawn: a withdrawal marks the rows before it
    deletes them, so a read it overlapped is not answered."""
    for dataset in datasets:
        if (await store.rows_state(dataset.owner, dataset.collaboration_id, dataset.dataset_id)).withdrawn:
            raise failed_precondition(
                Reason.DATASET_WITHDRAWN,
                f"dataset {dataset.dataset_id} was withdrawn while it was read",
                dataset_id=dataset.dataset_id,
            )


async def read_rows(store: CocreationStore, dataset: Dataset, columns: list[str]) -> pa.Table:
    """The columns of a dataset's rows, in row order."""
    schema = arrow_schema(dataset)
    parts = [
        from_ipc(data, schema).select(columns)
        async for data in store.chunks(dataset.owner, dataset.collaboration_id, dataset.dataset_id)
    ]
    return pa.concat_tables(parts) if parts else schema.empty_table().select(columns)


def compile_sql(checked: Plan) -> tuple[str, list[str | int]]:
    """The query's SQL over the tables `t0`, `t1`, ... (the datasets in order) and its parameters."""
    query = checked.query
    alias = {d.dataset_id: f"t{i}" for i, d in enumerate(checked.datasets)}
    joins = {d.dataset_id: d.join_key for d in checked.datasets}

    def ref(column: ColumnRef) -> str:
        return f'{alias[column.dataset_id]}."{column.column}"'

    first = checked.datasets[0]
    key = f't0."{first.join_key}"'
    noise = checked.noise
    caps = noise.rows_per_join_key if noise is not None else (None,) * len(checked.datasets)
    sources = [
        capped_source(d, i, cap) for i, (d, cap) in enumerate(zip(checked.datasets, caps, strict=True))
    ]
    source = sources[0]
    for dataset, joined in zip(checked.datasets[1:], sources[1:], strict=True):
        name = alias[dataset.dataset_id]
        source += f' JOIN {joined} ON {name}."{joins[dataset.dataset_id]}" = {key}'
    selected = [f"{ref(column)} AS g{i}" for i, column in enumerate(query.group_by)]
    selected.append(f"COUNT(DISTINCT {key}) AS {_KEYS}")
    by_id = {d.dataset_id: d for d in checked.datasets}
    for i, aggregate in enumerate(query.aggregates):
        measured = aggregate.column
        argument = ref(measured) if measured else "*"
        bounds = by_id[measured.dataset_id].rule.bounds(measured.column) if measured else None
        if noise is not None and aggregate.function is Function.SUM and bounds is not None:
            # Clamped to the owner's bounds (ints from its rule, never the caller's).
            argument = f"LEAST(GREATEST({argument}, {bounds[0]}), {bounds[1]})"
        selected.append(f"{_SQL[aggregate.function].format(argument)} AS a{i}")
    parameters: list[str | int] = []
    conditions = []
    for where in query.filters:
        conditions.append(f"{ref(where.column)} IN ({', '.join('?' for _ in where.values)})")
        parameters += where.values
    sql = f"SELECT {', '.join(selected)} FROM {source}"
    if conditions:
        sql += f" WHERE {' AND '.join(conditions)}"
    if query.group_by:
        groups = ", ".join(f"g{i}" for i in range(len(query.group_by)))
        sql += f" GROUP BY {groups} ORDER BY {groups}"
    return sql, parameters


def capped_source(dataset: Dataset, index: int, cap: int | None) -> str:
    """Dataset `index` as an analysis reads it: whole (`cap` None), or under differential privacy at most
    `cap` rows of one join key, its rule's (which rows is arbitrary: any of them bounds the person's
    contribution)."""
    name = f"t{index}"
    if cap is None:
        return name
    key = f'"{dataset.join_key}"'
    return f"(SELECT * FROM {name} QUALIFY row_number() OVER (PARTITION BY {key}) <= {cap}) AS {name}"


def execute(tables: Sequence[pa.Table], sql: str, parameters: list[str | int], threads: int) -> pa.Table:
    """The SQL's answer over the tables `t0`, `t1`, ... in an in-memory DuckDB."""
    connection = duckdb.connect(":memory:", config={"threads": threads})
    try:
        for index, table in enumerate(tables):
            connection.register(f"t{index}", table)
        try:
            return connection.sql(sql, params=parameters).to_arrow_table()
        except (duckdb.OutOfRangeException, duckdb.ConversionException) as error:
            raise ApiError(
                ErrorCode.OUT_OF_RANGE, Reason.INVALID_ARGUMENT, f"an aggregate is out of int64: {error}"
            ) from None
    finally:
        connection.close()
