"""A trained model's scores over the rows of one of the caller's own datasets (`ScoreDatasetRows`, an export
dataset of the bulk plane, in the Arrow Flight process): the 运费险 insurer scores its policies with the
model trained on the platform's features and its claims.

Checked before any row is read: the caller is an active member with the receive-results ability and owns the
dataset, which is ready; the model exists and has been trained; every dataset its features come from is
ready and still lists them among its training columns (and names the caller among its analysts, if it names
any); the datasets' row counts leave room for the threshold (the largest `min_group_size`). Then the caller's
join keys are joined with the features by token, a join of fewer keys than the threshold is refused, and the
scores stream to the caller alone. The scoring is in the audit log, readable by every owner it read."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import Message
from jubao.bulk import schemas
from jubao.cocreation.v1 import cocreation_pb2 as pb
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.bulk.datasets import parse
from jubao_server.clock import Clock
from jubao_server.cocreation.model import (
    Ability,
    AuditEntry,
    Dataset,
    Fit,
    Model,
    ModelState,
    Room,
    id_violations,
    raise_if_any,
)
from jubao_server.cocreation.query import (
    analyst_violations,
    broken,
    check_unwithdrawn,
    raise_if_broken,
    read_rows,
)
from jubao_server.cocreation.store import CocreationStore
from jubao_server.cocreation.training import linear_predictor, model_not_found, too_few_rows
from jubao_server.errors import failed_precondition
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.model import Product

SCORE_DATASET_ROWS: Final = pb.ScoreDatasetRows.DESCRIPTOR.full_name
_ROW: Final = "__row"
_PPM: Final = 1_000_000


@dataclasses.dataclass(frozen=True)
class _Scoring:
    """A scoring checked against its room: the caller's dataset, the model's fit and the datasets its
    features come from."""

    dataset: Dataset
    model: Model
    fit: Fit
    sources: tuple[Dataset, ...]
    min_group_size: int


@dataclasses.dataclass(frozen=True)
class ScoresExport:
    name: str = SCORE_DATASET_ROWS
    product: Product = Product.COCREATION
    schema: pa.Schema = schemas.SCORES

    def check(self, command: bytes) -> Message:
        request: pb.ScoreDatasetRows = parse(pb.ScoreDatasetRows, command, "ticket")  # type: ignore[assignment]
        raise_if_any(
            id_violations("collaboration_id", request.collaboration_id)
            + id_violations("model_id", request.model_id)
            + id_violations("dataset_id", request.dataset_id)
        )
        return request

    async def read(
        self, backend: StorageBackend, clock: Clock, tenant_id: str, command: Message
    ) -> AsyncIterator[pa.RecordBatch]:
        request: pb.ScoreDatasetRows = command  # type: ignore[assignment]
        store = CocreationStore(backend, clock)
        room = await store.open_room(request.collaboration_id, tenant_id)
        stored = await store.model_record(request.collaboration_id, request.model_id)
        model = stored.model if stored is not None else None
        checked = _checked(room, tenant_id, model, request)
        scores = await _scores(store, checked)
        await store.audit(room.collaboration.collaboration_id, _audit_entry(checked, clock, scores))
        for batch in scores.to_batches(max_chunksize=limits.bulk_export_batch_rows_max):
            yield batch


def _checked(room: Room, caller: str, model: Model | None, request: pb.ScoreDatasetRows) -> _Scoring:
    room.active_member(caller, Ability.RECEIVE_RESULTS)
    room.owned_dataset(caller, request.dataset_id)
    dataset = room.readable(request.dataset_id)
    if model is None:
        raise model_not_found(request.model_id)
    if model.state is not ModelState.SUCCEEDED or model.fit is None:
        raise failed_precondition(
            Reason.MODEL_NOT_TRAINED,
            f"model {model.model_id} is {model.state.value}",
            model_id=model.model_id,
        )
    ids = dict.fromkeys(f.dataset_id for f in model.spec.features)
    sources = tuple(room.readable(dataset_id) for dataset_id in ids)
    by_id = {d.dataset_id: d for d in sources}
    violations = analyst_violations(sources, caller)
    for index, feature in enumerate(model.spec.features):
        source = by_id[feature.dataset_id]
        if feature.column not in source.rule.training:
            violations.append(broken(source, "training_columns", feature.column, f"features[{index}]"))
    raise_if_broken(violations)
    min_group_size = max(d.rule.min_group_size for d in (dataset, *sources))
    fewest = min(d.row_count for d in (dataset, *sources))
    if fewest < min_group_size:
        raise too_few_rows(fewest, min_group_size)
    return _Scoring(dataset, model, model.fit, sources, min_group_size)


async def _scores(store: CocreationStore, checked: _Scoring) -> pa.Table:
    """The scores of the caller's rows that have features, by row."""
    key = checked.dataset.join_key
    own = await read_rows(store, checked.dataset, [key])
    rows = pa.table({_ROW: pa.array(np.arange(own.num_rows)), key: own.column(key)})
    features = checked.model.spec.features
    for source in checked.sources:
        names = [f.column for f in features if f.dataset_id == source.dataset_id]
        read = await read_rows(store, source, list(dict.fromkeys([source.join_key, *names])))
        renamed = read.rename_columns(
            [key if c == source.join_key else f"{source.dataset_id}.{c}" for c in read.column_names]
        )
        rows = rows.join(renamed, key, join_type="inner")
    await check_unwithdrawn(store, (checked.dataset, *checked.sources))
    keys = pc.count_distinct(rows.column(key)).as_py() if rows.num_rows else 0
    if keys < checked.min_group_size:
        raise too_few_rows(keys, checked.min_group_size)
    rows = rows.sort_by(_ROW)
    values = {f: rows.column(f.label) for f in features}
    log_odds = linear_predictor(checked.fit, values, rows.num_rows)
    score_ppm = np.rint(_PPM / (1.0 + np.exp(-log_odds))).astype(np.int64)
    return pa.Table.from_arrays(
        [rows.column(_ROW), rows.column(key), pa.array(score_ppm)], schema=schemas.SCORES
    )


def _audit_entry(checked: _Scoring, clock: Clock, scores: pa.Table) -> AuditEntry:
    read = (checked.dataset, *(d for d in checked.sources if d.dataset_id != checked.dataset.dataset_id))
    return AuditEntry(
        audit_id=uuid.uuid4().hex,
        time_ms=clock.wall_ms(),
        analyst=checked.dataset.owner,
        datasets=tuple(d.dataset_id for d in read),
        owners=tuple(d.owner for d in read),
        query=None,
        rows_scanned=sum(d.row_count for d in read),
        groups_returned=scores.num_rows,
        groups_suppressed=0,
        model_id=checked.model.model_id,
        scored=True,
    )
