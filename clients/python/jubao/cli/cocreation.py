"""`jubao cocreation ...`: data clean rooms. Collaborations, members and datasets over gRPC; a dataset's
rows tokenized on this machine and uploaded over Arrow Flight (`upload`, which loads pyarrow and never
gRPC: they must not share a process, apache/arrow#13300); aggregate queries over the join; joint models
(`train`, `model`) and their scores over your own rows, downloaded over Flight (`score`); the audit log."""

from __future__ import annotations

import datetime
import decimal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from google.protobuf import any_pb2

from jubao.cli.common import (
    PAGE_SIZE,
    RequestIdOption,
    connect,
    emit,
    enum_label,
    list_all,
    list_table,
    record_table,
    text,
    time_label,
)
from jubao.cocreation.v1 import cocreation_pb2 as pb

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from jubao.client import Client, ClientConfig


app = typer.Typer(
    help="Data co-creation: clean-room collaborations, datasets joined on keyed tokens, aggregate queries."
)

ABILITIES: Final = {enum_label(name, "ABILITY_"): value for name, value in pb.Ability.items() if value}
FUNCTIONS: Final = {
    enum_label(name, "AGGREGATE_FUNCTION_"): value for name, value in pb.AggregateFunction.items() if value
}
TYPES: Final = {enum_label(name, "TYPE_"): value for name, value in pb.Column.Type.items() if value}
ROLES: Final = {enum_label(name, "ROLE_"): value for name, value in pb.Column.Role.items() if value}

CollaborationArgument = Annotated[
    str, typer.Argument(metavar="COLLABORATION", help="The collaboration's id.")
]
DatasetArgument = Annotated[str, typer.Argument(metavar="DATASET", help="The dataset's id.")]
ModelArgument = Annotated[str, typer.Argument(metavar="MODEL", help="The model's id.")]
MODEL_POLLS_MAX: Final = 2400
MODEL_POLL_S: Final = 0.25
AbilityOption = Annotated[
    list[str],
    typer.Option("--ability", help=f"Repeatable: {', '.join(ABILITIES)}."),
]
# Epsilon is shown and typed as a decimal with at most six places, and sent in millionths.
_MICRO: Final = decimal.Decimal(1_000_000)


def _epsilon_micro(option: str, value: str) -> int:
    """A decimal epsilon ("0.5") in millionths, exactly, or a usage error."""
    try:
        micro = decimal.Decimal(value) * _MICRO
    except decimal.InvalidOperation:
        raise typer.BadParameter(f"{value!r}: a decimal such as 0.5", param_hint=option) from None
    if micro != micro.to_integral_value() or micro < 0:
        raise typer.BadParameter(f"{value!r}: at most six decimal places, not negative", param_hint=option)
    return int(micro)


BudgetEpsilonOption = Annotated[
    str,
    typer.Option(
        "--dp-budget-epsilon",
        help="Differential privacy: the epsilon each member may spend on queries and trainings (e.g. 3).",
    ),
]
QueryEpsilonOption = Annotated[
    str,
    typer.Option(
        "--dp-query-epsilon", help="With --dp-budget-epsilon: a query's or training's cost (e.g. 0.5)."
    ),
]


PreviewOption = Annotated[
    bool, typer.Option("--preview", help="Differential privacy: show the cost and the budget left only.")
]
EpsilonOption = Annotated[
    str,
    typer.Option(
        "--epsilon", help="Differential privacy: spend this epsilon (default: the collaboration's)."
    ),
]


def _differential_privacy(budget_epsilon: str, query_epsilon: str) -> pb.DifferentialPrivacy:
    return pb.DifferentialPrivacy(
        budget_epsilon_micro=_epsilon_micro("--dp-budget-epsilon", budget_epsilon),
        query_epsilon_micro=_epsilon_micro("--dp-query-epsilon", query_epsilon),
    )


def _epsilon(micro: int) -> str:
    return str(decimal.Decimal(micro) / _MICRO)


