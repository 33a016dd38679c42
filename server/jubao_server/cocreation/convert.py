"""Protobuf in and out of the co-creation domain: requests checked for their shape (INVALID_ARGUMENT naming
each bad field) and turned into model values, and model values shown as messages."""

from __future__ import annotations

from typing import Final

from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao.reasons import FieldViolation

from jubao_server import limits
from jubao_server.cocreation.model import (
    Ability,
    Aggregate,
    AuditEntry,
    Column,
    ColumnRef,
    ColumnType,
    Dataset,
    DatasetState,
    Filter,
    Fit,
    Function,
    MemberState,
    Model,
    ModelFamily,
    ModelPhase,
    ModelSpec,
    ModelState,
    Privacy,
    Query,
    Role,
    Room,
    Rule,
    column_violations,
    id_violations,
    privacy_violations,
    raise_if_any,
    rule_violations,
)
from jubao_server.cocreation.privacy import MECHANISM, Cost
from jubao_server.cocreation.query import Download, Result
from jubao_server.cocreation.results import ticket
from jubao_server.platform.timestamps import time_ms, timestamp

ABILITIES: Final = {
    pb.ABILITY_CONTRIBUTE: Ability.CONTRIBUTE,
    pb.ABILITY_ANALYZE: Ability.ANALYZE,
    pb.ABILITY_RECEIVE_RESULTS: Ability.RECEIVE_RESULTS,
}
_ABILITY_PB: Final = {v: k for k, v in ABILITIES.items()}
_TYPES: Final = {pb.Column.TYPE_STRING: ColumnType.STRING, pb.Column.TYPE_INT64: ColumnType.INT64}
_TYPE_PB: Final = {v: k for k, v in _TYPES.items()}
_ROLES: Final = {
    pb.Column.ROLE_JOIN_KEY: Role.JOIN_KEY,
    pb.Column.ROLE_DIMENSION: Role.DIMENSION,
    pb.Column.ROLE_MEASURE: Role.MEASURE,
    pb.Column.ROLE_NEVER_OUTPUT: Role.NEVER_OUTPUT,
}
_ROLE_PB: Final = {v: k for k, v in _ROLES.items()}
FUNCTIONS: Final = {
    pb.AGGREGATE_FUNCTION_COUNT: Function.COUNT,
    pb.AGGREGATE_FUNCTION_COUNT_DISTINCT: Function.COUNT_DISTINCT,
    pb.AGGREGATE_FUNCTION_SUM: Function.SUM,
    pb.AGGREGATE_FUNCTION_AVG: Function.AVG,
    pb.AGGREGATE_FUNCTION_MIN: Function.MIN,
    pb.AGGREGATE_FUNCTION_MAX: Function.MAX,
}
FUNCTION_PB: Final = {v: k for k, v in FUNCTIONS.items()}
_MEMBER_STATES: Final = {
    MemberState.INVITED: pb.Member.STATE_INVITED,
    MemberState.ACTIVE: pb.Member.STATE_ACTIVE,
    MemberState.LEFT: pb.Member.STATE_LEFT,
}
_DATASET_STATES: Final = {
    DatasetState.RECEIVING: pb.Dataset.STATE_RECEIVING,
    DatasetState.READY: pb.Dataset.STATE_READY,
    DatasetState.WITHDRAWN: pb.Dataset.STATE_WITHDRAWN,
}


def checked_ids(**ids: str) -> None:
    """Each id field (collaboration_id=..., dataset_id=...) is well formed, else INVALID_ARGUMENT."""
    raise_if_any([v for field, value in ids.items() for v in id_violations(field, value)])


