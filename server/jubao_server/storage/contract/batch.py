"""The batch, the only atomic multi-row write, and its outcome."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jubao_server.storage.contract.checks import check_batch
from jubao_server.storage.contract.reads import Row
from jubao_server.storage.contract.tables import PartitionRef
from jubao_server.storage.contract.values import Key, Value
from jubao_server.storage.contract.writes import Condition, Delete, Put


@dataclasses.dataclass(frozen=True)
class Batch:
    """An atomic write to one partition: every write applies or none does. It is checked when built
    (`checks.check_batch`): a malformed batch is a programmer error and never reaches a backend."""

    partition: PartitionRef
    puts: tuple[Put, ...] = ()
    deletes: tuple[Delete, ...] = ()
    static_values: Mapping[str, Value] | None = None
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        check_batch(self)

    @property
    def row_count(self) -> int:
        return len(self.puts) + len(self.deletes) + (1 if self.static_values else 0)

    @property
    def conditional(self) -> bool:
        return bool(self.conditions)


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    """`applied` tells whether the batch was written. When it was not, `current_rows` maps the clustering
    key of each row named by a condition to its current value (None when absent), and `current_static`
    holds the partition's static columns (None when there are none). `resolved_unknown` is True when the
    answer came from resolving a timed-out conditional write. `failed_guards` (of a `write_after` with
    guards) lists the guards whose conditions did not hold, by their index: then nothing was written, and
    `current_rows` and `current_static` are empty, the batch's own conditions having held."""

    applied: bool
    current_rows: Mapping[Key, Row | None] = dataclasses.field(default_factory=dict)
    current_static: Row | None = None
    resolved_unknown: bool = False
    failed_guards: tuple[int, ...] = ()