def _choice(option: str, choices: Mapping[str, int], value: str) -> int:
    found = choices.get(value.lower())
    if found is None:
        raise typer.BadParameter(f"{value!r}: one of {', '.join(choices)}", param_hint=option)
    return found


def _abilities(values: list[str]) -> list[pb.Ability.ValueType]:
    return [pb.Ability.ValueType(_choice("--ability", ABILITIES, v)) for v in values]


@app.command()
def create(
    ctx: typer.Context,
    *,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Its display name.")],
    abilities: AbilityOption,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="Days until it expires.")] = 30,
    budget_epsilon: BudgetEpsilonOption = "",
    query_epsilon: QueryEpsilonOption = "0.5",
    request_id: RequestIdOption = "",
) -> None:
    """Create a collaboration whose only member is you, with the abilities you give yourself (and
    differential privacy for every query when --dp-budget-epsilon is set)."""
    expire = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
    privacy = _differential_privacy(budget_epsilon, query_epsilon) if budget_epsilon else None
    request = pb.CreateCollaborationRequest(
        request_id=request_id,
        display_name=name,
        abilities=_abilities(abilities),
        differential_privacy=privacy,
    )
    request.expire_time.FromDatetime(expire)
    with connect(ctx) as client:
        response = client.cocreation.CreateCollaboration(request)
    emit(ctx, response, lambda: _collaboration_record(response.collaboration))


@app.command()
def get(ctx: typer.Context, collaboration_id: CollaborationArgument) -> None:
    """Show a collaboration you are a member of (or invited to) and its members."""
    with connect(ctx) as client:
        response = client.cocreation.GetCollaboration(
            pb.GetCollaborationRequest(collaboration_id=collaboration_id)
        )
    emit(ctx, response, lambda: _collaboration_record(response.collaboration))


@app.command("list")
def list_collaborations(ctx: typer.Context) -> None:
    """List the collaborations you are a member of or invited to."""
    with connect(ctx) as client:
        found = list_all(
            client.cocreation.ListCollaborations,
            pb.ListCollaborationsRequest(page_size=PAGE_SIZE),
            lambda r: r.collaborations,
        )
    emit(ctx, pb.ListCollaborationsResponse(collaborations=found), lambda: _collaborations_table(found))


@app.command("set-privacy")
def set_privacy(
    ctx: typer.Context,
    collaboration_id: CollaborationArgument,
    *,
    budget_epsilon: BudgetEpsilonOption,
    query_epsilon: QueryEpsilonOption = "0.5",
    request_id: RequestIdOption = "",
) -> None:
    """Turn differential privacy on for a collaboration you created, or change its budgets, while none of
    its datasets has been uploaded. Epsilon already spent stays spent."""
    request = pb.SetDifferentialPrivacyRequest(
        request_id=request_id,
        collaboration_id=collaboration_id,
        differential_privacy=_differential_privacy(budget_epsilon, query_epsilon),
    )
    with connect(ctx) as client:
        response = client.cocreation.SetDifferentialPrivacy(request)
    emit(ctx, response, lambda: _collaboration_record(response.collaboration))


@app.command()
def invite(
    ctx: typer.Context,
    collaboration_id: CollaborationArgument,
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT", help="The tenant invited.")],
    abilities: AbilityOption,
    request_id: RequestIdOption = "",
) -> None:
    """Invite a tenant with the abilities it will have once it accepts (the creator only)."""
    request = pb.InviteMemberRequest(
        request_id=request_id,
        collaboration_id=collaboration_id,
        tenant_id=tenant_id,
        abilities=_abilities(abilities),
    )
    with connect(ctx) as client:
        response = client.cocreation.InviteMember(request)
    emit(ctx, response, lambda: _collaboration_record(response.collaboration))


@app.command()
def accept(
    ctx: typer.Context, collaboration_id: CollaborationArgument, request_id: RequestIdOption = ""
) -> None:
    """Accept your invitation."""
    request = pb.AcceptInvitationRequest(request_id=request_id, collaboration_id=collaboration_id)
    with connect(ctx) as client:
        response = client.cocreation.AcceptInvitation(request)
    emit(ctx, response, lambda: _collaboration_record(response.collaboration))


