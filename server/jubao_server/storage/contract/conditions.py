"""Conditions evaluated on a partition's current state, with CQL semantics. A backend that checks
conditions itself (SQLite inside its transaction, memory) and the unknown-outcome read-back share these."""

from __future__ import annotations

from collections.abc import Mapping

from jubao_server.storage.contract.batch import Batch, BatchOutcome
from jubao_server.storage.contract.reads import Row
from jubao_server.storage.contract.values import Key
from jubao_server.storage.contract.writes import RowAbsent, RowMatches, StaticMatches


def conditions_hold(batch: Batch, rows: Mapping[Key, Row | None], static: Row | None) -> bool:
    """Whether the batch's conditions hold on the given current state."""
    for condition in batch.conditions:
        if isinstance(condition, StaticMatches):
            current = static.values if static is not None else {}
            if any(current.get(c) != v for c, v in condition.expected.items()):
                return False
            continue
        row = rows.get(condition.clustering)
        if isinstance(condition, RowAbsent):
            if row is not None:
                return False
        elif not row_matches(condition, row):
            return False
    return True


def row_matches(condition: RowMatches, row: Row | None) -> bool:
    """CQL semantics: `IF EXISTS` needs the row; compared cells of a missing row read as null."""
    if not condition.expected:
        return row is not None
    current = row.values if row is not None else {}
    return all(current.get(c) == v for c, v in condition.expected.items())


def conditioned_rows(batch: Batch) -> tuple[Key, ...]:
    """Clustering keys of the rows the batch's conditions name, in condition order."""
    return tuple(c.clustering for c in batch.conditions if not isinstance(c, StaticMatches))


def touched_rows(batch: Batch) -> tuple[Key, ...]:
    """Clustering keys of every row the batch writes or names in a condition."""
    keys: dict[Key, None] = {}
    for put in batch.puts:
        keys[put.clustering] = None
    for delete in batch.deletes:
        keys[delete.clustering] = None
    for key in conditioned_rows(batch):
        keys[key] = None
    return tuple(keys)


def failed_outcome(
    batch: Batch, rows: Mapping[Key, Row | None], static: Row | None, resolved_unknown: bool = False
) -> BatchOutcome:
    """The outcome of a batch whose conditions did not hold: the named rows and the static columns."""
    named = {key: rows.get(key) for key in conditioned_rows(batch)}
    return BatchOutcome(
        applied=False, current_rows=named, current_static=static, resolved_unknown=resolved_unknown
    )
