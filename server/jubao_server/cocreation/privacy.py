"""Differential privacy of co-creation queries (see ARCHITECTURE.md, "Data co-creation").

A collaboration with differential privacy gives each querying member a budget of epsilon (`model.Privacy`,
in millionths). A query releases 1 + k statistics per group: its count of distinct join keys (which decides
whether the group is kept: the threshold is applied to the noised count) and its k aggregates. Its cost
is split evenly among them (sequential composition); the groups are disjoint, so one statistic over all
groups costs its share once (parallel composition, with the L1 sensitivity over the groups).

Sensitivities derive from the owners' declared contribution bounds: a query reads at most
`rows_per_join_key_max` rows of one join key from each dataset, so one person is at most R joined rows (the
product over the datasets), and adds or removes at most R to COUNT, to COUNT_DISTINCT and to the count of
distinct keys over all groups, and R * max(|lower|, |upper|) to a SUM of a measure clamped to its bounds.
AVG, MIN and MAX have no bounded noise here and are refused. The noise is OpenDP's (`make_laplace` on
int64 vectors: the discrete Laplace mechanism, drawn from OpenDP's own CSPRNG), and each mechanism's own
privacy map is checked against the share it may spend."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Final

import opendp.prelude as dp
from jubao.reasons import FieldViolation, Reason

from jubao_server import limits
from jubao_server.cocreation.model import Dataset, Function, Privacy, Query
from jubao_server.errors import ApiError, ErrorCode, invalid_fields, resource_exhausted
from jubao_server.invariants import ensure

dp.enable_features("contrib")

MECHANISM: Final = "OpenDP discrete Laplace (make_laplace), noised threshold"
_MICRO: Final = 1_000_000
_NOISED: Final = frozenset({Function.COUNT, Function.COUNT_DISTINCT, Function.SUM})
# Distinct (sensitivity, epsilon share) mechanisms kept built.
_MECHANISMS_CACHED_MAX: Final = 256


@dataclasses.dataclass(frozen=True)
class Noise:
    """How a query is noised: its whole cost, the rows of one join key it reads per dataset (in the query's
    order), and the L1 sensitivity of each statistic it releases (the distinct keys, then each aggregate)."""

    epsilon_micro: int
    rows_per_join_key: tuple[int, ...]
    sensitivities: tuple[int, ...]

    @property
    def share_epsilon_micro(self) -> int:
        """The epsilon of each statistic (the cost split evenly, rounded down: never more than paid)."""
        return self.epsilon_micro // len(self.sensitivities)


@dataclasses.dataclass(frozen=True)
class Cost:
    """A query's epsilon and its analyst's budget, in millionths."""

    epsilon_micro: int
    budget_epsilon_micro: int
    remaining_epsilon_micro: int


def noise_of(privacy: Privacy, datasets: Sequence[Dataset], query: Query, epsilon_micro: int) -> Noise:
    """The noise of a query under `privacy` (`epsilon_micro` 0: the collaboration's default), or the error
    that refuses it: an aggregate with no bounded noise, a sum of a measure its owner gave no bounds, an
    epsilon out of range."""
    cost = epsilon_micro or privacy.query_epsilon_micro
    statistics = 1 + len(query.aggregates)
    if not limits.cocreation_query_epsilon_micro_min * statistics <= cost <= privacy.budget_epsilon_micro:
        low = limits.cocreation_query_epsilon_micro_min * statistics
        raise invalid_fields(
            (FieldViolation("epsilon_micro", f"{low} to the budget ({statistics} statistics)"),)
        )
    by_id = {d.dataset_id: d for d in datasets}
    rows = tuple(d.rule.rows_per_join_key_max for d in datasets)
    joined = math.prod(rows)
    sensitivities = [joined]
    refused: list[FieldViolation] = []
    broken: list[FieldViolation] = []
    for index, aggregate in enumerate(query.aggregates):
        if aggregate.function not in _NOISED:
            refused.append(
                FieldViolation(
                    f"query.aggregates[{index}].function",
                    "COUNT, COUNT_DISTINCT or SUM under differential privacy",
                )
            )
            continue
        if aggregate.function is not Function.SUM or aggregate.column is None:
            sensitivities.append(joined)
            continue
        dataset = by_id[aggregate.column.dataset_id]
        bounds = dataset.rule.bounds(aggregate.column.column)
        if bounds is None:
            broken.append(
                FieldViolation(
                    f"{dataset.dataset_id}.rule.measure_bounds",
                    f"aggregates[{index}] (sum): column {aggregate.column.column} of dataset "
                    f"{dataset.dataset_id} (owner {dataset.owner}) has no bounds in its rule's "
                    "measure_bounds, which a sum under differential privacy needs",
                )
            )
            continue
        sensitivities.append(joined * max(1, abs(bounds[0]), abs(bounds[1])))
    if refused:
        raise invalid_fields(tuple(refused))
    if broken:
        raise ApiError(
            ErrorCode.INVALID_ARGUMENT,
            Reason.ANALYSIS_RULE_VIOLATED,
            "; ".join(v.description for v in broken[: limits.error_field_violations_max]),
            field_violations=tuple(broken),
            metadata={"rule": broken[0].field},
        )
    return Noise(cost, rows, tuple(sensitivities))


def cost_of(privacy: Privacy, noise: Noise, spent_epsilon_micro: int) -> Cost:
    """The query's cost against its analyst's budget, or PRIVACY_BUDGET_EXHAUSTED when what is left does
    not pay for it."""
    remaining = privacy.budget_epsilon_micro - spent_epsilon_micro
    if noise.epsilon_micro > remaining:
        raise resource_exhausted(
            Reason.PRIVACY_BUDGET_EXHAUSTED,
            f"the query costs epsilon {noise.epsilon_micro / _MICRO:g}; "
            f"{max(remaining, 0) / _MICRO:g} of {privacy.budget_epsilon_micro / _MICRO:g} is left",
            None,
            epsilon_micro=str(noise.epsilon_micro),
            remaining_epsilon_micro=str(max(remaining, 0)),
        )
    return Cost(noise.epsilon_micro, privacy.budget_epsilon_micro, remaining - noise.epsilon_micro)


def noised(values: Sequence[int], sensitivity: int, share_epsilon_micro: int) -> list[int]:
    """`values` (one statistic over the groups, its L1 sensitivity `sensitivity`) with discrete Laplace
    noise that spends `share_epsilon_micro`."""
    release: list[int] = _mechanism(sensitivity, share_epsilon_micro)(list(values))
    return release


@functools.lru_cache(maxsize=_MECHANISMS_CACHED_MAX)
def _mechanism(sensitivity: int, share_epsilon_micro: int) -> dp.Measurement:
    epsilon = share_epsilon_micro / _MICRO
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    mechanism = dp.m.make_laplace(*space, scale=sensitivity / epsilon)
    spent: float = mechanism.map(sensitivity)  # type: ignore[no-untyped-call]
    ensure(spent <= epsilon * (1 + 1e-9), f"the mechanism spends {spent}, more than its share {epsilon}")
    return mechanism