@app.command()
def leave(
    ctx: typer.Context, collaboration_id: CollaborationArgument, request_id: RequestIdOption = ""
) -> None:
    """Leave (or decline): your datasets are withdrawn and their rows deleted."""
    request = pb.LeaveCollaborationRequest(request_id=request_id, collaboration_id=collaboration_id)
    with connect(ctx) as client:
        response = client.cocreation.LeaveCollaboration(request)
    emit(ctx, response, lambda: text(f"left {collaboration_id}"))


@app.command()
def register(
    ctx: typer.Context,
    *,
    collaboration_id: CollaborationArgument,
    dataset_id: DatasetArgument,
    columns: Annotated[
        list[str],
        typer.Option(
            "--column",
            metavar="NAME:TYPE:ROLE",
            help=f"Repeatable, in order. TYPE: {', '.join(TYPES)}; ROLE: {', '.join(ROLES)}.",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Its display name (default: the id).")] = "",
    group_by: Annotated[list[str] | None, typer.Option("--group-by", help="A dimension to group by.")] = None,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="A dimension to filter on.")] = None,
    aggregates: Annotated[
        list[str] | None,
        typer.Option(
            "--aggregate",
            metavar="COLUMN:FN[,FN]",
            help=f"Functions allowed on a column: {', '.join(FUNCTIONS)}.",
        ),
    ] = None,
    min_group_size: Annotated[int, typer.Option("--min-group-size", min=0, help="0: 100.")] = 0,
    analysts: Annotated[
        list[str] | None, typer.Option("--analyst", help="Only these tenants analyse it.")
    ] = None,
    rows_per_key: Annotated[
        int,
        typer.Option(
            "--rows-per-key",
            min=0,
            help="Differential privacy: the rows of one join key a query reads (0: 1).",
        ),
    ] = 0,
    bounds: Annotated[
        list[str] | None,
        typer.Option(
            "--bounds",
            metavar="COLUMN:LOW:HIGH",
            help="Differential privacy: the range a summed measure is clamped to.",
        ),
    ] = None,
    training: Annotated[
        list[str] | None,
        typer.Option("--train", help="A dimension or measure a model may use (feature or label)."),
    ] = None,
    request_id: RequestIdOption = "",
) -> None:
    """Register one of your datasets with a role per column and its analysis rule; upload its rows next
    (`jubao cocreation upload`)."""
    request = pb.RegisterDatasetRequest(
        request_id=request_id,
        collaboration_id=collaboration_id,
        dataset_id=dataset_id,
        display_name=name or dataset_id,
        columns=[_column(spec) for spec in columns],
        rule=pb.AnalysisRule(
            group_by_columns=group_by or [],
            filter_columns=filters or [],
            aggregates=[_allowed(spec) for spec in aggregates or []],
            min_group_size=min_group_size,
            analyst_tenant_ids=analysts or [],
            rows_per_join_key_max=rows_per_key,
            measure_bounds=[_bounds(spec) for spec in bounds or []],
            training_columns=training or [],
        ),
    )
    with connect(ctx) as client:
        response = client.cocreation.RegisterDataset(request)
    emit(ctx, response, lambda: _datasets_table([response.dataset]))


@app.command()
def datasets(ctx: typer.Context, collaboration_id: CollaborationArgument) -> None:
    """List the collaboration's datasets: owner, state, rows and rule (never their rows)."""
    with connect(ctx) as client:
        found = list_all(
            client.cocreation.ListDatasets,
            pb.ListDatasetsRequest(collaboration_id=collaboration_id, page_size=PAGE_SIZE),
            lambda r: r.datasets,
        )
    emit(ctx, pb.ListDatasetsResponse(datasets=found), lambda: _datasets_table(found))


@app.command()
def withdraw(
    ctx: typer.Context,
    collaboration_id: CollaborationArgument,
    dataset_id: DatasetArgument,
    request_id: RequestIdOption = "",
) -> None:
    """Withdraw one of your datasets: its rows are deleted and no query reads it again."""
    request = pb.WithdrawDatasetRequest(
        request_id=request_id, collaboration_id=collaboration_id, dataset_id=dataset_id
    )
    with connect(ctx) as client:
        response = client.cocreation.WithdrawDataset(request)
    emit(ctx, response, lambda: _datasets_table([response.dataset]))


