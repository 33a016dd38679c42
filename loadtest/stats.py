"""Per-second figures of a load: each worker counts what it offered, what succeeded and each error by
gRPC status, and records latencies into an HDR histogram per second; it hands each finished second over
encoded (`Tick`), and the parent merges the workers' seconds (`Series`) and reads figures over any window.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import statistics
from collections.abc import Iterable, Sequence

from hdrh.histogram import HdrHistogram

from loadtest import bounds

OK = "OK"
# A scheduled request the worker could not send because `in_flight_max` of its requests were in flight.
IN_FLIGHT_CAP = "CLIENT_IN_FLIGHT_CAP"
PERCENTILES = (50.0, 90.0, 99.0)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(bounds.latency_min_us, bounds.latency_max_us, bounds.latency_digits)


def merged(encoded: Iterable[bytes]) -> HdrHistogram:
    histogram = new_histogram()
    for part in encoded:
        histogram.add(HdrHistogram.decode(part))
    return histogram


def record_latency(histogram: HdrHistogram, latency_s: float) -> None:
    microseconds = round(latency_s * 1_000_000)
    histogram.record_value(min(bounds.latency_max_us, max(bounds.latency_min_us, microseconds)))


@dataclasses.dataclass(frozen=True)
class Tick:
    """One worker's second: requests offered (due) in it, answers that came in it, their latencies."""

    worker: int
    second: int
    offered: int
    ok: int
    transfers: int
    errors: tuple[tuple[str, int], ...]
    histogram: bytes
    # When the second's first and last successes came, in seconds since the worker's start (None: none).
    ok_first_s: float | None = None
    ok_last_s: float | None = None


class SecondCounter:
    """A worker's counts for the second under way; `close` hands it over and starts the next."""

    def __init__(self) -> None:
        self.offered = 0
        self.ok = 0
        self.transfers = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.histogram = new_histogram()
        self.ok_first_s: float | None = None
        self.ok_last_s: float | None = None

    def record(
        self, status: str, latency_s: float | None, transfers: int = 0, at_s: float | None = None
    ) -> None:
        """Count an answer; `at_s` (seconds since the worker's start) dates a success."""
        self.transfers += transfers
        if status == OK:
            self.ok += 1
            if at_s is not None:
                self.ok_first_s = at_s if self.ok_first_s is None else self.ok_first_s
                self.ok_last_s = at_s
        else:
            self.errors[status] += 1
        if latency_s is not None:
            record_latency(self.histogram, latency_s)

    def close(self, worker: int, second: int) -> Tick:
        errors = tuple(sorted(self.errors.items()))
        histogram = self.histogram.encode()
        return Tick(
            worker,
            second,
            self.offered,
            self.ok,
            self.transfers,
            errors,
            histogram,
            self.ok_first_s,
            self.ok_last_s,
        )


@dataclasses.dataclass(frozen=True)
class Window:
    """Merged figures over some seconds; `transfers` counts the transfers acknowledged (a batch has many)."""

    seconds: int
    offered: int
    ok: int
    transfers: int
    errors: tuple[tuple[str, int], ...]
    latency_ms: tuple[float, float, float, float]  # p50, p90, p99, max

    @property
    def error_count(self) -> int:
        return sum(count for _, count in self.errors)

    @property
    def offered_per_s(self) -> float:
        return self.offered / self.seconds if self.seconds else 0.0

    @property
    def achieved_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def transfers_per_s(self) -> float:
        return self.transfers / self.seconds if self.seconds else 0.0

    @property
    def error_rate(self) -> float:
        answered = self.ok + self.error_count
        return self.error_count / answered if answered else 0.0

    @property
    def p99_ms(self) -> float:
        return self.latency_ms[2]