def abilities(
    field: str, values: list[pb.Ability.ValueType], violations: list[FieldViolation]
) -> tuple[Ability, ...]:
    """Abilities named once each, none unspecified; at least one."""
    known = [ABILITIES[v] for v in values if v in ABILITIES]
    if len(known) != len(values):
        violations.append(
            FieldViolation(field, "ABILITY_CONTRIBUTE, ABILITY_ANALYZE or ABILITY_RECEIVE_RESULTS")
        )
    if not values:
        violations.append(FieldViolation(field, "at least one ability"))
    if len(set(known)) != len(known):
        violations.append(FieldViolation(field, "an ability is named twice"))
    return tuple(sorted(set(known)))


def display_name(field: str, value: str, violations: list[FieldViolation]) -> str:
    if not 1 <= len(value) <= limits.display_name_length_max:
        violations.append(FieldViolation(field, f"1 to {limits.display_name_length_max} characters"))
    return value


def create_command(
    request: pb.CreateCollaborationRequest, now_ms: int
) -> tuple[str, tuple[Ability, ...], int, Privacy | None]:
    """The display name, the creator's abilities, the expiry and the differential privacy of a new
    collaboration."""
    violations: list[FieldViolation] = []
    name = display_name("display_name", request.display_name, violations)
    own = abilities("abilities", list(request.abilities), violations)
    expire_ms = time_ms(request, "expire_time", violations, required="required: when the collaboration ends")
    if (
        expire_ms is not None
        and not now_ms < expire_ms <= now_ms + limits.cocreation_expire_ahead_s_max * 1000
    ):
        violations.append(FieldViolation("expire_time", "in the future, at most 366 days ahead"))
    privacy = (
        privacy_of(request.differential_privacy, violations)
        if request.HasField("differential_privacy")
        else None
    )
    raise_if_any(violations)
    return name, own, expire_ms or 0, privacy


def privacy_of(asked: pb.DifferentialPrivacy, violations: list[FieldViolation]) -> Privacy:
    privacy = Privacy(asked.budget_epsilon_micro, asked.query_epsilon_micro)
    violations += privacy_violations(privacy)
    return privacy


def invite_command(request: pb.InviteMemberRequest, caller: str) -> tuple[str, tuple[Ability, ...]]:
    violations = id_violations("collaboration_id", request.collaboration_id)
    violations += id_violations("tenant_id", request.tenant_id)
    if request.tenant_id == caller:
        violations.append(
            FieldViolation("tenant_id", "not yourself: a creator's abilities are set at creation")
        )
    invited = abilities("abilities", list(request.abilities), violations)
    raise_if_any(violations)
    return request.tenant_id, invited


def dataset_of(request: pb.RegisterDatasetRequest, owner: str, now_ms: int) -> Dataset:
    """The dataset a registration declares, checked: ids, name, columns, and a rule that fits them."""
    violations = id_violations("collaboration_id", request.collaboration_id)
    violations += id_violations("dataset_id", request.dataset_id)
    name = display_name("display_name", request.display_name, violations)
    columns = []
    for index, column in enumerate(request.columns):
        if column.type not in _TYPES:
            violations.append(FieldViolation(f"columns[{index}].type", "TYPE_STRING or TYPE_INT64"))
        if column.role not in _ROLES:
            violations.append(FieldViolation(f"columns[{index}].role", "a role"))
        columns.append(
            Column(
                column.name,
                _TYPES.get(column.type, ColumnType.STRING),
                _ROLES.get(column.role, Role.NEVER_OUTPUT),
            )
        )
    rule = rule_of(request.rule, violations)
    violations += column_violations(tuple(columns))
    violations += rule_violations(tuple(columns), rule)
    raise_if_any(violations)
    return Dataset(
        collaboration_id=request.collaboration_id,
        dataset_id=request.dataset_id,
        owner=owner,
        display_name=name,
        columns=tuple(columns),
        rule=rule,
        state=DatasetState.RECEIVING,
        row_count=0,
        create_time_ms=now_ms,
        update_time_ms=now_ms,
    )