@app.command()
def upload(
    ctx: typer.Context,
    *,
    collaboration_id: CollaborationArgument,
    dataset_id: DatasetArgument,
    path: Annotated[
        Path,
        typer.Argument(metavar="FILE", exists=True, dir_okay=False, help="Parquet, CSV or Arrow IPC file."),
    ],
    join_keys: Annotated[list[str], typer.Option("--join-key", help="A column to tokenize (the join key).")],
    secret_file: Annotated[
        Path,
        typer.Option(
            "--secret-file",
            exists=True,
            dir_okay=False,
            help="The collaboration's secret, agreed out of band.",
        ),
    ],
) -> None:
    """Tokenize the join key on this machine (HMAC-SHA256 with the secret) and upload the dataset's rows
    over Arrow Flight; run it again after a failure to continue."""
    import pyarrow as pa

    from jubao.bulk.cocreation import dataset_schema, tokenize, upload_dataset
    from jubao.bulk.files import batches_of
    from jubao.cli.bulk import connect_bulk

    secret = secret_file.read_bytes().strip()
    with connect_bulk(ctx) as client:
        schema = dataset_schema(client, collaboration_id, dataset_id)
        table = pa.Table.from_batches(list(batches_of(path, schema)))
        receipt = upload_dataset(client, collaboration_id, dataset_id, tokenize(table, join_keys, secret))
    typer.echo(f"{dataset_id}: {receipt.rows_received} rows stored ({receipt.rows_sent} sent now)")


@app.command()
def query(
    ctx: typer.Context,
    *,
    collaboration_id: CollaborationArgument,
    dataset_ids: Annotated[list[str], typer.Option("--dataset", help="A dataset to join, repeatable.")],
    aggregates: Annotated[
        list[str],
        typer.Option(
            "--aggregate",
            metavar="FN[:DATASET.COLUMN]",
            help=f"{', '.join(FUNCTIONS)}; count alone counts rows.",
        ),
    ],
    group_by: Annotated[list[str] | None, typer.Option("--group-by", metavar="DATASET.COLUMN")] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", metavar="DATASET.COLUMN=V1,V2", help="Keep rows with these values."),
    ] = None,
    preview: PreviewOption = False,
    epsilon: EpsilonOption = "",
    request_id: RequestIdOption = "",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Write the groups to a Parquet, CSV or Arrow IPC file (by its suffix) instead of showing "
            "them; a result too large for the response is downloaded over Arrow Flight.",
        ),
    ] = None,
) -> None:
    """Aggregate over the join of datasets on their join keys, within every owner's rule. Groups of too few
    people are left out and counted. With differential privacy the answer is noised and paid for from your
    budget (once per --request-id); --preview shows the cost first. More groups than a response carries
    (1,000) are kept for you for a day: --output downloads them (or `jubao cocreation result`)."""
    request = pb.RunQueryRequest(
        collaboration_id=collaboration_id,
        query=pb.Query(
            dataset_ids=dataset_ids,
            group_by=[_ref("--group-by", spec) for spec in group_by or []],
            filters=[_filter(spec) for spec in filters or []],
            aggregates=[_aggregate(spec) for spec in aggregates],
        ),
        request_id=request_id,
        validate_only=preview,
        epsilon_micro=_epsilon_micro("--epsilon", epsilon) if epsilon else 0,
    )
    with connect(ctx) as client:
        response = client.cocreation.RunQuery(request)
        config = client.config
    if preview:
        emit(ctx, response, lambda: text(_cost(_privacy_cost(response))))
    elif output is None:
        emit(ctx, response, lambda: _result_table(response))
    elif response.result.HasField("download"):
        _download_result(config, response.result.download, output)
    else:
        from jubao.bulk.files import write_batches
        from jubao.client.cocreation import result_table

        groups = result_table(response.result, config)
        typer.echo(f"{write_batches(groups.to_batches(), groups.schema, output)} groups written to {output}")


