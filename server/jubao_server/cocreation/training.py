"""Joint models: a logistic regression trained on the join of members' datasets, inside jubao (the 运费险
case: the platform's features, the insurer's claims), as a long-running operation.

A training request (`ModelSpec`) is checked against the room before any row is read (`plan`): the caller
is an active member with the analyze and receive-results abilities, every dataset is ready, every feature
and the label are among their dataset's `training` columns (a rule can name no join key there, so a join key
is never a feature), and the datasets' row counts leave room for at least the threshold of join keys (the
largest `min_group_size`). The run (`Models.run`, a task of `platform.operations`) reads the columns it uses,
joins them in DuckDB (`query.execute`), refuses a join of fewer distinct keys than the threshold, pools the
levels of a string feature held by fewer keys with its most frequent level (no coefficient rests on fewer
people than a group may), and fits scikit-learn's unpenalized LogisticRegression on a worker thread. The
members receive coefficients and fit metrics as decimal strings, never rows; the run is in the audit log.
Under differential privacy (`private_fit`) the fit is an L2-regularised one whose coefficients are noised
(output perturbation), and only noised counts are released besides.

`linear_predictor` applies a fit to rows: the scoring download (`scoring.py`) uses it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import uuid
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from jubao.reasons import FieldViolation, Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.cocreation.model import (
    MODEL_PLACES,
    Ability,
    AuditEntry,
    Coefficient,
    ColumnRef,
    ColumnType,
    Dataset,
    Fit,
    Model,
    ModelPhase,
    ModelSpec,
    ModelState,
    Room,
    raise_if_any,
    replaced,
)
from jubao_server.cocreation.privacy import TrainingNoise, noised, noised_floats, training_noise_of
from jubao_server.cocreation.query import (
    analyst_violations,
    broken,
    capped_source,
    check_unwithdrawn,
    execute,
    raise_if_broken,
    read_rows,
)
from jubao_server.cocreation.store import CocreationStore, StoredModel
from jubao_server.errors import (
    ApiError,
    already_exists,
    failed_precondition,
    invalid_fields,
    not_found,
)
from jubao_server.platform.operations import Operations

log = structlog.get_logger("jubao.cocreation")

_KEY: Final = "__key"
_LABEL: Final = "__label"
Floats = npt.NDArray[np.float64]
# A private fit's L2 penalty per distinct key (`private_fit`): larger, less noise and more shrinkage.
PRIVATE_L2_PENALTY: Final = 0.01
# The solver's tolerance for a private fit: its sensitivity is that of the exact minimum.
PRIVATE_FIT_TOLERANCE: Final = 1e-10


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """A training request checked against its room: the datasets it reads and the threshold."""

    spec: ModelSpec
    datasets: tuple[Dataset, ...]
    min_group_size: int
    # Differential privacy: how the fit is noised (None: exact).
    noise: TrainingNoise | None = None


def spec_violations(spec: ModelSpec, room: Room) -> list[FieldViolation]:
    """What is wrong with the request's shape: bounds, repeats, columns its datasets do not have, a label
    that is no int64 or is also a feature."""
    violations: list[FieldViolation] = []
    if not 1 <= len(spec.dataset_ids) <= limits.cocreation_query_datasets_max:
        violations.append(FieldViolation("spec.dataset_ids", f"1 to {limits.cocreation_query_datasets_max}"))
    if len(set(spec.dataset_ids)) != len(spec.dataset_ids):
        violations.append(FieldViolation("spec.dataset_ids", "a dataset is named twice"))
    if not 1 <= len(spec.features) <= limits.cocreation_model_features_max:
        violations.append(FieldViolation("spec.features", f"1 to {limits.cocreation_model_features_max}"))
    if len(set(spec.features)) != len(spec.features):
        violations.append(FieldViolation("spec.features", "a feature is named twice"))
    if spec.label in spec.features:
        violations.append(FieldViolation("spec.label", "the label is not also a feature"))
    refs = [(f"spec.features[{i}]", ref) for i, ref in enumerate(spec.features)] + [
        ("spec.label", spec.label)
    ]
    for field, ref in refs:
        if ref.dataset_id not in spec.dataset_ids:
            violations.append(
                FieldViolation(f"{field}.dataset_id", f"{ref.dataset_id} is not in dataset_ids")
            )
            continue
        dataset = room.datasets.get(ref.dataset_id)
        column = dataset.column(ref.column) if dataset is not None else None
        if dataset is not None and column is None:
            violations.append(
                FieldViolation(f"{field}.column", f"dataset {ref.dataset_id} has no {ref.column}")
            )
        elif column is not None and field == "spec.label" and column.type is not ColumnType.INT64:
            violations.append(FieldViolation("spec.label", "an int64 column holding 0 or 1"))
    return violations


def plan(room: Room, caller: str, spec: ModelSpec, epsilon_micro: int = 0) -> TrainingPlan:
    """The request checked against the room and every dataset's rule (and, under differential privacy,
    its noise: `epsilon_micro` 0 is the collaboration's default cost), or the error that refuses it
    (nothing has been read)."""
    raise_if_any(spec_violations(spec, room))
    room.active_member(caller, Ability.ANALYZE)
    room.active_member(caller, Ability.RECEIVE_RESULTS)
    datasets = tuple(room.readable(d) for d in spec.dataset_ids)
    by_id = {d.dataset_id: d for d in datasets}
    violations = analyst_violations(datasets, caller)
    uses = [(f"features[{i}]", ref) for i, ref in enumerate(spec.features)] + [("label", spec.label)]
    for use, ref in uses:
        dataset = by_id[ref.dataset_id]
        if ref.column not in dataset.rule.training:
            violations.append(broken(dataset, "training_columns", ref.column, use))
    raise_if_broken(violations)
    min_group_size = max(d.rule.min_group_size for d in datasets)
    fewest = min(d.row_count for d in datasets)
    if fewest < min_group_size:
        raise too_few_rows(fewest, min_group_size)
    if sum(d.row_count for d in datasets) > limits.cocreation_model_rows_max:
        raise failed_precondition(
            Reason.LIMIT_EXCEEDED, f"a model reads at most {limits.cocreation_model_rows_max} rows"
        )
    privacy = room.collaboration.privacy
    if privacy is None:
        if epsilon_micro:
            raise invalid_fields(
                (FieldViolation("epsilon_micro", "0: the collaboration has no differential privacy"),)
            )
        return TrainingPlan(spec, datasets, min_group_size)
    numeric = [by_id[f.dataset_id].column(f.column) for f in spec.features]
    flags = [column is not None and column.type is ColumnType.INT64 for column in numeric]
    noise = training_noise_of(privacy, datasets, spec, flags, epsilon_micro)
    return TrainingPlan(spec, datasets, min_group_size, noise)


def too_few_rows(keys: int, min_group_size: int) -> ApiError:
    return failed_precondition(
        Reason.TOO_FEW_ROWS,
        f"{keys} join keys; at least {min_group_size} (the largest min_group_size of the datasets)",
        min_group_size=str(min_group_size),
    )


def model_id_of(tenant_id: str, request_id: str) -> str:
    """A model's id: from the tenant and the request id, so a retry finds the model its first attempt
    stored."""
    if not request_id:
        return f"m-{uuid.uuid4().hex[:24]}"
    digest = hashlib.sha256(f"{tenant_id}\n{request_id}".encode()).hexdigest()
    return f"m-{digest[:24]}"


def model_not_found(model_id: str) -> ApiError:
    return not_found(Reason.MODEL_NOT_FOUND, f"no model {model_id} in this collaboration", model_id=model_id)


class Superseded(Exception):
    """Another server took the model over (this run's lease lapsed): the run stops and writes nothing."""


class _Lease:
    """A run's hold on its model: the record it last wrote, on which each of its writes is conditioned,
    and each write renews the lease."""

    def __init__(self, store: CocreationStore, clock: Clock, lease_ms: int, stored: StoredModel) -> None:
        self._store = store
        self._clock = clock
        self._lease_ms = lease_ms
        self._stored = stored
        self._writing = asyncio.Lock()

    @property
    def model(self) -> Model:
        return self._stored.model

    def changed(self, **changes: object) -> Model:
        """The model with `changes`, its update time now and its lease renewed from now."""
        now_ms = self._clock.wall_ms()
        return replaced(self.model, update_time_ms=now_ms, lease_until_ms=now_ms + self._lease_ms, **changes)

    async def write(self, model: Model) -> Model:
        """Write `model` over the record this run last wrote, else Superseded."""
        async with self._writing:
            return await self._write(model)

    async def _write(self, model: Model) -> Model:
        written = await self._store.replace_model(self._stored, model)
        if written is None:
            raise Superseded(model.model_id)
        self._stored = written
        return model

    async def renew_forever(self) -> None:
        """Renew the lease a third of the way through it while the model runs; stop once it is done or
        superseded."""
        with contextlib.suppress(Superseded):
            while True:
                await self._clock.sleep(self._lease_ms / 3000)
                async with self._writing:
                    if self.model.state is not ModelState.RUNNING:
                        return
                    await self._write(self.changed())


class Models:
    """Starts, runs, reads and resumes models; each training runs as a task of this process, holding a
    lease on its model (`_Lease`) that it renews. A model left RUNNING by a server that stopped (its
    lease lapsed) is resumed by the next call that reads it, in whatever server: its run starts again
    from its stored request, checked again against the room (else the model fails with the error), at
    most `cocreation_model_runs_max` runs (then TRAINING_INTERRUPTED). Under differential privacy it was
    paid for once, when it started, and a run that was cut short released nothing."""

    def __init__(self, store: CocreationStore, clock: Clock, threads: int, lease_ms: int) -> None:
        self._store = store
        self._clock = clock
        self._threads = threads
        self._lease_ms = lease_ms
        self._runs = Operations("training")

    async def stop(self) -> None:
        await self._runs.stop()

    async def start(self, room: Room, caller: str, model_id: str, checked: TrainingPlan) -> Model:
        """Start training the request checked by `plan` (paid for, under differential privacy), or answer
        the model a retry of the same request started (resuming its run if it was cut short)."""
        now_ms = self._clock.wall_ms()
        spec = checked.spec
        fresh = Model(
            collaboration_id=room.collaboration.collaboration_id,
            model_id=model_id,
            trainer=caller,
            spec=spec,
            state=ModelState.RUNNING,
            phase=ModelPhase.READING,
            rows_read=0,
            create_time_ms=now_ms,
            update_time_ms=now_ms,
            epsilon_micro=checked.noise.epsilon_micro if checked.noise is not None else 0,
            lease_until_ms=now_ms + self._lease_ms,
            runs=1,
        )
        stored, created = await self._store.create_model(fresh)
        model = stored.model
        if (model.trainer, model.spec, model.epsilon_micro) != (caller, spec, fresh.epsilon_micro):
            raise already_exists(
                Reason.REQUEST_ID_REUSED, "the request id started another model", model_id=model.model_id
            )
        if not created:
            return await self._resumed(room, stored)
        self._launch(stored, checked)
        return model

    async def get(self, room: Room, model_id: str) -> Model:
        """A model of the room (resumed first if its server stopped)."""
        stored = await self._store.model_record(room.collaboration.collaboration_id, model_id)
        if stored is None:
            raise model_not_found(model_id)
        return await self._resumed(room, stored)

    async def page(self, room: Room, after: str | None, size: int) -> tuple[list[Model], str | None]:
        """The room's models by id after `after` (each resumed first if its server stopped), and where the
        next page starts."""
        stored, next_after = await self._store.models_page(room.collaboration.collaboration_id, after, size)
        return [await self._resumed(room, model) for model in stored], next_after

    def _launch(self, stored: StoredModel, checked: TrainingPlan) -> None:
        model = stored.model
        self._runs.launch((model.collaboration_id, model.model_id), lambda: self.run(stored, checked))

    async def _resumed(self, room: Room, stored: StoredModel) -> Model:
        """The model; if it is RUNNING, its lease has lapsed and no run of this process holds it, taken
        over first: run again from its request, or failed (the request no longer passes its checks, or
        the model has had all its runs). Of servers taking it over at once, one wins the write."""
        model = stored.model
        now_ms = self._clock.wall_ms()
        key = (model.collaboration_id, model.model_id)
        if model.state is not ModelState.RUNNING or model.lease_until_ms > now_ms or self._runs.running(key):
            return model
        checked: TrainingPlan | None = None
        try:
            if model.runs >= limits.cocreation_model_runs_max:
                raise failed_precondition(
                    Reason.TRAINING_INTERRUPTED,
                    f"its training was cut short {model.runs} times (the servers running it stopped)",
                )
            trainer = room.open_to(model.trainer, now_ms)
            checked = plan(trainer, model.trainer, model.spec, model.epsilon_micro)
            taken = replaced(
                model,
                phase=ModelPhase.READING,
                rows_read=0,
                update_time_ms=now_ms,
                lease_until_ms=now_ms + self._lease_ms,
                runs=model.runs + 1,
            )
        except ApiError as error:
            taken = _failed(replaced(model, update_time_ms=now_ms), error)
        written = await self._store.replace_model(stored, taken)
        if written is None:
            current = await self._store.model_record(model.collaboration_id, model.model_id, serial=True)
            return current.model if current is not None else model
        if checked is not None:
            log.info("training resumed", model_id=model.model_id, run=taken.runs)
            self._launch(written, checked)
        return taken

    async def run(self, stored: StoredModel, checked: TrainingPlan) -> Model | None:
        """Read, join, fit; the model SUCCEEDED with its fit, or FAILED with the error that stopped it.
        Either way, once rows were read, the run is in the audit log. None if another server took the
        model over meanwhile (this run's lease lapsed): it writes nothing more."""
        lease = _Lease(self._store, self._clock, self._lease_ms, stored)
        renewal = asyncio.get_running_loop().create_task(lease.renew_forever())
        try:
            return await self._run(lease, checked)
        except Superseded:
            log.warning("training taken over by another server", model_id=stored.model.model_id)
            return None
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _run(self, lease: _Lease, checked: TrainingPlan) -> Model:
        tables: list[pa.Table] = []
        try:
            for dataset in checked.datasets:
                tables.append(await read_rows(self._store, dataset, _used(checked.spec, dataset)))
                await lease.write(lease.changed(rows_read=sum(t.num_rows for t in tables)))
            await check_unwithdrawn(self._store, checked.datasets)
            await lease.write(lease.changed(phase=ModelPhase.FITTING))
            sql = join_sql(checked)
            joined = await asyncio.to_thread(execute, tables, sql, [], self._threads)
            if checked.noise is None:
                found = await asyncio.to_thread(fit, joined, checked.spec, checked.min_group_size)
            else:
                found = await asyncio.to_thread(
                    private_fit, joined, checked.spec, checked.min_group_size, checked.noise
                )
            done = lease.changed(state=ModelState.SUCCEEDED, phase=ModelPhase.DONE, fit=found)
        except ApiError as error:
            done = _failed(lease.changed(), error)
        if tables:
            await self._store.audit(done.collaboration_id, _audit_entry(done, checked, tables))
        return await lease.write(done)


def _failed(model: Model, error: ApiError) -> Model:
    return replaced(
        model, state=ModelState.FAILED, error_reason=error.reason.value, error_message=error.message
    )


def _audit_entry(model: Model, checked: TrainingPlan, tables: Sequence[pa.Table]) -> AuditEntry:
    return AuditEntry(
        audit_id=uuid.uuid4().hex,
        time_ms=model.update_time_ms,
        analyst=model.trainer,
        datasets=tuple(d.dataset_id for d in checked.datasets),
        owners=tuple(d.owner for d in checked.datasets),
        query=None,
        rows_scanned=sum(t.num_rows for t in tables),
        groups_returned=0,
        groups_suppressed=model.fit.levels_pooled if model.fit is not None else 0,
        epsilon_micro=model.epsilon_micro,
        model_id=model.model_id,
        model_spec=model.spec,
    )


def _used(spec: ModelSpec, dataset: Dataset) -> list[str]:
    """The columns of `dataset` a training reads: its join key, then its features and label."""
    named = [ref.column for ref in (*spec.features, spec.label) if ref.dataset_id == dataset.dataset_id]
    return list(dict.fromkeys([dataset.join_key, *named]))


def join_sql(checked: TrainingPlan) -> str:
    """The SQL of the joined rows over the tables `t0`, `t1`, ...: the key, the features `f0`, `f1`, ...
    and the label."""
    alias = {d.dataset_id: f"t{i}" for i, d in enumerate(checked.datasets)}
    key = f't0."{checked.datasets[0].join_key}"'
    # Under differential privacy each dataset gives at most its rule's rows of one join key.
    sources = [
        capped_source(d, i, d.rule.rows_per_join_key_max if checked.noise is not None else None)
        for i, d in enumerate(checked.datasets)
    ]
    source = sources[0]
    for dataset, joined in zip(checked.datasets[1:], sources[1:], strict=True):
        name = alias[dataset.dataset_id]
        source += f' JOIN {joined} ON {name}."{dataset.join_key}" = {key}'

    def ref(column: ColumnRef) -> str:
        return f'{alias[column.dataset_id]}."{column.column}"'

    selected = [f"{key} AS {_KEY}"]
    selected += [f"{ref(feature)} AS f{i}" for i, feature in enumerate(checked.spec.features)]
    selected.append(f"{ref(checked.spec.label)} AS {_LABEL}")
    return f"SELECT {', '.join(selected)} FROM {source}"


@dataclasses.dataclass(frozen=True)
class _Design:
    """The design matrix of a model's rows: a column per numeric feature and per kept level of a
    categorical one, and the coefficients' places in it."""

    matrix: Floats
    terms: list[Coefficient]
    references: list[Coefficient]
    levels_pooled: int


def fit(joined: pa.Table, spec: ModelSpec, min_group_size: int) -> Fit:
    """The logistic regression of the label on the features over the joined rows (CPU-bound: a worker
    thread runs it)."""
    # scikit-learn is loaded by the first training, not with the server: start-up stays quick.
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.metrics import log_loss, roc_auc_score  # noqa: PLC0415

    keys = _keys(joined)
    if keys < min_group_size:
        raise too_few_rows(keys, min_group_size)
    label, positives = _labels(joined)
    design = _design(joined, spec, min_group_size)
    # C = inf: no penalty, the maximum-likelihood fit (the coefficients mean what the data says).
    model = LogisticRegression(
        C=np.inf, solver="newton-cholesky", max_iter=limits.cocreation_model_iterations_max
    )
    model.fit(design.matrix, label)
    probability: Floats = model.predict_proba(design.matrix)[:, 1]
    loss = float(log_loss(label, probability, labels=[0, 1]))
    rate = positives / len(label)
    null_loss = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    intercept = Coefficient(None, None, decimal(float(model.intercept_[0])))
    estimates = [
        replaced(term, estimate=decimal(float(value)))
        for term, value in zip(design.terms, model.coef_[0], strict=True)
    ]
    return Fit(
        rows=len(label),
        positives=positives,
        coefficients=(intercept, *estimates),
        auc=decimal(float(roc_auc_score(label, probability))),
        log_loss=decimal(loss),
        deviance=decimal(2 * len(label) * loss),
        null_deviance=decimal(float(2 * len(label) * null_loss)),
        levels_pooled=design.levels_pooled,
        min_group_size=min_group_size,
        reference_levels=tuple(design.references),
    )


def _keys(joined: pa.Table) -> int:
    """The joined rows' distinct join keys."""
    return int(pc.count_distinct(joined.column(_KEY)).as_py()) if joined.num_rows else 0


def _labels(joined: pa.Table) -> tuple[npt.NDArray[np.int64], int]:
    """The joined rows' labels and how many are 1, or INVALID_ARGUMENT if one is not 0 or 1, or all are
    alike (nothing to fit)."""
    label = joined.column(_LABEL).to_numpy()
    positives = int(np.count_nonzero(label == 1))
    if positives + int(np.count_nonzero(label == 0)) != len(label):
        raise invalid_fields((FieldViolation("spec.label", "a column holding 0 or 1 only"),))
    if positives in (0, len(label)):
        raise invalid_fields((FieldViolation("spec.label", "both 0 and 1 among the joined rows"),))
    return label, positives


def _level_keys(values: pa.ChunkedArray, keys: pa.ChunkedArray) -> tuple[list[str], list[int]]:
    """The levels of a string feature and the distinct join keys holding each, most held first."""
    counts = (
        pa.table({"level": values, "key": keys})
        .group_by("level")
        .aggregate([("key", "count_distinct")])
        .sort_by([("key_count_distinct", "descending"), ("level", "ascending")])
    )
    return counts.column("level").to_pylist(), counts.column("key_count_distinct").to_pylist()


def _too_many_levels(index: int, levels: int) -> ApiError:
    return invalid_fields(
        (
            FieldViolation(
                f"spec.features[{index}]", f"{levels} levels; at most {limits.cocreation_model_levels_max}"
            ),
        )
    )


def private_fit(joined: pa.Table, spec: ModelSpec, min_group_size: int, noise: TrainingNoise) -> Fit:
    """The logistic regression of the label on the features under differential privacy: output
    perturbation of L2-regularised logistic regression (Chaudhuri, Monteleoni and Sarwate 2011, Algorithm
    1; see ARCHITECTURE.md, "Differential privacy" of co-creation). Every row's vector (an intercept
    column, numeric features clamped to their owners' bounds and divided by their magnitude, a one-hot
    column per kept level: `private_design`) is scaled by 1/sqrt(1 + features), so its L2 norm is at
    most 1; the objective
    is the sum of the rows' log-losses (1-Lipschitz) plus (Λ/2)·|w|², Λ = `PRIVATE_L2_PENALTY` times the
    noised count of distinct keys, which is Λ-strongly convex: one person's at most R rows move its
    minimum by at most 2R/Λ in L2 norm, sqrt(d) times that in L1 norm, and the d coefficients get
    Laplace noise of that L1 sensitivity. Released besides: the noised keys (which the threshold is
    applied to), the noised positives and, per categorical feature, noised keys per level (which decide
    the levels kept and the reference); no fit metric, which would need noise of its own."""
    share = noise.count_share_epsilon_micro
    people = noise.rows_per_join_key
    (keys,) = noised([_keys(joined)], 1, share)
    if keys < min_group_size:
        raise too_few_rows(keys, min_group_size)
    label, positives = _labels(joined)
    (noised_positives,) = noised([positives], people, share)
    levels_kept: list[tuple[str, ...]] = []
    references: list[Coefficient] = []
    for index, (feature, bounds) in enumerate(zip(spec.features, noise.bounds, strict=True)):
        if bounds is None:
            levels, held = _level_keys(joined.column(f"f{index}"), joined.column(_KEY))
            ranked = sorted(
                zip(noised(held, people, share), levels, strict=True), key=lambda c: (-c[0], c[1])
            )
            kept = tuple(level for count, level in ranked if count >= min_group_size)
            if len(kept) > limits.cocreation_model_levels_max + 1:
                raise _too_many_levels(index, len(kept) - 1)
            levels_kept.append(kept)
            references += [Coefficient(feature, kept[0], "")] if kept else []
    matrix, terms = private_design(joined, spec, noise, tuple(levels_kept))
    penalty = PRIVATE_L2_PENALTY * keys
    exact = regularised_minimum(matrix, label, penalty)
    l1_sensitivity = float(np.sqrt(matrix.shape[1]) * 2 * people / penalty)
    released = noised_floats(exact.tolist(), l1_sensitivity, noise.coefficients_epsilon_micro)
    return Fit(
        rows=keys,
        positives=min(max(noised_positives, 0), keys),
        coefficients=in_units(spec, terms, released),
        auc="",
        log_loss="",
        deviance="",
        null_deviance="",
        levels_pooled=0,
        min_group_size=min_group_size,
        reference_levels=tuple(references),
    )


def _row_scale(spec: ModelSpec) -> float:
    """What a private fit's row vectors are multiplied by: each feature adds at most 1 to the squared norm
    (a numeric one divided by its bounds' magnitude, a one-hot at most one 1), the intercept column 1."""
    return float(1 / np.sqrt(1 + len(spec.features)))


@dataclasses.dataclass(frozen=True)
class _Column:
    """A column of a private fit's design: its term, and for a numeric feature the centre and half-width
    of its owner's bounds (the column is (x - centre) / half-width, within [-1, 1])."""

    term: Coefficient
    centre: float = 0.0
    half_width: float = 1.0


def private_design(
    joined: pa.Table, spec: ModelSpec, noise: TrainingNoise, levels_kept: tuple[tuple[str, ...], ...]
) -> tuple[Floats, list[_Column]]:
    """A private fit's rows as vectors of L2 norm at most 1 (the intercept column; numeric features
    clamped to their bounds and mapped onto [-1, 1] by the bounds' centre and half-width, public numbers,
    so the intercept need not carry their mean; a one-hot column per kept level but the reference, the
    first of `levels_kept` of each categorical feature in order), all times `_row_scale`; and the
    columns."""
    columns: list[Floats] = [np.ones(joined.num_rows)]
    terms = [_Column(Coefficient(None, None, ""))]
    categorical = iter(levels_kept)
    for index, (feature, bounds) in enumerate(zip(spec.features, noise.bounds, strict=True)):
        values = joined.column(f"f{index}")
        if bounds is not None:
            low, high = bounds
            column = _Column(Coefficient(feature, None, ""), (low + high) / 2, max((high - low) / 2, 0.5))
            clamped = np.clip(values.to_numpy().astype(np.float64), low, high)
            columns.append((clamped - column.centre) / column.half_width)
            terms.append(column)
            continue
        for level in next(categorical)[1:]:
            columns.append(pc.equal(values, level).to_numpy(zero_copy_only=False).astype(np.float64))
            terms.append(_Column(Coefficient(feature, level, "")))
    return _row_scale(spec) * np.column_stack(columns), terms


def in_units(
    spec: ModelSpec, columns: Sequence[_Column], weights: Sequence[float]
) -> tuple[Coefficient, ...]:
    """A private fit's weights (over `private_design`'s columns) as coefficients in the features' own
    units, whose linear predictor (`linear_predictor`) is the design's: a numeric column is
    (x - centre) / half-width, times the row scale."""
    per_unit = [w * _row_scale(spec) / c.half_width for c, w in zip(columns, weights, strict=True)]
    intercept = per_unit[0] - sum(
        slope * c.centre for c, slope in zip(columns[1:], per_unit[1:], strict=True)
    )
    estimates = [intercept, *per_unit[1:]]
    return tuple(replaced(c.term, estimate=decimal(e)) for c, e in zip(columns, estimates, strict=True))


def regularised_minimum(matrix: Floats, label: npt.NDArray[np.int64], penalty: float) -> Floats:
    """The exact minimum of the rows' summed log-losses plus (`penalty`/2)·|w|² (scikit-learn's
    LogisticRegression with C = 1/penalty and no separate intercept: the matrix has its column)."""
    # scikit-learn is loaded by the first training, not with the server: start-up stays quick.
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    model = LogisticRegression(
        C=1 / penalty,
        fit_intercept=False,
        solver="newton-cholesky",
        tol=PRIVATE_FIT_TOLERANCE,
        max_iter=limits.cocreation_model_iterations_max,
    )
    model.fit(matrix, label)
    found: Floats = model.coef_[0]
    return found


def _design(joined: pa.Table, spec: ModelSpec, min_group_size: int) -> _Design:
    columns: list[Floats] = []
    terms: list[Coefficient] = []
    references: list[Coefficient] = []
    pooled = 0
    for index, feature in enumerate(spec.features):
        values = joined.column(f"f{index}")
        if not pa.types.is_string(values.type):
            columns.append(values.to_numpy().astype(np.float64))
            terms.append(Coefficient(feature, None, ""))
            continue
        levels, held = _level_keys(values, joined.column(_KEY))
        kept = [level for level, keys in zip(levels[1:], held[1:], strict=True) if keys >= min_group_size]
        pooled += len(levels) - 1 - len(kept)
        if len(kept) > limits.cocreation_model_levels_max:
            raise _too_many_levels(index, len(kept))
        references.append(Coefficient(feature, levels[0], ""))
        for level in kept:
            columns.append(pc.equal(values, level).to_numpy(zero_copy_only=False).astype(np.float64))
            terms.append(Coefficient(feature, level, ""))
    return _Design(np.column_stack(columns), terms, references, pooled)


def linear_predictor(found: Fit, features: dict[ColumnRef, pa.ChunkedArray], rows: int) -> Floats:
    """The log-odds of a fit over rows whose features are `features` (a level with no coefficient of its
    own counts as its feature's reference)."""
    total: Floats = np.full(rows, float(Decimal(found.coefficients[0].estimate)))
    for term in found.coefficients[1:]:
        if term.feature is None:
            continue
        values = features[term.feature]
        estimate = float(Decimal(term.estimate))
        if term.level is None:
            total += estimate * values.to_numpy().astype(np.float64)
        else:
            total += estimate * pc.equal(values, term.level).to_numpy(zero_copy_only=False)
    return total


def decimal(value: float) -> str:
    """A float as a decimal string of `MODEL_PLACES` places (half to even)."""
    if not np.isfinite(value):
        raise failed_precondition(Reason.MODEL_NOT_CONVERGED, "the model did not converge")
    quantum = Decimal(1).scaleb(-MODEL_PLACES)
    return str(Decimal(value).quantize(quantum, ROUND_HALF_EVEN) + 0)