def window_of(ticks: Sequence[Tick], seconds: int) -> Window:
    errors: collections.Counter[str] = collections.Counter()
    for tick in ticks:
        errors.update(dict(tick.errors))
    histogram = merged(tick.histogram for tick in ticks)
    p50, p90, p99 = (histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES)
    return Window(
        seconds=seconds,
        offered=sum(tick.offered for tick in ticks),
        ok=sum(tick.ok for tick in ticks),
        transfers=sum(tick.transfers for tick in ticks),
        errors=tuple(sorted(errors.items())),
        latency_ms=(p50, p90, p99, histogram.get_max_value() / 1000),
    )


class Series:
    """Every worker's ticks, by second."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.ticks: dict[int, list[Tick]] = collections.defaultdict(list)

    def add(self, tick: Tick) -> bool:
        """Keep a tick; True when it completes its second (every worker has reported it)."""
        self.ticks[tick.second].append(tick)
        return len(self.ticks[tick.second]) == self.workers

    @property
    def seconds(self) -> int:
        return max(self.ticks, default=-1) + 1

    def second(self, second: int) -> Window:
        return window_of(self.ticks.get(second, []), 1)

    def window(self, first: int, end: int) -> Window:
        """Seconds `first` to `end - 1`."""
        return window_of(self.ticks_in(first, end), max(0, end - first))

    def slowest_seconds(self, first: int, end: int, count: int) -> tuple[tuple[int, Window], ...]:
        """Of seconds `first` to `end - 1`, the `count` whose slowest answer took longest, slowest first:
        where a load's stalls were."""
        windows = ((second, self.second(second)) for second in range(first, end))
        return tuple(sorted(windows, key=lambda item: item[1].latency_ms[3], reverse=True)[:count])

    def ticks_in(self, first: int, end: int) -> list[Tick]:
        """Every worker's ticks of seconds `first` to `end - 1`."""
        return [tick for second in range(first, end) for tick in self.ticks.get(second, [])]

    def longest_ok_gap_s(self, first_s: float, end_s: float) -> float:
        """The longest time from `first_s` to `end_s` (seconds since the start) without a success: between
        two successes, or from `first_s` to the first or from the last to `end_s`. The workers' starts are
        aligned by a barrier, so their times are one clock to within milliseconds."""
        times = sorted(
            at_s
            for second in range(max(0, int(first_s) - 1), int(end_s) + 1)
            for tick in self.ticks.get(second, [])
            for at_s in (tick.ok_first_s, tick.ok_last_s)
            if at_s is not None and first_s <= at_s < end_s
        )
        edges = [first_s, *times, end_s]
        return max(later - earlier for earlier, later in itertools.pairwise(edges))


@dataclasses.dataclass(frozen=True)
class PairedRounds:
    """Two loads measured in alternating windows, a window of each per round: the rate of each per round,
    and each round's ratio of the measured load's rate to the reference's. A shared machine's speed drifts
    between windows minutes apart (by 2x on a 2-core host); the two windows of a round see about the same
    speed, so each round's ratio divides it out, and the median of the rounds' ratios leaves out a round
    that a stall of the machine hit in one of its windows."""

    reference_per_s: tuple[float, ...]
    measured_per_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.reference_per_s or len(self.reference_per_s) != len(self.measured_per_s):
            rounds = f"{len(self.reference_per_s)} and {len(self.measured_per_s)}"
            raise ValueError(f"a rate of each load per round, got {rounds}")

    @property
    def reference_median_per_s(self) -> float:
        return statistics.median(self.reference_per_s)

    @property
    def measured_median_per_s(self) -> float:
        return statistics.median(self.measured_per_s)

    @property
    def ratios(self) -> tuple[float, ...]:
        """Each round's measured rate over the same round's reference rate (0.0 when it answered nothing)."""
        pairs = zip(self.reference_per_s, self.measured_per_s, strict=True)
        return tuple(measured / reference if reference else 0.0 for reference, measured in pairs)

    @property
    def ratio_median(self) -> float:
        return statistics.median(self.ratios)
