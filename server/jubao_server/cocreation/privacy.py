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
privacy map is checked against the share it may spend. A training is noised too (`TrainingNoise`,
`noised_floats`: its coefficients, by output perturbation in `training.private_fit`)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Final

from jubao.reasons import FieldViolation, Reason
from opendp.domains import atom_domain, vector_domain
from opendp.measurements import make_laplace
from opendp.metrics import l1_distance
from opendp.mod import Measurement, enable_features

from jubao_server import limits
from jubao_server.cocreation.model import Dataset, Function, ModelSpec, Privacy, Query
from jubao_server.errors import ApiError, ErrorCode, invalid_fields, resource_exhausted
from jubao_server.invariants import ensure

enable_features("contrib")

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
    cost = _checked_cost(privacy, epsilon_micro, 1 + len(query.aggregates))
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
            broken.append(_unbounded(dataset, aggregate.column.column, f"aggregates[{index}] (sum)", "a sum"))
            continue
        sensitivities.append(joined * _magnitude(bounds))
    if refused:
        raise invalid_fields(tuple(refused))
    _raise_if_unbounded(broken)
    return Noise(cost, rows, tuple(sensitivities))


def _checked_cost(privacy: Privacy, epsilon_micro: int, statistics: int) -> int:
    """The epsilon a release of `statistics` statistics spends (`epsilon_micro` 0: the collaboration's
    default), or INVALID_ARGUMENT when it cannot give each statistic the least share or exceeds the
    budget."""
    cost = epsilon_micro or privacy.query_epsilon_micro
    low = limits.cocreation_query_epsilon_micro_min * statistics
    if not low <= cost <= privacy.budget_epsilon_micro:
        raise invalid_fields(
            (FieldViolation("epsilon_micro", f"{low} to the budget ({statistics} statistics)"),)
        )
    return cost


def _magnitude(bounds: tuple[int, int]) -> int:
    return max(1, abs(bounds[0]), abs(bounds[1]))


def _unbounded(dataset: Dataset, column: str, use: str, what: str) -> FieldViolation:
    return FieldViolation(
        f"{dataset.dataset_id}.rule.measure_bounds",
        f"{use}: column {column} of dataset {dataset.dataset_id} (owner {dataset.owner}) has no bounds "
        f"in its rule's measure_bounds, which {what} under differential privacy needs",
    )


def _raise_if_unbounded(broken: list[FieldViolation]) -> None:
    if broken:
        raise ApiError(
            ErrorCode.INVALID_ARGUMENT,
            Reason.ANALYSIS_RULE_VIOLATED,
            "; ".join(v.description for v in broken[: limits.error_field_violations_max]),
            field_violations=tuple(broken),
            metadata={"rule": broken[0].field},
        )


@dataclasses.dataclass(frozen=True)
class TrainingNoise:
    """How a training under differential privacy is noised (output perturbation, `training.private_fit`):
    its whole cost; R, the joined rows one person is at most; per feature, the bounds a numeric one is
    clamped to (None: categorical). Half the epsilon goes to the coefficients, the other half is split
    evenly among the counts it releases: the join's distinct keys, its positive labels and, per
    categorical feature, the keys of each level (a histogram: parallel composition)."""

    epsilon_micro: int
    rows_per_join_key: int
    bounds: tuple[tuple[int, int] | None, ...]

    @property
    def counts(self) -> int:
        return 2 + sum(1 for b in self.bounds if b is None)

    @property
    def coefficients_epsilon_micro(self) -> int:
        return self.epsilon_micro // 2

    @property
    def count_share_epsilon_micro(self) -> int:
        """Each count's epsilon (rounded down: never more than paid)."""
        return (self.epsilon_micro - self.coefficients_epsilon_micro) // self.counts


def training_noise_of(
    privacy: Privacy,
    datasets: Sequence[Dataset],
    spec: ModelSpec,
    numeric: Sequence[bool],
    epsilon_micro: int,
) -> TrainingNoise:
    """The noise of a training under `privacy` (`numeric[i]`: whether feature i is an int64 column), or
    the error that refuses it: an epsilon out of range, a numeric feature whose owner gave no bounds."""
    by_id = {d.dataset_id: d for d in datasets}
    bounds: list[tuple[int, int] | None] = []
    broken: list[FieldViolation] = []
    for index, (feature, is_numeric) in enumerate(zip(spec.features, numeric, strict=True)):
        dataset = by_id[feature.dataset_id]
        found = dataset.rule.bounds(feature.column) if is_numeric else None
        if is_numeric and found is None:
            broken.append(_unbounded(dataset, feature.column, f"features[{index}]", "a numeric feature"))
        bounds.append(found)
    _raise_if_unbounded(broken)
    rows = math.prod(d.rule.rows_per_join_key_max for d in datasets)
    counts = 2 + sum(1 for b in bounds if b is None)
    # The coefficients take half: the least share twice over, so that it is at least a count's.
    cost = _checked_cost(privacy, epsilon_micro, 2 * counts)
    return TrainingNoise(cost, rows, tuple(bounds))


def cost_of(privacy: Privacy, noise: Noise | TrainingNoise, spent_epsilon_micro: int) -> Cost:
    """A query's or training's cost against its analyst's budget, or PRIVACY_BUDGET_EXHAUSTED when what is
    left does not pay for it."""
    remaining = privacy.budget_epsilon_micro - spent_epsilon_micro
    if noise.epsilon_micro > remaining:
        raise resource_exhausted(
            Reason.PRIVACY_BUDGET_EXHAUSTED,
            f"it costs epsilon {noise.epsilon_micro / _MICRO:g}; "
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
def _mechanism(sensitivity: int, share_epsilon_micro: int) -> Measurement:
    epsilon = share_epsilon_micro / _MICRO
    space = vector_domain(atom_domain(T="i64")), l1_distance(T="i64")
    mechanism = make_laplace(*space, scale=sensitivity / epsilon)
    spent: float = mechanism.map(sensitivity)  # type: ignore[no-untyped-call]
    ensure(spent <= epsilon * (1 + 1e-9), f"the mechanism spends {spent}, more than its share {epsilon}")
    return mechanism


def noised_floats(values: Sequence[float], l1_sensitivity: float, epsilon_micro: int) -> list[float]:
    """`values` (one vector release whose L1 sensitivity is `l1_sensitivity`) with Laplace noise that
    spends `epsilon_micro`: OpenDP's `make_laplace` on float64 vectors, its privacy map checked."""
    epsilon = epsilon_micro / _MICRO
    space = vector_domain(atom_domain(T="f64", nan=False)), l1_distance(T="f64")
    mechanism = make_laplace(*space, scale=l1_sensitivity / epsilon)
    spent: float = mechanism.map(l1_sensitivity)  # type: ignore[no-untyped-call]
    ensure(spent <= epsilon * (1 + 1e-9), f"the mechanism spends {spent}, more than its share {epsilon}")
    release: list[float] = mechanism(list(values))
    return release