def rule_of(rule: pb.AnalysisRule, violations: list[FieldViolation]) -> Rule:
    aggregates = []
    for index, allowed in enumerate(rule.aggregates):
        functions = [FUNCTIONS[f] for f in allowed.functions if f in FUNCTIONS]
        if len(functions) != len(allowed.functions):
            violations.append(FieldViolation(f"rule.aggregates[{index}].functions", "known functions"))
        aggregates.append((allowed.column, tuple(sorted(set(functions)))))
    return Rule(
        group_by=tuple(rule.group_by_columns),
        filters=tuple(rule.filter_columns),
        aggregates=tuple(aggregates),
        min_group_size=rule.min_group_size or limits.cocreation_min_group_size_default,
        analysts=tuple(rule.analyst_tenant_ids),
        rows_per_join_key_max=rule.rows_per_join_key_max or 1,
        measure_bounds=tuple((b.column, b.lower, b.upper) for b in rule.measure_bounds),
        training=tuple(rule.training_columns),
    )


def collaboration_to_pb(room: Room, now_ms: int) -> pb.Collaboration:
    collaboration = room.collaboration
    privacy = collaboration.privacy
    return pb.Collaboration(
        collaboration_id=collaboration.collaboration_id,
        display_name=collaboration.display_name,
        creator_tenant_id=collaboration.creator,
        state=pb.Collaboration.STATE_EXPIRED if room.expired(now_ms) else pb.Collaboration.STATE_ACTIVE,
        members=[
            pb.Member(
                tenant_id=m.tenant_id,
                abilities=[_ABILITY_PB[a] for a in m.abilities],
                state=_MEMBER_STATES[m.state],
            )
            for m in sorted(room.members.values(), key=lambda m: m.tenant_id)
        ],
        create_time=timestamp(collaboration.create_time_ms),
        expire_time=timestamp(collaboration.expire_time_ms),
        differential_privacy=pb.DifferentialPrivacy(
            budget_epsilon_micro=privacy.budget_epsilon_micro,
            query_epsilon_micro=privacy.query_epsilon_micro,
        )
        if privacy is not None
        else None,
    )


def dataset_to_pb(dataset: Dataset) -> pb.Dataset:
    rule = dataset.rule
    return pb.Dataset(
        collaboration_id=dataset.collaboration_id,
        dataset_id=dataset.dataset_id,
        owner_tenant_id=dataset.owner,
        display_name=dataset.display_name,
        columns=[
            pb.Column(name=c.name, type=_TYPE_PB[c.type], role=_ROLE_PB[c.role]) for c in dataset.columns
        ],
        rule=pb.AnalysisRule(
            group_by_columns=rule.group_by,
            filter_columns=rule.filters,
            aggregates=[
                pb.AllowedAggregate(column=name, functions=[FUNCTION_PB[f] for f in functions])
                for name, functions in rule.aggregates
            ],
            min_group_size=rule.min_group_size,
            analyst_tenant_ids=rule.analysts,
            rows_per_join_key_max=rule.rows_per_join_key_max,
            measure_bounds=[
                pb.MeasureBounds(column=name, lower=low, upper=high)
                for name, low, high in rule.measure_bounds
            ],
            training_columns=rule.training,
        ),
        state=_DATASET_STATES[dataset.state],
        row_count=dataset.row_count,
        create_time=timestamp(dataset.create_time_ms),
        update_time=timestamp(dataset.update_time_ms),
    )


def query_of(request: pb.RunQueryRequest) -> Query:
    """The structured query of a request (its shape is checked against the room: `query.check_shape`)."""
    raise_if_any(id_violations("collaboration_id", request.collaboration_id))
    query = request.query
    violations: list[FieldViolation] = []
    aggregates = []
    for index, aggregate in enumerate(query.aggregates):
        function = FUNCTIONS.get(aggregate.function)
        if function is None:
            violations.append(FieldViolation(f"query.aggregates[{index}].function", "an aggregate function"))
        column = _ref(aggregate.column) if aggregate.HasField("column") else None
        aggregates.append(Aggregate(function or Function.COUNT, column))
    raise_if_any(violations)
    return Query(
        dataset_ids=tuple(query.dataset_ids),
        filters=tuple(Filter(_ref(f.column), (*f.values, *f.int64_values)) for f in query.filters),
        group_by=tuple(_ref(ref) for ref in query.group_by),
        aggregates=tuple(aggregates),
    )


