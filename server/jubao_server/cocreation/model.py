"""The co-creation domain, pure: a collaboration as stored (`Room`: the collaboration, its members and its
datasets), the checks every call passes against it, and the changes calls make to it. Nothing here reads
storage or knows gRPC; `store.py` loads and saves rooms, `service.py` speaks protobuf.

The records (msgspec Structs, JSON in the `record` column) are the stored form as they are."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Final, TypeVar

import msgspec
from jubao.reasons import FieldViolation, Reason

from jubao_server import limits
from jubao_server.errors import (
    ApiError,
    ErrorCode,
    already_exists,
    failed_precondition,
    invalid_fields,
    not_found,
    permission_denied,
)

_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_COLUMN: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Ability(StrEnum):
    CONTRIBUTE = "contribute"
    ANALYZE = "analyze"
    RECEIVE_RESULTS = "receive_results"


class MemberState(StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    LEFT = "left"


class ColumnType(StrEnum):
    STRING = "string"
    INT64 = "int64"


class Role(StrEnum):
    JOIN_KEY = "join_key"
    DIMENSION = "dimension"
    MEASURE = "measure"
    NEVER_OUTPUT = "never_output"


class Function(StrEnum):
    COUNT = "count"
    COUNT_DISTINCT = "count_distinct"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"


class DatasetState(StrEnum):
    RECEIVING = "receiving"
    READY = "ready"
    WITHDRAWN = "withdrawn"


class Privacy(msgspec.Struct, frozen=True):
    """A collaboration's differential privacy (`privacy.py`), epsilon in millionths: what each querying member
    may spend over the collaboration's life, and what a query costs unless it names its own epsilon."""

    budget_epsilon_micro: int
    query_epsilon_micro: int


class Collaboration(msgspec.Struct, frozen=True):
    collaboration_id: str
    display_name: str
    creator: str
    create_time_ms: int
    expire_time_ms: int
    privacy: Privacy | None = None


class Member(msgspec.Struct, frozen=True):
    tenant_id: str
    abilities: tuple[Ability, ...]
    state: MemberState
    update_time_ms: int


class Column(msgspec.Struct, frozen=True):
    name: str
    type: ColumnType
    role: Role


class Rule(msgspec.Struct, frozen=True):
    """A dataset's analysis rule, set by its owner alone."""

    group_by: tuple[str, ...]
    filters: tuple[str, ...]
    # Column -> the functions allowed on it (COUNT of rows is always allowed).
    aggregates: tuple[tuple[str, tuple[Function, ...]], ...]
    min_group_size: int
    # Who may analyse it; empty: every member with the analyze ability.
    analysts: tuple[str, ...]
    # Differential privacy: the rows of one join key a query reads, and measure -> (lower, upper), the
    # range a summed measure is clamped to.
    rows_per_join_key_max: int = 1
    measure_bounds: tuple[tuple[str, int, int], ...] = ()
    # Columns a model may use as a feature or its label, and read to score rows.
    training: tuple[str, ...] = ()

    def functions(self, column: str) -> tuple[Function, ...]:
        return next((functions for name, functions in self.aggregates if name == column), ())

    def bounds(self, column: str) -> tuple[int, int] | None:
        return next(((low, high) for name, low, high in self.measure_bounds if name == column), None)


class Dataset(msgspec.Struct, frozen=True):
    collaboration_id: str
    dataset_id: str
    owner: str
    display_name: str
    columns: tuple[Column, ...]
    rule: Rule
    state: DatasetState
    row_count: int
    create_time_ms: int
    update_time_ms: int

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def join_key(self) -> str:
        return next(c.name for c in self.columns if c.role is Role.JOIN_KEY)


# Queries: structured, never SQL from the caller (`query.py` checks, compiles and runs them).


@dataclasses.dataclass(frozen=True)
class ColumnRef:
    dataset_id: str
    column: str

    @property
    def label(self) -> str:
        return f"{self.dataset_id}.{self.column}"


