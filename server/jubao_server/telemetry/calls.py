"""What the call pipeline records about each call: which calls are traced (`CallSampler`, a head sampler)
and the metrics of every call (`CallMetrics`).

**Traces are sampled at the head.** A span costs tens of microseconds to build and more to export, so at
full load not every call gets one. A call whose caller sent a W3C trace context follows the caller's
decision (parent-based: a client that traces its call gets the server's span, one that does not, none);
a call without one is traced with probability `traces_sample_ratio`, drawn before any span is built. A
traced call forwarded to another server carries its span's context, so that server traces its part too
(an untraced one passes on what its caller sent). A call the head did not trace and that fails on the
server's side (`TRACED_ERRORS`: INTERNAL, UNKNOWN, DATA_LOSS, UNAVAILABLE, DEADLINE_EXCEEDED) gets a
span anyway, started when the error is known with the call's start time and parent: a span that starts
with such an `rpc.grpc.status_code` is always recorded. Refusals (INVALID_ARGUMENT, FAILED_PRECONDITION,
quotas, credentials, ...) are sampled like successes, so a flood of them costs no span per call.

**Metrics are kept for every call** at the cost of a few dictionary operations: calls per (method,
tenant, status code) and calls in flight per method are counted here and read by observable instruments
when a reader collects (`rpc.server.calls`, `rpc.server.in_flight`); the latency goes to the histogram
`rpc.server.duration`, one measurement per call, with a label dict built once per label set. Label sets
are bounded (`limits.metric_label_sets_max`); past the bound, calls count under
`otel.metric.overflow`, as OpenTelemetry's own instruments do.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import AnyValue, Attributes

from jubao_server import limits
from jubao_server.errors import ErrorCode

# The attribute of a call's span that holds its gRPC status code (a number), and of its metrics (a name).
STATUS_CODE: Final = "rpc.grpc.status_code"
# Status codes (numbers) of a failure on the server's side: such a call is always traced.
TRACED_ERRORS: Final = frozenset(
    code.value
    for code in (
        ErrorCode.UNKNOWN,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.INTERNAL,
        ErrorCode.UNAVAILABLE,
        ErrorCode.DATA_LOSS,
    )
)
# Latency buckets in milliseconds, from 0.1 ms to 10 s.
LATENCY_BUCKETS_MS: Final = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
Labels = tuple[str, str, str]  # method, tenant id, status code name
# Where calls past `limits.metric_label_sets_max` label sets are counted.
OVERFLOW_KEY: Final[Labels] = ("", "", "")
OVERFLOW: Final[Mapping[str, AnyValue]] = {"otel.metric.overflow": True}


class CallSampler(Sampler):
    """The head sampler. The pipeline asks `traces_root` for a call without a parent before it builds a
    span, so an untraced call costs one random draw; the spans it then starts are recorded as the
    OpenTelemetry SDK asks here: a child follows its parent's decision, a root is one the head chose (a
    root started without asking, as the Flight server's one span per bulk call, is recorded too), and a
    span that starts with a server-side error's status code is always recorded."""

    def __init__(self, ratio: float, draw: Callable[[], float] = random.random) -> None:
        self.ratio = ratio
        self._draw = draw
        self._parent_based = ParentBased(root=ALWAYS_ON)

    def traces_root(self) -> bool:
        """Whether a call without a caller's trace context is traced: with probability `ratio`."""
        return self._draw() < self.ratio

    def should_sample(  # noqa: PLR0917 (OpenTelemetry's Sampler interface)
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        code = attributes.get(STATUS_CODE) if attributes else None
        if code in TRACED_ERRORS:
            parent_state = get_current_span(parent_context).get_span_context().trace_state
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent_state)
        return self._parent_based.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"CallSampler{{ratio={self.ratio}, children follow their parent, server errors always}}"


class CallMetrics:
    """Calls, calls in flight and latency of every call, labelled with the process's `rpc.system` (`grpc`,
    or `arrow_flight` for the bulk plane's Flight server). Safe from any thread (the Flight server answers
    on several): the counts change under a lock, which the readers' callbacks take to copy them."""

    def __init__(self, meter: metrics.Meter, system: str) -> None:
        self._system = system
        self._lock = threading.Lock()
        self._calls: dict[Labels, int] = {OVERFLOW_KEY: 0}
        self._labels: dict[Labels, Mapping[str, AnyValue]] = {OVERFLOW_KEY: OVERFLOW}
        self._in_flight: dict[str, int] = {}
        meter.create_observable_counter(
            "rpc.server.calls", [self._observe_calls], unit="{call}", description="RPCs handled"
        )
        meter.create_observable_up_down_counter(
            "rpc.server.in_flight", [self._observe_in_flight], unit="{call}", description="RPCs in flight"
        )
        self._duration_ms = meter.create_histogram(
            "rpc.server.duration",
            unit="ms",
            description="RPC latency",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
        )

    def started(self, method: str) -> None:
        with self._lock:
            self._in_flight[method] = self._in_flight.get(method, 0) + 1

    def finished(self, method: str, tenant_id: str, code: str, elapsed_ms: float) -> None:
        """A call counted in flight since `started` ended (with `code`, a status code's name)."""
        with self._lock:
            self._in_flight[method] -= 1
        self.record(method, tenant_id, code, elapsed_ms)

    def record(self, method: str, tenant_id: str, code: str, elapsed_ms: float) -> None:
        """Count a call that ended (with `code`, a status code's name) and record its latency."""
        key = (method, tenant_id, code)
        with self._lock:
            labels = self._labels.get(key)
            if labels is None:
                key, labels = self._new_labels(key)
            self._calls[key] += 1
        self._duration_ms.record(elapsed_ms, labels)

    def _new_labels(self, key: Labels) -> tuple[Labels, Mapping[str, AnyValue]]:
        if len(self._labels) > limits.metric_label_sets_max:
            return OVERFLOW_KEY, OVERFLOW
        method, tenant_id, code = key
        labels = {
            "rpc.system": self._system,
            "rpc.method": method,
            "jubao.tenant_id": tenant_id,
            STATUS_CODE: code,
        }
        self._labels[key] = labels
        self._calls[key] = 0
        return key, labels

    def _observe_calls(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            counts = [(self._labels[key], count) for key, count in self._calls.items() if count]
        return [metrics.Observation(count, dict(labels)) for labels, count in counts]

    def _observe_in_flight(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            counts = list(self._in_flight.items())
        return [metrics.Observation(count, {"rpc.method": method}) for method, count in counts]