def _ref_pb(column: ColumnRef) -> pb.ColumnRef:
    return pb.ColumnRef(dataset_id=column.dataset_id, column=column.column)


def query_to_pb(query: Query) -> pb.Query:
    ref = _ref_pb
    return pb.Query(
        dataset_ids=query.dataset_ids,
        filters=[
            pb.Filter(
                column=ref(f.column),
                values=[v for v in f.values if isinstance(v, str)],
                int64_values=[v for v in f.values if isinstance(v, int)],
            )
            for f in query.filters
        ],
        group_by=[ref(column) for column in query.group_by],
        aggregates=[
            pb.Aggregate(function=FUNCTION_PB[a.function], column=ref(a.column) if a.column else None)
            for a in query.aggregates
        ],
    )


def audit_to_pb(entry: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        audit_id=entry.audit_id,
        time=timestamp(entry.time_ms),
        analyst_tenant_id=entry.analyst,
        dataset_ids=entry.datasets,
        owner_tenant_ids=entry.owners,
        query=query_to_pb(entry.query) if entry.query is not None else None,
        rows_scanned=entry.rows_scanned,
        groups_returned=entry.groups_returned,
        groups_suppressed=entry.groups_suppressed,
        epsilon_micro=entry.epsilon_micro,
        model_id=entry.model_id,
        model_spec=spec_to_pb(entry.model_spec) if entry.model_spec is not None else None,
        scoring=entry.scored,
    )


def spec_of(request: pb.StartTrainingRequest) -> ModelSpec:
    """The model a request asks for (its shape is checked against the room: `training.spec_violations`)."""
    violations = id_violations("collaboration_id", request.collaboration_id)
    spec = request.spec
    if spec.family != pb.MODEL_FAMILY_LOGISTIC:
        violations.append(FieldViolation("spec.family", "MODEL_FAMILY_LOGISTIC"))
    if not spec.HasField("label"):
        violations.append(FieldViolation("spec.label", "required: the column the model predicts"))
    raise_if_any(violations)
    return ModelSpec(
        dataset_ids=tuple(spec.dataset_ids),
        features=tuple(_ref(ref) for ref in spec.features),
        label=_ref(spec.label),
        family=ModelFamily.LOGISTIC,
    )


def spec_to_pb(spec: ModelSpec) -> pb.ModelSpec:
    return pb.ModelSpec(
        dataset_ids=spec.dataset_ids,
        features=[_ref_pb(ref) for ref in spec.features],
        label=_ref_pb(spec.label),
        family=pb.MODEL_FAMILY_LOGISTIC,
    )


def model_name(collaboration_id: str, model_id: str) -> str:
    return f"collaborations/{collaboration_id}/models/{model_id}"