@dataclasses.dataclass(frozen=True)
class Filter:
    column: ColumnRef
    values: tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Aggregate:
    function: Function
    column: ColumnRef | None  # None: COUNT of the group's rows

    @property
    def label(self) -> str:
        return f"{self.function.value}({self.column.label if self.column else '*'})"


@dataclasses.dataclass(frozen=True)
class Query:
    dataset_ids: tuple[str, ...]
    filters: tuple[Filter, ...]
    group_by: tuple[ColumnRef, ...]
    aggregates: tuple[Aggregate, ...]


class ModelFamily(StrEnum):
    LOGISTIC = "logistic"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model is trained on (`training.py` checks and runs it)."""

    dataset_ids: tuple[str, ...]
    features: tuple[ColumnRef, ...]
    label: ColumnRef
    family: ModelFamily


class ModelState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ModelPhase(StrEnum):
    READING = "reading"
    FITTING = "fitting"
    DONE = "done"


class Coefficient(msgspec.Struct, frozen=True):
    """A coefficient: of a numeric feature (`level` None), of a categorical feature's level, or the
    intercept (`feature` None); its estimate a decimal string of `MODEL_PLACES` places."""

    feature: ColumnRef | None
    level: str | None
    estimate: str

    @property
    def term(self) -> str:
        if self.feature is None:
            return "intercept"
        return self.feature.label if self.level is None else f"{self.feature.label}={self.level}"


class Fit(msgspec.Struct, frozen=True):
    """A trained model: its coefficients and how well it fits its rows (decimal strings)."""

    rows: int
    positives: int
    coefficients: tuple[Coefficient, ...]
    auc: str
    log_loss: str
    deviance: str
    null_deviance: str
    levels_pooled: int
    min_group_size: int
    reference_levels: tuple[Coefficient, ...]


class Model(msgspec.Struct, frozen=True):
    """A model and its training run (a long-running operation), as stored."""

    collaboration_id: str
    model_id: str
    trainer: str
    spec: ModelSpec
    state: ModelState
    phase: ModelPhase
    rows_read: int
    create_time_ms: int
    update_time_ms: int
    fit: Fit | None = None
    error_reason: str = ""
    error_message: str = ""
    # Differential privacy: the epsilon its training spent (millionths; 0: an exact fit).
    epsilon_micro: int = 0
    # While RUNNING: the run holding it renews its lease; past `lease_until_ms` another server may take it
    # over (`training.Models`). `runs`: the runs started, the first one included.
    lease_until_ms: int = 0
    runs: int = 0


# Places of the decimals a model's coefficients and metrics are given with.
MODEL_PLACES: Final = 6


class AuditEntry(msgspec.Struct, frozen=True):
    """A query, a training run or a scoring that read rows, as the audit log keeps it: readable by its
    analyst and by every owner of a dataset it read. A training run has its `model_id` and `model_spec`, a
    scoring (the model's scores over a dataset of the analyst's: `groups_returned` rows) its `model_id` and
    `scored`; neither has a query."""

    audit_id: str
    time_ms: int
    analyst: str
    datasets: tuple[str, ...]
    owners: tuple[str, ...]
    query: Query | None
    rows_scanned: int
    groups_returned: int
    groups_suppressed: int
    # The epsilon the query spent (differential privacy), in millionths.
    epsilon_micro: int = 0
    model_id: str = ""
    model_spec: ModelSpec | None = None
    scored: bool = False

    def readable_by(self, tenant_id: str) -> bool:
        return tenant_id == self.analyst or tenant_id in self.owners


class Spend(msgspec.Struct, frozen=True):
    """A query's or a training's spend from its analyst's privacy budget. A query's is kept with what it
    answered: a retry of the same request id answers it again (the same noise) and spends nothing. A
    training's names its model (whose record keeps the noised fit)."""

    request_id: str
    epsilon_micro: int
    audit: AuditEntry | None = None
    # The noised result (`query.encode_result`).
    answer: bytes = b""
    model_id: str = ""