def _download_result(config: ClientConfig, download: pb.QueryResultDownload, output: Path) -> None:
    """Download a kept result to `output` with `jubao cocreation result` in a process of its own (Arrow
    Flight must not share this one with gRPC, apache/arrow#13300), its progress bar on this terminal."""
    from jubao.client.config import child_environment

    collaboration_id, result_id = _kept(download.ticket)
    command = [sys.executable, "-m", "jubao.cli", "cocreation", "result", collaboration_id, result_id]
    done = subprocess.run([*command, "--output", str(output)], env=child_environment(config), check=False)
    if done.returncode != 0:
        raise typer.Exit(done.returncode)


def _kept(ticket: bytes) -> tuple[str, str]:
    """The collaboration and result a kept result's ticket names."""
    packed = any_pb2.Any.FromString(ticket)
    command = pb.GetQueryResult()
    packed.Unpack(command)
    return command.collaboration_id, command.result_id


@app.command()
def result(
    ctx: typer.Context,
    *,
    collaboration_id: CollaborationArgument,
    result_id: Annotated[str, typer.Argument(metavar="RESULT", help="The kept result's id.")],
    output: Annotated[Path, typer.Option("--output", help="Parquet, CSV or Arrow IPC file to write.")],
) -> None:
    """Download a query result too large for its response over Arrow Flight (only you may, for a day)."""
    from jubao.bulk.files import write_batches
    from jubao.cli.bulk import connect_bulk, counted, progress_bar

    ticket = any_pb2.Any()
    ticket.Pack(pb.GetQueryResult(collaboration_id=collaboration_id, result_id=result_id))
    with connect_bulk(ctx) as client, progress_bar() as progress:
        reader = client.download(ticket.SerializeToString())
        task = progress.add_task("result", total=None)
        rows = write_batches(counted(reader, progress, task), reader.schema, output)
    typer.echo(f"{rows} groups written to {output}")


@app.command()
def train(
    ctx: typer.Context,
    *,
    collaboration_id: CollaborationArgument,
    dataset_ids: Annotated[list[str], typer.Option("--dataset", help="A dataset to join, repeatable.")],
    features: Annotated[
        list[str], typer.Option("--feature", metavar="DATASET.COLUMN", help="A feature, repeatable.")
    ],
    label: Annotated[str, typer.Option("--label", metavar="DATASET.COLUMN", help="The 0/1 label.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is trained.")] = True,
    preview: PreviewOption = False,
    epsilon: EpsilonOption = "",
    request_id: RequestIdOption = "",
) -> None:
    """Train a logistic regression on the join of datasets inside jubao (a long-running operation): you
    receive its coefficients and fit, never rows. Every column must be among its owner's training columns.
    With differential privacy the fit is noised and paid for from your budget (once per --request-id);
    --preview shows the cost first."""
    request = pb.StartTrainingRequest(
        request_id=request_id,
        collaboration_id=collaboration_id,
        spec=pb.ModelSpec(
            dataset_ids=dataset_ids,
            features=[_ref("--feature", spec) for spec in features],
            label=_ref("--label", label),
            family=pb.MODEL_FAMILY_LOGISTIC,
        ),
        validate_only=preview,
        epsilon_micro=_epsilon_micro("--epsilon", epsilon) if epsilon else 0,
    )
    with connect(ctx) as client:
        response = client.cocreation.StartTraining(request)
        if preview:
            emit(ctx, response, lambda: text(_cost(_privacy_cost(response))))
            return
        model = response.model
        if wait and not model.done:
            model = _follow(client, model)
    emit(ctx, pb.GetModelResponse(model=model), lambda: _model_record(model))


@app.command("model")
def get_model(ctx: typer.Context, collaboration_id: CollaborationArgument, model_id: ModelArgument) -> None:
    """Show a model: its state and, once trained, its coefficients and fit."""
    name = f"collaborations/{collaboration_id}/models/{model_id}"
    with connect(ctx) as client:
        response = client.cocreation.GetModel(pb.GetModelRequest(name=name))
    emit(ctx, response, lambda: _model_record(response.model))


