"""The parts of a batch: row writes (`Put`, `Delete`) and the conditions a conditional batch carries."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jubao_server.storage.contract.values import Key, Value


@dataclasses.dataclass(frozen=True)
class Put:
    """Insert or overwrite one clustered row: the listed regular columns are written, the others keep
    their values. `ttl_s` makes the written cells expire; a row whose cells all expired is gone."""

    clustering: Key
    values: Mapping[str, Value]
    ttl_s: int | None = None


@dataclasses.dataclass(frozen=True)
class Delete:
    clustering: Key


@dataclasses.dataclass(frozen=True)
class RowAbsent:
    """The row must not exist (CQL `IF NOT EXISTS`). It must be the target of a `Put` in the batch."""

    clustering: Key


@dataclasses.dataclass(frozen=True)
class RowMatches:
    """Each listed column must equal the given value (None: the cell is null). As in CQL, the cells of a
    missing row read as null, so a comparison only with None also holds for a missing row, and a
    comparison with any value needs the row. An empty `expected` means "the row exists" (CQL
    `IF EXISTS`). It must be the target of a `Put` or a `Delete` in the batch."""

    clustering: Key
    expected: Mapping[str, Value]


@dataclasses.dataclass(frozen=True)
class StaticMatches:
    """The partition's static columns must equal the given values (None: null or no partition yet).
    The batch must carry `static_values`."""

    expected: Mapping[str, Value]


Condition = RowAbsent | RowMatches | StaticMatches