@dataclasses.dataclass(frozen=True)
class Room:
    """A collaboration as stored: what every call checks and changes. `version` is the partition's static
    version the room was read at (0: never written)."""

    collaboration: Collaboration
    members: dict[str, Member]
    datasets: dict[str, Dataset]
    version: int

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.collaboration.expire_time_ms

    def sees(self, tenant_id: str) -> bool:
        """Members and invited tenants see the collaboration; nobody else learns it exists."""
        member = self.members.get(tenant_id)
        return member is not None and member.state is not MemberState.LEFT

    def visible(self, tenant_id: str) -> Room:
        """The room for a tenant that may see it, else COLLABORATION_NOT_FOUND."""
        if not self.sees(tenant_id):
            raise collaboration_not_found(self.collaboration.collaboration_id)
        return self

    def open_to(self, tenant_id: str, now_ms: int) -> Room:
        """The room for a call that changes or reads its data: visible and not expired."""
        self.visible(tenant_id)
        if self.expired(now_ms):
            raise failed_precondition(
                Reason.COLLABORATION_EXPIRED,
                f"collaboration {self.collaboration.collaboration_id} has expired",
                collaboration_id=self.collaboration.collaboration_id,
            )
        return self

    def active_member(self, tenant_id: str, ability: Ability | None = None) -> Member:
        member = self.members[tenant_id]
        if member.state is not MemberState.ACTIVE:
            raise failed_precondition(
                Reason.INVALID_STATE, f"{tenant_id} has not accepted its invitation", tenant_id=tenant_id
            )
        if ability is not None and ability not in member.abilities:
            raise permission_denied(
                Reason.ABILITY_MISSING,
                f"{tenant_id} lacks the ability {ability.value} in this collaboration",
                ability=ability.value,
            )
        return member

    def dataset(self, dataset_id: str) -> Dataset:
        dataset = self.datasets.get(dataset_id)
        if dataset is None:
            raise not_found(
                Reason.DATASET_NOT_FOUND,
                f"no dataset {dataset_id} in this collaboration",
                dataset_id=dataset_id,
            )
        return dataset

    def readable(self, dataset_id: str) -> Dataset:
        """A dataset an analysis may read: READY (else DATASET_WITHDRAWN or DATASET_NOT_READY)."""
        dataset = self.dataset(dataset_id)
        if dataset.state is DatasetState.WITHDRAWN:
            raise failed_precondition(
                Reason.DATASET_WITHDRAWN,
                f"dataset {dataset.dataset_id} was withdrawn",
                dataset_id=dataset.dataset_id,
            )
        if dataset.state is not DatasetState.READY:
            raise failed_precondition(
                Reason.DATASET_NOT_READY,
                f"dataset {dataset.dataset_id} is still being uploaded",
                dataset_id=dataset.dataset_id,
            )
        return dataset

    def owned_dataset(self, tenant_id: str, dataset_id: str) -> Dataset:
        dataset = self.dataset(dataset_id)
        if dataset.owner != tenant_id:
            raise permission_denied(
                Reason.NOT_DATASET_OWNER, f"dataset {dataset_id} is not {tenant_id}'s", dataset_id=dataset_id
            )
        return dataset

    # Changes: each returns the new room and the records it changed (members and datasets).

    def invite(self, caller: str, tenant_id: str, abilities: tuple[Ability, ...], now_ms: int) -> Change:
        self.active_member(caller)
        if caller != self.collaboration.creator:
            raise permission_denied(Reason.CREATOR_ONLY, "only the collaboration's creator invites members")
        current = self.members.get(tenant_id)
        if current is not None and current.state is MemberState.INVITED and current.abilities == abilities:
            return Change(self, (), ())
        if current is not None and current.state is not MemberState.LEFT:
            raise failed_precondition(
                Reason.INVALID_STATE, f"{tenant_id} is already {current.state.value}", tenant_id=tenant_id
            )
        if current is None and len(self.members) >= limits.cocreation_members_max:
            raise failed_precondition(
                Reason.LIMIT_EXCEEDED, f"a collaboration has at most {limits.cocreation_members_max} members"
            )
        return self._with_member(Member(tenant_id, abilities, MemberState.INVITED, now_ms))

    def accept(self, caller: str, now_ms: int) -> Change:
        member = self.members[caller]
        if member.state is MemberState.ACTIVE:
            return Change(self, (), ())
        if member.state is not MemberState.INVITED:
            raise failed_precondition(Reason.INVALID_STATE, f"{caller} is {member.state.value}, not invited")
        return self._with_member(replaced(member, state=MemberState.ACTIVE, update_time_ms=now_ms))

    def leave(self, caller: str, now_ms: int) -> Change:
        member = self.members[caller]
        left = self._with_member(replaced(member, state=MemberState.LEFT, update_time_ms=now_ms))
        withdrawn = [
            replaced(d, state=DatasetState.WITHDRAWN, update_time_ms=now_ms)
            for d in self.datasets.values()
            if d.owner == caller and d.state is not DatasetState.WITHDRAWN
        ]
        return left.room._with_datasets(withdrawn, left.members)

    def register(self, caller: str, dataset: Dataset) -> Change:
        self.active_member(caller, Ability.CONTRIBUTE)
        current = self.datasets.get(dataset.dataset_id)
        if current is not None and _same_declaration(current, dataset):
            return Change(self, (), ())
        if current is not None:
            raise already_exists(
                Reason.DATASET_EXISTS,
                f"dataset {dataset.dataset_id} exists in this collaboration",
                dataset_id=dataset.dataset_id,
            )
        if len(self.datasets) >= limits.cocreation_datasets_max:
            raise failed_precondition(
                Reason.LIMIT_EXCEEDED,
                f"a collaboration has at most {limits.cocreation_datasets_max} datasets",
            )
        return self._with_datasets([dataset])

    def withdraw(self, caller: str, dataset_id: str, now_ms: int) -> Change:
        dataset = self.owned_dataset(caller, dataset_id)
        if dataset.state is DatasetState.WITHDRAWN:
            return Change(self, (), ())
        return self._with_datasets([replaced(dataset, state=DatasetState.WITHDRAWN, update_time_ms=now_ms)])

    def expire(self, now_ms: int) -> Change:
        """An expired collaboration's datasets, withdrawn (nothing changes before its expiry)."""
        if not self.expired(now_ms):
            return Change(self, (), ())
        withdrawn = [
            replaced(d, state=DatasetState.WITHDRAWN, update_time_ms=now_ms)
            for d in self.datasets.values()
            if d.state is not DatasetState.WITHDRAWN
        ]
        return self._with_datasets(withdrawn)

    def committed(self, dataset_id: str, row_count: int, now_ms: int) -> Change:
        """The dataset's upload is complete with `row_count` rows: it is READY (unchanged if it already
        is; a withdrawn dataset stays withdrawn)."""
        dataset = self.dataset(dataset_id)
        if dataset.state is not DatasetState.RECEIVING:
            return Change(self, (), ())
        ready = replaced(dataset, state=DatasetState.READY, row_count=row_count, update_time_ms=now_ms)
        return self._with_datasets([ready])

    def set_privacy(self, caller: str, privacy: Privacy) -> Change:
        """Differential privacy on (or its budget changed), by the creator, while no dataset is ready: no
        query can have read rows without it. Budgets already spent stay spent."""
        self.active_member(caller)
        collaboration = self.collaboration
        if caller != collaboration.creator:
            raise permission_denied(Reason.CREATOR_ONLY, "only the collaboration's creator sets its privacy")
        if collaboration.privacy == privacy:
            return Change(self, (), ())
        ready = [d.dataset_id for d in self.datasets.values() if d.state is not DatasetState.RECEIVING]
        if ready:
            raise failed_precondition(
                Reason.INVALID_STATE,
                f"dataset {ready[0]} has been uploaded: differential privacy is set before any dataset is",
                dataset_id=ready[0],
            )
        changed = replaced(collaboration, privacy=privacy)
        return Change(dataclasses.replace(self, collaboration=changed), (), (), changed)

    def _with_member(self, member: Member) -> Change:
        members = {**self.members, member.tenant_id: member}
        room = dataclasses.replace(self, members=members)
        return Change(room, (member,), ())

    def _with_datasets(self, changed: Iterable[Dataset], members: tuple[Member, ...] = ()) -> Change:
        listed = tuple(changed)
        datasets = {**self.datasets, **{d.dataset_id: d for d in listed}}
        return Change(dataclasses.replace(self, datasets=datasets), members, listed)