@app.command()
def models(ctx: typer.Context, collaboration_id: CollaborationArgument) -> None:
    """List the collaboration's models: trainer, state, label and, if you receive results, rows fitted."""
    with connect(ctx) as client:
        found = list_all(
            client.cocreation.ListModels,
            pb.ListModelsRequest(collaboration_id=collaboration_id, page_size=PAGE_SIZE),
            lambda r: r.models,
        )
    emit(ctx, pb.ListModelsResponse(models=found), lambda: _models_table(found))


def _models_table(found: list[pb.Model]) -> Table:
    headers = ("MODEL", "TRAINER", "STATE", "LABEL", "ROWS", "UPDATED")
    rows = [
        [
            m.model_id,
            m.trainer_tenant_id,
            enum_label(pb.Model.State.Name(m.state), "STATE_"),
            f"{m.spec.label.dataset_id}.{m.spec.label.column}",
            str(m.fit.rows) if m.HasField("fit") else "-",
            time_label(m.update_time),
        ]
        for m in found
    ]
    return list_table(headers, rows)


@app.command()
def score(
    ctx: typer.Context,
    *,
    collaboration_id: CollaborationArgument,
    model_id: ModelArgument,
    dataset_id: DatasetArgument,
    out: Annotated[Path, typer.Option("--out", help="Parquet, CSV or Arrow IPC file to write.")],
) -> None:
    """Download a model's scores over the rows of one of your datasets over Arrow Flight (row, token,
    probability in millionths): only you receive them."""
    from jubao.bulk import schemas
    from jubao.bulk.files import write_batches
    from jubao.cli.bulk import connect_bulk, counted, progress_bar

    with connect_bulk(ctx) as client, progress_bar() as progress:
        task = progress.add_task("scores", total=None)
        reader = client.score_dataset(collaboration_id, model_id, dataset_id)
        rows = write_batches(counted(reader, progress, task), schemas.SCORES, out)
    typer.echo(f"{rows} scores written to {out}")


@app.command()
def audit(ctx: typer.Context, collaboration_id: CollaborationArgument) -> None:
    """List the audit log: the queries, trainings and scorings you ran or that read your datasets."""
    with connect(ctx) as client:
        found = list_all(
            client.cocreation.ListAuditEntries,
            pb.ListAuditEntriesRequest(collaboration_id=collaboration_id, page_size=PAGE_SIZE),
            lambda r: r.entries,
        )
    emit(ctx, pb.ListAuditEntriesResponse(entries=found), lambda: _audit_table(found))


def _audit_table(entries: list[pb.AuditEntry]) -> Table:
    def what(entry: pb.AuditEntry) -> str:
        if entry.scoring:
            return f"scoring {entry.model_id}"
        return f"training {entry.model_id}" if entry.model_id else "query"

    headers = ("TIME", "ANALYST", "WHAT", "DATASETS", "ROWS SCANNED")
    rows = [
        [
            time_label(e.time),
            e.analyst_tenant_id,
            what(e),
            ", ".join(f"{d} ({o})" for d, o in zip(e.dataset_ids, e.owner_tenant_ids, strict=True)),
            str(e.rows_scanned),
        ]
        for e in entries
    ]
    return list_table(headers, rows, wrap=(3,))