def model_ids(name: str) -> tuple[str, str]:
    """The collaboration and model ids of a model's name, else INVALID_ARGUMENT."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "collaborations" or parts[2] != "models":
        raise_if_any([FieldViolation("name", "collaborations/{collaboration_id}/models/{model_id}")])
    checked_ids(collaboration_id=parts[1], model_id=parts[3])
    return parts[1], parts[3]


_MODEL_STATES: Final = {
    ModelState.RUNNING: pb.Model.STATE_RUNNING,
    ModelState.SUCCEEDED: pb.Model.STATE_SUCCEEDED,
    ModelState.FAILED: pb.Model.STATE_FAILED,
}
_MODEL_PHASES: Final = {
    ModelPhase.READING: pb.Model.PHASE_READING,
    ModelPhase.FITTING: pb.Model.PHASE_FITTING,
    ModelPhase.DONE: pb.Model.PHASE_DONE,
}


def model_to_pb(model: Model, receives: bool) -> pb.Model:
    """A model as a member sees it: its fit only if it may receive results."""
    found = model.fit if receives else None
    return pb.Model(
        name=model_name(model.collaboration_id, model.model_id),
        collaboration_id=model.collaboration_id,
        model_id=model.model_id,
        trainer_tenant_id=model.trainer,
        spec=spec_to_pb(model.spec),
        state=_MODEL_STATES[model.state],
        done=model.state is not ModelState.RUNNING,
        phase=_MODEL_PHASES[model.phase],
        rows_read=model.rows_read,
        fit=_fit_to_pb(found) if found is not None else None,
        error_reason=model.error_reason,
        error_message=model.error_message,
        create_time=timestamp(model.create_time_ms),
        update_time=timestamp(model.update_time_ms),
        epsilon_micro=model.epsilon_micro,
    )


def _fit_to_pb(found: Fit) -> pb.ModelFit:
    return pb.ModelFit(
        rows=found.rows,
        positives=found.positives,
        coefficients=[
            pb.Coefficient(
                term=c.term,
                feature=_ref_pb(c.feature) if c.feature is not None else None,
                level=c.level or "",
                estimate=c.estimate,
            )
            for c in found.coefficients
        ],
        auc=found.auc,
        log_loss=found.log_loss,
        deviance=found.deviance,
        null_deviance=found.null_deviance,
        levels_pooled=found.levels_pooled,
        min_group_size=found.min_group_size,
        reference_levels=[c.term for c in found.reference_levels],
    )


def audit_position(position: str | None) -> tuple[int, str] | None:
    """A page token's position in the audit log ("<time_ms>/<audit_id>", as `audit_token` wrote it)."""
    if position is None:
        return None
    time_ms, _, audit_id = position.partition("/")
    return int(time_ms), audit_id


def audit_token(position: tuple[int, str] | None) -> str | None:
    return None if position is None else f"{position[0]}/{position[1]}"


def _ref(ref: pb.ColumnRef) -> ColumnRef:
    return ColumnRef(ref.dataset_id, ref.column)


def result_to_pb(result: Result) -> pb.QueryResult:
    columns = [result.rows.column(i).to_pylist() for i in range(result.rows.num_columns)]
    return pb.QueryResult(
        columns=result.columns,
        rows=[
            pb.ResultRow(cells=[_cell(column[i]) for column in columns]) for i in range(result.rows.num_rows)
        ],
        groups_suppressed=result.groups_suppressed,
        min_group_size=result.min_group_size,
        rows_scanned=result.rows_scanned,
        noise=pb.Noise(epsilon_micro=result.epsilon_micro, mechanism=MECHANISM)
        if result.epsilon_micro
        else None,
        download=_download_to_pb(result.download) if result.download is not None else None,
    )


def _download_to_pb(download: Download) -> pb.QueryResultDownload:
    return pb.QueryResultDownload(
        ticket=ticket(download),
        row_count=download.row_count,
        expire_time=timestamp(download.expire_time_ms),
    )


def cost_to_pb(cost: Cost | None) -> pb.PrivacyCost | None:
    if cost is None:
        return None
    return pb.PrivacyCost(
        epsilon_micro=cost.epsilon_micro,
        budget_epsilon_micro=cost.budget_epsilon_micro,
        remaining_epsilon_micro=cost.remaining_epsilon_micro,
    )


def _cell(value: object) -> pb.Cell:
    if isinstance(value, str):
        return pb.Cell(string_value=value)
    if isinstance(value, float):
        return pb.Cell(double_value=value)
    if isinstance(value, int):
        return pb.Cell(int64_value=value)
    return pb.Cell()