def _same_declaration(a: Dataset, b: Dataset) -> bool:
    """Whether two datasets were declared alike (a retried registration finds its own)."""
    return (a.owner, a.display_name, a.columns, a.rule) == (b.owner, b.display_name, b.columns, b.rule)


@dataclasses.dataclass(frozen=True)
class Change:
    """A room after a change, and the member, dataset and collaboration records the change wrote."""

    room: Room
    members: tuple[Member, ...]
    datasets: tuple[Dataset, ...]
    collaboration: Collaboration | None = None

    @property
    def empty(self) -> bool:
        return not self.members and not self.datasets and self.collaboration is None


S = TypeVar("S", bound=msgspec.Struct)


def replaced(record: S, **changes: object) -> S:
    """A record with some fields changed."""
    return msgspec.structs.replace(record, **changes)


def collaboration_not_found(collaboration_id: str) -> ApiError:
    return not_found(
        Reason.COLLABORATION_NOT_FOUND,
        f"no collaboration {collaboration_id} that you are a member of",
        collaboration_id=collaboration_id,
    )


def id_violations(field: str, value: str) -> list[FieldViolation]:
    if not _ID.match(value):
        return [FieldViolation(field, "1 to 64 of the characters A-Z a-z 0-9 . _ : -")]
    return []