def _follow(client: Client, model: pb.Model) -> pb.Model:
    """Poll a model until it is done, with a progress bar of its phase and the rows read."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    # On stderr: stdout carries the answer (`--json` too).
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("training")
        for _ in range(MODEL_POLLS_MAX):
            phase = enum_label(pb.Model.Phase.Name(model.phase), "PHASE_")
            progress.update(task, description=f"training: {phase}, {model.rows_read:,} rows read")
            if model.done:
                break
            time.sleep(MODEL_POLL_S)
            model = client.cocreation.GetModel(pb.GetModelRequest(name=model.name)).model
    return model


def _model_record(model: pb.Model) -> Table:
    fit = model.fit
    fields = [
        ("model", model.model_id),
        ("state", enum_label(pb.Model.State.Name(model.state), "STATE_")),
        ("label", f"{model.spec.label.dataset_id}.{model.spec.label.column}"),
    ]
    if model.error_reason:
        fields.append(("error", f"{model.error_reason}: {model.error_message}"))
    if model.HasField("fit"):
        fields += [(c.term, c.estimate) for c in fit.coefficients]
        fields += [
            ("reference levels", ", ".join(fit.reference_levels) or "-"),
            ("rows", f"{fit.rows} ({fit.positives} positive)"),
        ]
        if not model.epsilon_micro:
            fields += [
                ("auc", fit.auc),
                ("log-loss", fit.log_loss),
                ("deviance", f"{fit.deviance} (null {fit.null_deviance})"),
                ("levels pooled", f"{fit.levels_pooled} (under {fit.min_group_size} keys)"),
            ]
    if model.epsilon_micro:
        fields.append(("differential privacy", f"noised; epsilon {_epsilon(model.epsilon_micro)} spent"))
    return record_table(fields)


def _column(spec: str) -> pb.Column:
    parts = spec.split(":")
    if len(parts) != 3:
        raise typer.BadParameter(f"{spec!r}: NAME:TYPE:ROLE", param_hint="--column")
    kind = pb.Column.Type.ValueType(_choice("--column", TYPES, parts[1]))
    role = pb.Column.Role.ValueType(_choice("--column", ROLES, parts[2]))
    return pb.Column(name=parts[0], type=kind, role=role)


def _allowed(spec: str) -> pb.AllowedAggregate:
    column, _, names = spec.partition(":")
    functions = [
        pb.AggregateFunction.ValueType(_choice("--aggregate", FUNCTIONS, f)) for f in names.split(",")
    ]
    return pb.AllowedAggregate(column=column, functions=functions)


def _bounds(spec: str) -> pb.MeasureBounds:
    parts = spec.split(":")
    if len(parts) != 3 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
        raise typer.BadParameter(f"{spec!r}: COLUMN:LOW:HIGH (integers)", param_hint="--bounds")
    return pb.MeasureBounds(column=parts[0], lower=int(parts[1]), upper=int(parts[2]))


def _cost(cost: pb.PrivacyCost | None, *, ran: bool = False) -> str:
    """A query's or training's cost and the budget left after it (`ran`: it did run)."""
    if cost is None:
        return "it is valid; no differential privacy: it costs nothing"
    left = "left" if ran else "would be left"
    return (
        f"costs epsilon {_epsilon(cost.epsilon_micro)}; {_epsilon(cost.remaining_epsilon_micro)} of"
        f" {_epsilon(cost.budget_epsilon_micro)} {left}"
    )


def _privacy_cost(response: pb.RunQueryResponse | pb.StartTrainingResponse) -> pb.PrivacyCost | None:
    return response.privacy_cost if response.HasField("privacy_cost") else None


def _ref(option: str, spec: str) -> pb.ColumnRef:
    dataset_id, dot, column = spec.partition(".")
    if not dot:
        raise typer.BadParameter(f"{spec!r}: DATASET.COLUMN", param_hint=option)
    return pb.ColumnRef(dataset_id=dataset_id, column=column)


def _filter(spec: str) -> pb.Filter:
    column, equals, values = spec.partition("=")
    if not equals:
        raise typer.BadParameter(f"{spec!r}: DATASET.COLUMN=V1,V2", param_hint="--filter")
    listed = values.split(",")
    if all(v.lstrip("-").isdigit() for v in listed):
        return pb.Filter(column=_ref("--filter", column), int64_values=[int(v) for v in listed])
    return pb.Filter(column=_ref("--filter", column), values=listed)


def _aggregate(spec: str) -> pb.Aggregate:
    name, _, column = spec.partition(":")
    function = pb.AggregateFunction.ValueType(_choice("--aggregate", FUNCTIONS, name))
    if not column:
        return pb.Aggregate(function=function)
    return pb.Aggregate(function=function, column=_ref("--aggregate", column))


def _members(collaboration: pb.Collaboration) -> str:
    return "; ".join(
        f"{m.tenant_id} {enum_label(pb.Member.State.Name(m.state), 'STATE_')}"
        f" ({', '.join(enum_label(pb.Ability.Name(a), 'ABILITY_') for a in m.abilities)})"
        for m in collaboration.members
    )


def _collaboration_record(collaboration: pb.Collaboration) -> Table:
    return record_table(
        [
            ("collaboration", collaboration.collaboration_id),
            ("name", collaboration.display_name),
            ("creator", collaboration.creator_tenant_id),
            ("state", enum_label(pb.Collaboration.State.Name(collaboration.state), "STATE_")),
            ("members", _members(collaboration)),
            ("expires", time_label(collaboration.expire_time)),
            ("differential privacy", _privacy(collaboration)),
        ]
    )


def _privacy(collaboration: pb.Collaboration) -> str:
    if not collaboration.HasField("differential_privacy"):
        return "off"
    privacy = collaboration.differential_privacy
    return (
        f"budget epsilon {_epsilon(privacy.budget_epsilon_micro)} per member;"
        f" a query costs {_epsilon(privacy.query_epsilon_micro)}"
    )


def _collaborations_table(collaborations: list[pb.Collaboration]) -> Table:
    headers = ("COLLABORATION", "NAME", "CREATOR", "STATE", "EXPIRES")
    rows = [
        [
            c.collaboration_id,
            c.display_name,
            c.creator_tenant_id,
            enum_label(pb.Collaboration.State.Name(c.state), "STATE_"),
            time_label(c.expire_time),
        ]
        for c in collaborations
    ]
    return list_table(headers, rows, wrap=(1,))


def _rule(rule: pb.AnalysisRule) -> str:
    functions = [f"{a.column}: {','.join(_function_label(f) for f in a.functions)}" for a in rule.aggregates]
    return (
        f"group by {','.join(rule.group_by_columns) or '-'}; filter {','.join(rule.filter_columns) or '-'};"
        f" {'; '.join(functions) or 'count only'}; min group {rule.min_group_size}"
    )


def _function_label(function: pb.AggregateFunction.ValueType) -> str:
    return enum_label(pb.AggregateFunction.Name(function), "AGGREGATE_FUNCTION_")


def _datasets_table(found: list[pb.Dataset]) -> Table:
    headers = ("DATASET", "OWNER", "STATE", "ROWS", "RULE")
    rows = [
        [
            d.dataset_id,
            d.owner_tenant_id,
            enum_label(pb.Dataset.State.Name(d.state), "STATE_"),
            str(d.row_count),
            _rule(d.rule),
        ]
        for d in found
    ]
    return list_table(headers, rows, wrap=(4,))


def _cell(cell: pb.Cell) -> str:
    kind = cell.WhichOneof("value")
    return "" if kind is None else str(getattr(cell, kind))


def _result_table(response: pb.RunQueryResponse) -> RenderableType:
    result = response.result
    if result.HasField("download"):
        from rich.text import Text

        collaboration_id, result_id = _kept(result.download.ticket)
        kept = (
            f"{result.download.row_count} groups, too many for a response, kept for you until"
            f" {time_label(result.download.expire_time)}; download them with\n"
            f"  jubao cocreation result {collaboration_id} {result_id} --output FILE"
        )
        return Text(kept, no_wrap=True)
    table = list_table(
        [c.upper() for c in result.columns], [[_cell(c) for c in row.cells] for row in result.rows]
    )
    table.caption = (
        f"{len(result.rows)} groups; {result.groups_suppressed} suppressed (fewer than"
        f" {result.min_group_size} people); {result.rows_scanned} rows scanned"
    )
    if result.HasField("noise"):
        table.caption = (
            f"{len(result.rows)} groups (at least {result.min_group_size} people, noised count);"
            f" noised: {result.noise.mechanism}, epsilon {_epsilon(result.noise.epsilon_micro)};"
            f" {_cost(_privacy_cost(response), ran=True)}; {result.rows_scanned} rows scanned"
        )
    return table