def column_violations(columns: tuple[Column, ...]) -> list[FieldViolation]:
    """Why a dataset's columns cannot be registered: their count, names, types and roles."""
    violations: list[FieldViolation] = []
    if not 1 <= len(columns) <= limits.cocreation_columns_max:
        violations.append(FieldViolation("columns", f"1 to {limits.cocreation_columns_max} columns"))
    seen: set[str] = set()
    for index, column in enumerate(columns):
        field = f"columns[{index}]"
        if not _COLUMN.match(column.name):
            violations.append(FieldViolation(f"{field}.name", "[a-z][a-z0-9_]{0,62}"))
        elif column.name in seen:
            violations.append(FieldViolation(f"{field}.name", f"{column.name} is named twice"))
        seen.add(column.name)
        if column.role is Role.JOIN_KEY and column.type is not ColumnType.STRING:
            violations.append(FieldViolation(f"{field}.type", "a join key is a string (its token)"))
        if column.role is Role.MEASURE and column.type is not ColumnType.INT64:
            violations.append(FieldViolation(f"{field}.type", "a measure is an int64"))
    if sum(1 for c in columns if c.role is Role.JOIN_KEY) != 1:
        violations.append(FieldViolation("columns", "exactly one column is the join key"))
    return violations


def rule_violations(columns: tuple[Column, ...], rule: Rule) -> list[FieldViolation]:
    """Why a rule does not fit its dataset: a column it names that is not there or whose role does not
    allow the use (join keys are never grouped by, filtered on or aggregated; measures are aggregated)."""
    roles = {c.name: c.role for c in columns}
    violations: list[FieldViolation] = []
    entries = len(rule.group_by) + len(rule.filters) + len(rule.aggregates) + len(rule.analysts)
    if entries + len(rule.training) > limits.cocreation_rule_entries_max:
        violations.append(FieldViolation("rule", f"at most {limits.cocreation_rule_entries_max} entries"))
    for index, name in enumerate(rule.training):
        if roles.get(name) not in (Role.DIMENSION, Role.MEASURE):
            violations.append(
                FieldViolation(f"rule.training_columns[{index}]", f"{name} is not a dimension or measure")
            )
    for kind, names in (("group_by_columns", rule.group_by), ("filter_columns", rule.filters)):
        for index, name in enumerate(names):
            if roles.get(name) is not Role.DIMENSION:
                violations.append(
                    FieldViolation(f"rule.{kind}[{index}]", f"{name} is not a dimension column")
                )
    for index, (name, functions) in enumerate(rule.aggregates):
        role = roles.get(name)
        field = f"rule.aggregates[{index}]"
        if role not in (Role.MEASURE, Role.DIMENSION):
            violations.append(
                FieldViolation(f"{field}.column", f"{name} is not a measure or dimension column")
            )
        elif role is Role.DIMENSION and not set(functions) <= {Function.COUNT, Function.COUNT_DISTINCT}:
            violations.append(
                FieldViolation(f"{field}.functions", "a dimension allows COUNT and COUNT_DISTINCT")
            )
        if not functions:
            violations.append(FieldViolation(f"{field}.functions", "at least one function"))
    if rule.min_group_size < limits.cocreation_min_group_size_min:
        violations.append(
            FieldViolation("rule.min_group_size", f"at least {limits.cocreation_min_group_size_min} (0: 100)")
        )
    for index, tenant_id in enumerate(rule.analysts):
        violations += id_violations(f"rule.analyst_tenant_ids[{index}]", tenant_id)
    return violations + _privacy_rule_violations(roles, rule)


def _privacy_rule_violations(roles: dict[str, Role], rule: Rule) -> list[FieldViolation]:
    """Why a rule's differential privacy bounds do not fit: the rows of one join key out of range, bounds
    of a column that is not a measure, or upside down."""
    violations: list[FieldViolation] = []
    if not 1 <= rule.rows_per_join_key_max <= limits.cocreation_rows_per_join_key_max:
        violations.append(
            FieldViolation(
                "rule.rows_per_join_key_max", f"1 to {limits.cocreation_rows_per_join_key_max} (0: 1)"
            )
        )
    bounded: set[str] = set()
    for index, (name, low, high) in enumerate(rule.measure_bounds):
        field = f"rule.measure_bounds[{index}]"
        if roles.get(name) is not Role.MEASURE:
            violations.append(FieldViolation(f"{field}.column", f"{name} is not a measure column"))
        elif name in bounded:
            violations.append(FieldViolation(f"{field}.column", f"{name} is bounded twice"))
        bounded.add(name)
        if low > high:
            violations.append(FieldViolation(f"{field}.upper", "at least lower"))
    return violations


def privacy_violations(privacy: Privacy) -> list[FieldViolation]:
    """Why a collaboration's differential privacy cannot be set: a budget or a query cost out of range."""
    violations: list[FieldViolation] = []
    low, high = limits.cocreation_query_epsilon_micro_min, limits.cocreation_budget_epsilon_micro_max
    if not low <= privacy.budget_epsilon_micro <= high:
        violations.append(FieldViolation("differential_privacy.budget_epsilon_micro", f"{low} to {high}"))
    if not low <= privacy.query_epsilon_micro <= privacy.budget_epsilon_micro:
        violations.append(
            FieldViolation("differential_privacy.query_epsilon_micro", f"{low} to budget_epsilon_micro")
        )
    return violations


def raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise invalid_fields(tuple(violations))


def conflict(collaboration_id: str) -> ApiError:
    return ApiError(
        ErrorCode.UNAVAILABLE,
        Reason.CONCURRENT_MODIFICATION,
        f"collaboration {collaboration_id} changed meanwhile; retry",
        retry_delay_ms=10,
        metadata={"collaboration_id": collaboration_id},
    )
