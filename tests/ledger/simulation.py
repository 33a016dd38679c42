"""A seeded randomized simulation of the payments ledger, in the style of TigerBeetle's VOPR, at the
domain level (a `Ledger` on a real backend, no gRPC).

Clients (asyncio tasks) send random requests: transfers of 1-3 legs across shards and, when the ledger
has them, holds (capture, void, expiry), escrows (release, refund, dispute, automatic release; the
oldest open dispute refunded in full) and refunds of transfer legs; the settlement accounts top
customers up as they spend. A client retries
with the same request id after an answer that leaves the outcome unknown (UNAVAILABLE,
RESOURCE_EXHAUSTED, StorageError, a killed process, a missed deadline), and keeps sending such a request
(but a payment) again before each new one until it knows; it sometimes sends a request twice at once (a
retry racing the first attempt), and sometimes replays a request that succeeded: every answer to one
request must agree.

Faults drawn from the seed fire before given operations: lost answers of conditional writes (applied or
not), storage errors, and kills. A kill cancels every task of the current `Process` at once (the
ledger's shard actors, sweepers, deliveries and the calls in flight), without `stop()`, and a new
`Ledger` carries on over the same storage. A task of the ledger that dies of anything but a rejection
or a storage error is reported, as is a call with no answer within its deadline.

The auditor (`Model`) records what every acknowledged request did, and audits each payment, hold,
escrow and refund once it has settled (its transfer completed, the hold or escrow closed, no request
acting on it): every acknowledged transfer exists, completed, with its legs, and a rejected one is kept
refused; an acknowledged capture, void, release, refund or dispute shows in the item's final state;
the money each moved goes into the model's books, and the item is forgotten. So what the model keeps
follows what is open, not the length of the run, and closed items and request ids may expire (the
simulation keeps them `request_ttl_s`) long after the audit saw them. At the end, with faults off and
after one more restart, the requests whose outcome is still unknown are resolved: a payment by looking
up the transfer its request id names, anything else by sending it once more (a request applies at most
once, so the answer says what happened); the holds and escrows due are swept (on simulated time the
late ones too: none may change while the final audit reads it), audited as they close, and what is
left is audited alike. Then: the reconciliation report
is clean; every account's balance and held amount equal the books (the held amounts of the holds still
open added); no journal holds an entry twice.

The run stops at the first problem. Everything that happened (answers, refusals, unknown outcomes,
faults, with the time they happened) goes into a trace whose hash is printed next to the seed. On the
memory backend the run is on simulated time (`run_on_simulated_time`: `SimClock`, `VirtualTimeLoop`,
seeded ids and seeded storage delays through the fault hook), so the same seed gives the same trace,
hash included, every time. On SQLite and Cassandra it runs on the real clock: the seed fixes every
client's requests and the faults, the interleaving still depends on timing. Replay a seed with
`JUBAO_SIM_SEED=<seed> make simulate`.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import heapq
import itertools
import random
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from enum import StrEnum
from typing import Any, Generic, TypeVar

from jubao.errors import Reason
from jubao_server.app import migrate
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.payments.api import EntryQuery, EscrowCommand, HoldCommand, Idempotency, TransferCommand
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger, transfer_id_of
from jubao_server.payments.model import (
    AccountKind,
    AccountPolicy,
    AccountView,
    Escrow,
    EscrowState,
    Hold,
    HoldState,
    Leg,
    OpenAccountCommand,
    Refund,
    Transfer,
    TransferState,
)
from jubao_server.payments.reconcile import ReconcileReport, reconcile
from jubao_server.shards.node import IdSource
from jubao_server.storage.contract import StorageBackend, StorageError
from jubao_server.storage.memory import MemoryBackend

from tests.sim.faults import FaultPlan
from tests.sim.ids import SeededIds
from tests.sim.virtual_time import SimClock, run_simulated

A = TypeVar("A")

SEED_VARIABLE = "JUBAO_SIM_SEED"
OPS_VARIABLE = "JUBAO_SIM_OPS"
# Operations of the run on simulated time (memory backend); `make simulate` runs 1,000,000.
VIRTUAL_OPS_VARIABLE = "JUBAO_SIM_VIRTUAL_OPS"
# Operations of each of the three runs that must give one trace.
replay_ops = 200
# `make test` runs this many operations per backend; `make simulate` 5000
ops_default = 300
# Shape of the world
currencies = ("CNY", "USD")
customers_per_currency = 6
merchants_per_currency = 3
escrow_accounts_per_currency = 2
opening_minor = 20_000
leg_max_minor = 1_500
# Customers are topped up from the settlement account (up to this much at a time) as they spend.
top_up_max_minor = 2 * leg_max_minor
legs_max = 3
# Clients and their retries
clients = 12
attempts_max = 6
retry_backoff_s = 0.02
call_deadline_s = 8.0
replay_after_ack_probability = 0.15
racing_retry_probability = 0.1
recent_items = 24
# Faults
fault_probability = 0.05
faults_in_a_row_max = 3
ops_per_kill = 150
# Kills in one run at most: each restart reloads every shard, whose open and recently closed items grow
# with the run.
kills_max = 200
kill_wait_s = 5.0
# Holds and escrows fall due soon, or late: long after a short run, within a long one (a run of
# 1,000,000 operations spans about 16 simulated minutes), so that what is open stays bounded. On
# simulated time the end waits the late ones out too (`wait_out_late`), auditing them as they close, so
# that none changes while the final audit reads it; on the real clock runs are short, and the late
# ones fall due long after them.
due_soon_s = (0.3, 2.0)
due_late_s = 600.0
due_soon_probability = 0.5
# How often a refund of an escrow asks for all that the acknowledged refunds left (ending a dispute).
refund_rest_probability = 0.3
# Write-ahead records and apply-once markers (the simulation watches no events), request ids and the
# holds and escrows closed for their retries are kept this long: they expire within a long run, as they
# do in days of production. Clients know every outcome, and the audit has seen every closed item, long
# before.
wal_ttl_s = 600
request_ttl_s = 600
# The audit as the run goes: every so many requests a client audits what settled, each item some
# (simulated) time after it was answered, one not settled yet again later (bounded per pass).
audit_every_ops = 500
audit_lag_s = 2.0
audit_retry_s = 10.0
audit_items_per_pass_max = 5000
# Settling at the end: the shards sweep due items about once a second; what closes meanwhile is
# audited every `audit_retry_s` (bounded: the latest due is at most `due_late_s` away).
sweep_margin_s = 2.5
settle_audits_max = int((due_late_s + sweep_margin_s) / audit_retry_s) + 2
settle_polls_max = 100
settle_poll_s = 0.1
entries_page_max = 500
# A run of 1,000,000 operations leaves up to about 100,000 entries in a merchant's journal.
entries_pages_max = 2_000
problems_shown_max = 30

MEMO = "simulation"
EXPECTED_REJECTIONS = frozenset(
    {
        Reason.INSUFFICIENT_FUNDS,
        Reason.INVALID_STATE,
        Reason.AMOUNT_EXCEEDS_HOLD,
        Reason.REFUND_EXCEEDS_ORIGINAL,
    }
)
OUTCOME_UNKNOWN_CODES = frozenset(
    {ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.DEADLINE_EXCEEDED}
)


def ledger_has(*methods: str) -> bool:
    """Whether this version of the ledger offers these operations."""
    return all(hasattr(Ledger, method) for method in methods)


HOLDS = ledger_has("create_hold", "capture_hold", "void_hold", "get_hold")
ESCROWS = ledger_has("create_escrow", "release_escrow", "refund_escrow", "dispute_escrow", "get_escrow")
REFUNDS = ledger_has("create_refund")


# The world: accounts


@dataclasses.dataclass(frozen=True)
class AccountSpec:
    account_id: str
    currency: str
    kind: AccountKind

    @property
    def allow_negative(self) -> bool:
        return self.kind is AccountKind.SETTLEMENT


@dataclasses.dataclass(frozen=True)
class World:
    tenant: str
    accounts: tuple[AccountSpec, ...]

    @classmethod
    def build(cls, tenant: str) -> World:
        kinds = {
            AccountKind.SETTLEMENT: 1,
            AccountKind.CUSTOMER: customers_per_currency,
            AccountKind.MERCHANT: merchants_per_currency,
            AccountKind.ESCROW: escrow_accounts_per_currency,
            AccountKind.FEES: 1,
        }
        specs = [
            AccountSpec(f"{kind.value}-{currency}-{index}", currency, kind)
            for currency in currencies
            for kind, count in kinds.items()
            for index in range(count)
        ]
        return cls(tenant, tuple(specs))

    def ids(self, currency: str, *kinds: AccountKind) -> list[str]:
        return [a.account_id for a in self.accounts if a.currency == currency and a.kind in kinds]


# Requests


class Outcome(StrEnum):
    UNKNOWN = "unknown"
    ACKED = "acked"
    REJECTED = "rejected"


@dataclasses.dataclass(frozen=True, slots=True)
class Op(abc.ABC, Generic[A]):
    """One client request, sent with the same request id and body on every retry."""

    request_id: str

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.request_id}"

    @property
    def key(self) -> Idempotency:
        body = repr(dataclasses.replace(self, request_id=""))
        return Idempotency(self.request_id, hashlib.sha256(body.encode()).hexdigest())

    @abc.abstractmethod
    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> A:
        """Send the request with `key` (its `key`, worked out once per request)."""

    @abc.abstractmethod
    def wrong_answer(self, tenant: str, answer: A) -> str:
        """Why a success answer contradicts the request ("" when it does not); holds for replays too."""

    @abc.abstractmethod
    def answer_id(self, answer: A) -> str:
        """What every answer to this request must name again."""

    @abc.abstractmethod
    def acknowledged(self, model: Model, answer: A) -> None:
        """Record the effect of the request, acknowledged for the first time."""

    @property
    def names(self) -> tuple[str, ...]:
        """The holds or escrows the request acts on (the audit leaves them alone while it is worked on)."""
        return ()

    def refusal_expected(self, error: ApiError, now_ms: int) -> bool:
        """Whether the ledger may refuse this request so (`now_ms`: when it did)."""
        return error.reason in EXPECTED_REJECTIONS


def late(due_ms: int, error: ApiError, now_ms: int) -> bool:
    """A hold's expiry or an escrow's release time is checked when the ledger first applies the request:
    one that first got there (after lost answers, kills, retries) once the time had passed is invalid."""
    return error.code is ErrorCode.INVALID_ARGUMENT and due_ms <= now_ms


@dataclasses.dataclass(frozen=True, slots=True)
class Pay(Op[Transfer]):
    currency: str
    legs: tuple[Leg, ...]

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Transfer:
        return await ledger.create_transfer(tenant, TransferCommand(self.currency, self.legs, MEMO), key)

    def wrong_answer(self, tenant: str, answer: Transfer) -> str:
        if answer.transfer_id != transfer_id_of(tenant, self.request_id) or answer.legs != self.legs:
            return f"answered transfer {answer.transfer_id} with legs {answer.legs}"
        return ""

    def answer_id(self, answer: Transfer) -> str:
        return answer.transfer_id

    def acknowledged(self, model: Model, answer: Transfer) -> None:
        model.recent_transfers.append(self)


@dataclasses.dataclass(frozen=True, slots=True)
class CreateHold(Op[Hold]):
    command: HoldCommand

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Hold:
        return await ledger.create_hold(tenant, self.command, key)

    def refusal_expected(self, error: ApiError, now_ms: int) -> bool:
        return Op.refusal_expected(self, error, now_ms) or late(self.command.expire_time_ms, error, now_ms)

    def wrong_answer(self, tenant: str, answer: Hold) -> str:
        asked = self.command
        got = HoldCommand(
            answer.account_id,
            answer.payee_account_id,
            answer.currency,
            answer.amount_minor,
            answer.expire_time_ms,
        )
        return f"answered {got}" if got != asked else ""

    def answer_id(self, answer: Hold) -> str:
        return answer.hold_id

    def acknowledged(self, model: Model, answer: Hold) -> None:
        model.holds[answer.hold_id] = HoldFacts(answer)
        model.audit_later(AuditKind.HOLD, answer.hold_id)


@dataclasses.dataclass(frozen=True, slots=True)
class CaptureHold(Op[Hold]):
    hold_id: str
    amount_minor: int
    hold_amount_minor: int

    @property
    def captured_minor(self) -> int:
        return self.amount_minor or self.hold_amount_minor

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Hold:
        return await ledger.capture_hold(tenant, self.hold_id, self.amount_minor, key)

    def wrong_answer(self, tenant: str, answer: Hold) -> str:
        if (answer.state, answer.captured_minor) != (HoldState.CAPTURED, self.captured_minor):
            return f"answered {answer.state.value} with {answer.captured_minor} captured"
        return ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.hold_id,)

    def answer_id(self, answer: Hold) -> str:
        return answer.hold_id

    def acknowledged(self, model: Model, answer: Hold) -> None:
        model.holds[self.hold_id].captured_minor = self.captured_minor


@dataclasses.dataclass(frozen=True, slots=True)
class VoidHold(Op[Hold]):
    hold_id: str

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Hold:
        return await ledger.void_hold(tenant, self.hold_id, key)

    def wrong_answer(self, tenant: str, answer: Hold) -> str:
        return f"answered {answer.state.value}" if answer.state is not HoldState.VOIDED else ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.hold_id,)

    def answer_id(self, answer: Hold) -> str:
        return answer.hold_id

    def acknowledged(self, model: Model, answer: Hold) -> None:
        model.holds[self.hold_id].voided = True


@dataclasses.dataclass(frozen=True, slots=True)
class CreateEscrow(Op[Escrow]):
    command: EscrowCommand

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Escrow:
        return await ledger.create_escrow(tenant, self.command, key)

    def refusal_expected(self, error: ApiError, now_ms: int) -> bool:
        return Op.refusal_expected(self, error, now_ms) or late(self.command.release_time_ms, error, now_ms)

    def wrong_answer(self, tenant: str, answer: Escrow) -> str:
        got = EscrowCommand(
            answer.buyer_account_id,
            answer.seller_account_id,
            answer.escrow_account_id,
            answer.currency,
            answer.amount_minor,
            answer.fee_account_id,
            answer.fee_minor,
            answer.release_time_ms,
        )
        return f"answered {got}" if got != self.command else ""

    def answer_id(self, answer: Escrow) -> str:
        return answer.escrow_id

    def acknowledged(self, model: Model, answer: Escrow) -> None:
        model.escrows[answer.escrow_id] = EscrowFacts(answer)
        model.audit_later(AuditKind.ESCROW, answer.escrow_id)


@dataclasses.dataclass(frozen=True, slots=True)
class ReleaseEscrow(Op[Escrow]):
    escrow_id: str

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Escrow:
        return await ledger.release_escrow(tenant, self.escrow_id, key)

    def wrong_answer(self, tenant: str, answer: Escrow) -> str:
        return f"answered {answer.state.value}" if answer.state is not EscrowState.RELEASED else ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.escrow_id,)

    def answer_id(self, answer: Escrow) -> str:
        return answer.escrow_id

    def acknowledged(self, model: Model, answer: Escrow) -> None:
        model.escrows[self.escrow_id].released = True


@dataclasses.dataclass(frozen=True, slots=True)
class RefundEscrow(Op[Escrow]):
    escrow_id: str
    amount_minor: int

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Escrow:
        return await ledger.refund_escrow(tenant, self.escrow_id, self.amount_minor, key)

    def wrong_answer(self, tenant: str, answer: Escrow) -> str:
        if answer.refunded_minor < self.amount_minor:
            return f"answered {answer.refunded_minor} refunded"
        return ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.escrow_id,)

    def answer_id(self, answer: Escrow) -> str:
        return answer.escrow_id

    def acknowledged(self, model: Model, answer: Escrow) -> None:
        facts = model.escrows[self.escrow_id]
        facts.refunded_minor += self.amount_minor
        if facts.refunded_minor >= facts.escrow.amount_minor:
            model.disputed.pop(self.escrow_id, None)


@dataclasses.dataclass(frozen=True, slots=True)
class DisputeEscrow(Op[Escrow]):
    escrow_id: str

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Escrow:
        return await ledger.dispute_escrow(tenant, self.escrow_id, key)

    def wrong_answer(self, tenant: str, answer: Escrow) -> str:
        if answer.state not in (EscrowState.DISPUTED, EscrowState.REFUNDED):
            return f"answered {answer.state.value}"
        return ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.escrow_id,)

    def answer_id(self, answer: Escrow) -> str:
        return answer.escrow_id

    def acknowledged(self, model: Model, answer: Escrow) -> None:
        facts = model.escrows[self.escrow_id]
        facts.disputed = True
        if answer.state is EscrowState.DISPUTED and facts.refunded_minor < facts.escrow.amount_minor:
            model.disputed[self.escrow_id] = None


@dataclasses.dataclass(frozen=True, slots=True)
class RefundLeg(Op[Refund]):
    transfer_id: str
    leg_index: int
    leg: Leg
    amount_minor: int

    async def send(self, ledger: Ledger, tenant: str, key: Idempotency) -> Refund:
        return await ledger.create_refund(tenant, self.transfer_id, self.leg_index, self.amount_minor, key)

    def wrong_answer(self, tenant: str, answer: Refund) -> str:
        asked = (self.transfer_id, self.leg_index, self.amount_minor)
        got = (answer.transfer_id, answer.leg_index, answer.amount_minor)
        return f"answered {got}" if got != asked else ""

    def answer_id(self, answer: Refund) -> str:
        return answer.refund_transfer_id

    def acknowledged(self, model: Model, answer: Refund) -> None:
        model.refunds[answer.refund_transfer_id] = (self, answer)
        model.audit_later(AuditKind.REFUND, answer.refund_transfer_id)

    @property
    def back(self) -> Leg:
        return Leg(self.leg.credit_account_id, self.leg.debit_account_id, self.amount_minor)


# The auditor's model


@dataclasses.dataclass
class HoldFacts:
    hold: Hold
    captured_minor: int | None = None
    voided: bool = False


@dataclasses.dataclass
class EscrowFacts:
    escrow: Escrow
    released: bool = False
    disputed: bool = False
    refunded_minor: int = 0


@dataclasses.dataclass(slots=True)
class Attempt:
    """A request while its client works on it; `key` is sent on every retry."""

    op: Op[Any]
    key: Idempotency
    outcome: Outcome = Outcome.UNKNOWN
    answer_id: str = ""
    rejection: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    """A payment request as the audit needs it once its client is done with it: its transfer must exist
    as the outcome says. Legs as (payer, payee, amount): a million of them stay small."""

    request_id: str
    legs: tuple[tuple[str, str, int], ...]
    outcome: Outcome
    rejection: str

    @classmethod
    def of(cls, pay: Pay, attempt: Attempt) -> Sent:
        legs = tuple((leg.debit_account_id, leg.credit_account_id, leg.amount_minor) for leg in pay.legs)
        return cls(pay.request_id, legs, attempt.outcome, attempt.rejection)

    def __str__(self) -> str:
        return f"Pay {self.request_id}"

    @property
    def pay_legs(self) -> tuple[Leg, ...]:
        return tuple(Leg(*leg) for leg in self.legs)


class AuditKind(StrEnum):
    PAYMENT = "payment"
    HOLD = "hold"
    ESCROW = "escrow"
    REFUND = "refund"


@dataclasses.dataclass
class Books:
    """What the balances must be: the legs of every transfer the audit found (as the run goes, and at the
    end), the amounts the open holds hold (at the end), and what the refunds of each leg add up to."""

    ledger_minor: Counter[str] = dataclasses.field(default_factory=Counter)
    held_minor: Counter[str] = dataclasses.field(default_factory=Counter)
    refunded_minor: Counter[tuple[str, int]] = dataclasses.field(default_factory=Counter)

    def move(self, legs: tuple[Leg, ...]) -> None:
        for leg in legs:
            self.ledger_minor[leg.debit_account_id] -= leg.amount_minor
            self.ledger_minor[leg.credit_account_id] += leg.amount_minor


@dataclasses.dataclass
class Model:
    """The outcome of every request, the effects of the acknowledged ones, and the problems seen. It
    keeps what is live: the payment requests, holds, escrows and refunds answered lately or not settled
    yet, and the requests whose outcome is still unknown. What settled is audited as the run goes
    (`audit_settled`: into `books`) and forgotten, the rest at the end; other requests are counted, and
    the trace is hashed as it grows. So its memory follows what is open, not the length of the run."""

    tenant: str
    clock: Clock
    books: Books = dataclasses.field(default_factory=Books)
    requests: int = 0
    # Payment requests acknowledged or refused, by request id, until audited; those whose outcome stayed
    # unknown are audited at the end (a command of theirs may still be in a shard's queue).
    payments: dict[str, Sent] = dataclasses.field(default_factory=dict)
    unknown_payments: dict[str, Sent] = dataclasses.field(default_factory=dict)
    # Other requests whose outcome is unknown: their clients send them again until it is known.
    unresolved: dict[str, Attempt] = dataclasses.field(default_factory=dict)
    finished: Counter[str] = dataclasses.field(default_factory=Counter)
    # The latest acknowledged payments: refunds pick from them.
    recent_transfers: collections.deque[Pay] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=recent_items)
    )
    # Acknowledged items until audited, in the order they were acknowledged (requests pick recent ones).
    holds: dict[str, HoldFacts] = dataclasses.field(default_factory=dict)
    escrows: dict[str, EscrowFacts] = dataclasses.field(default_factory=dict)
    refunds: dict[str, tuple[RefundLeg, Refund]] = dataclasses.field(default_factory=dict)
    # Escrows acknowledged disputed and not known to be refunded in full, oldest first: a dispute stays
    # open until a refund ends it, so the workload ends them (`settle_dispute`).
    disputed: dict[str, None] = dataclasses.field(default_factory=dict)
    # What to audit once settled, a heap of (not before this wall time in ms, sequence, kind, key).
    audits: list[tuple[int, int, AuditKind, str]] = dataclasses.field(default_factory=list)
    audits_queued: int = 0
    auditing: bool = False
    # Holds and escrows that requests being worked on (or unresolved) act on: not audited meanwhile.
    named: Counter[str] = dataclasses.field(default_factory=Counter)
    # Items audited as the run went, by kind.
    audited: Counter[str] = dataclasses.field(default_factory=Counter)
    problems: list[str] = dataclasses.field(default_factory=list)
    unknown_answers: Counter[str] = dataclasses.field(default_factory=Counter)
    latest_due_ms: int = 0
    # Whether the end waits out the late holds and escrows too (on simulated time: waiting costs nothing).
    wait_out_late: bool = False
    # Set once the clients stopped: the audit no longer leaves the latest items alone.
    workload_done: bool = False
    # What happened, in order, with the time it happened: the run's trace hash is the SHA-256 of these
    # lines joined by newlines, hashed as they come.
    trace: hashlib._Hash = dataclasses.field(default_factory=hashlib.sha256)
    traced: int = 0

    def begin(self, op: Op[Any]) -> Attempt:
        self.requests += 1
        self.named.update(op.names)
        return Attempt(op, op.key)

    def done(self, attempt: Attempt) -> None:
        """The client is done with the request: a payment is kept for the audit, another request whose
        outcome is unknown until it is known (`resolved`), the rest counted."""
        op = attempt.op
        if isinstance(op, Pay):
            self.finished[_outcome_name(attempt)] += 1
            sent = Sent.of(op, attempt)
            if attempt.outcome is Outcome.UNKNOWN:
                self.unknown_payments[op.request_id] = sent
            else:
                self.payments[op.request_id] = sent
                self.audit_later(AuditKind.PAYMENT, op.request_id)
        elif attempt.outcome is Outcome.UNKNOWN:
            self.unresolved[op.request_id] = attempt
        else:
            self._finished(attempt)

    def resolved(self, attempt: Attempt) -> None:
        """An unresolved request was sent again: counted once its outcome is known."""
        if attempt.outcome is not Outcome.UNKNOWN:
            del self.unresolved[attempt.op.request_id]
            self._finished(attempt)

    def _finished(self, attempt: Attempt) -> None:
        self.finished[_outcome_name(attempt)] += 1
        self.named.subtract(attempt.op.names)

    def audit_later(self, kind: AuditKind, key: str, at_ms: int | None = None) -> None:
        """Audit the item at `at_ms`, or once it has had time to settle (`audit_lag_s` from now)."""
        self.audits_queued += 1
        due_ms = at_ms if at_ms is not None else self.clock.wall_ms() + int(audit_lag_s * 1000)
        heapq.heappush(self.audits, (due_ms, self.audits_queued, kind, key))

    def note(self, text: str) -> None:
        line = f"{self.clock.wall_ms()} {text}"
        self.trace.update(f"\n{line}".encode() if self.traced else line.encode())
        self.traced += 1

    def trace_hash(self) -> str:
        return self.trace.hexdigest()[:16]

    def answered(self, attempt: Attempt, answer: object) -> None:
        op = attempt.op
        self.note(f"{op} answered {op.answer_id(answer)}")
        wrong = op.wrong_answer(self.tenant, answer)
        if wrong:
            self.problem(f"{op}: {wrong}")
        if attempt.outcome is Outcome.REJECTED:
            self.problem(f"{op}: rejected ({attempt.rejection}), then acknowledged by a retry")
        if attempt.outcome is Outcome.ACKED:
            if op.answer_id(answer) != attempt.answer_id:
                self.problem(f"{op}: a replay named {op.answer_id(answer)}, not {attempt.answer_id}")
            return
        attempt.outcome, attempt.answer_id = Outcome.ACKED, op.answer_id(answer)
        op.acknowledged(self, answer)

    def rejected(self, attempt: Attempt, error: ApiError) -> None:
        self.note(f"{attempt.op} refused {error.reason}")
        if not attempt.op.refusal_expected(error, self.clock.wall_ms()):
            self.problem(f"{attempt.op}: unexpected {error.code.name} {error.reason}: {error.message}")
        if attempt.outcome is Outcome.ACKED:
            self.problem(f"{attempt.op}: acknowledged, then a replay was rejected: {error.message}")
            return
        attempt.outcome, attempt.rejection = Outcome.REJECTED, error.reason

    def unknown(self, attempt: Attempt, why: str) -> None:
        self.note(f"{attempt.op} unknown {why}")
        self.unknown_answers[why] += 1

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def due(self, seconds: float) -> int:
        due_ms = self.clock.wall_ms() + int(seconds * 1000)
        if seconds < due_late_s or self.wait_out_late:
            self.latest_due_ms = max(self.latest_due_ms, due_ms)
        return due_ms

    def outcomes(self) -> Counter[str]:
        return self.finished + Counter(_outcome_name(attempt) for attempt in self.unresolved.values())


def _outcome_name(attempt: Attempt) -> str:
    return f"{type(attempt.op).__name__}:{attempt.outcome.value}"


# Processes: a Ledger and every task it started


_PROCESS: contextvars.ContextVar[Process | None] = contextvars.ContextVar("sim_process", default=None)


class Lost(Exception):
    """No answer: the process died. The outcome is unknown."""


class Hung(Lost):
    """No answer within `call_deadline_s`: the call was cancelled, its outcome is unknown."""


class Process:
    """A server process. Tasks created while serving its calls (shard actors, sweepers, deliveries,
    gathers) inherit it through the context; `kill` cancels all of them at once. A task that dies of
    anything but a rejection or a storage error is a bug, reported to `model`."""

    def __init__(self, ledger: Ledger, model: Model) -> None:
        self.ledger = ledger
        self.model = model
        # Insertion-ordered (dicts, not sets): a kill cancels them in the same order on every replay.
        self._tasks: dict[asyncio.Task[Any], None] = {}
        # Calls from clients: their errors are answers, the client judges them.
        self._calls: dict[asyncio.Task[Any], None] = {}

    def start(self, work: Callable[[Ledger], Coroutine[Any, Any, A]]) -> asyncio.Task[A]:
        token = _PROCESS.set(self)
        try:
            call = asyncio.create_task(work(self.ledger))
        finally:
            _PROCESS.reset(token)
        self._calls[call] = None
        return call

    def adopt(self, task: asyncio.Task[Any]) -> None:
        self._tasks[task] = None
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        error = None if task.cancelled() else task.exception()
        if task in self._calls:
            self._calls.pop(task)
        elif error is not None and not isinstance(error, ApiError | StorageError):
            self.model.problem(f"task {task.get_name()} of the ledger died: {error!r}")

    async def kill(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=kill_wait_s)


def _track(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **options)
    owner = _PROCESS.get()
    if owner is not None:
        owner.adopt(task)
    return task


@contextlib.contextmanager
def processes_tracked() -> Iterator[None]:
    loop = asyncio.get_running_loop()
    assert loop.get_task_factory() is None, "the simulation needs the loop's task factory"
    loop.set_task_factory(_track)
    try:
        yield
    finally:
        loop.set_task_factory(None)


class Cluster:
    """The storage, its fault plan, and the one process serving the clients."""

    def __init__(
        self,
        backend: StorageBackend,
        faults: FaultPlan,
        settings: PaymentsSettings,
        model: Model,
        ids: IdSource,
    ) -> None:
        self.backend = backend
        self.faults = faults
        self.settings = settings
        self.model = model
        self.ids = ids
        self.process = Process(self.new_ledger(), model)
        self.injected: Counter[str] = Counter()

    async def call(self, work: Callable[[Ledger], Coroutine[Any, Any, A]]) -> A:
        task = self.process.start(work)
        done, _ = await asyncio.wait([task], timeout=call_deadline_s)
        if not done:
            task.cancel()
            raise Hung(f"no answer within {call_deadline_s} s")
        if task.cancelled():
            raise Lost("the process was killed")
        return task.result()

    async def restart(self) -> None:
        """Kill the process abruptly (no `stop()`) and start a new one over the same storage."""
        dead, self.process = self.process, Process(self.new_ledger(), self.model)
        await dead.kill()

    def new_ledger(self) -> Ledger:
        return Ledger(self.backend, self.settings, clock=self.model.clock, ids=self.ids)

    def calm(self) -> None:
        self.faults.conditional_timeouts = 0
        self.faults.storage_errors = 0


# Faults


class FaultKind(StrEnum):
    TIMEOUTS_APPLIED = "timeouts_applied"
    TIMEOUTS_LOST = "timeouts_lost"
    STORAGE_ERRORS = "storage_errors"
    KILL = "kill"


def fault_schedule(seed: int, ops: int) -> dict[int, tuple[FaultKind, int]]:
    """Which fault fires before which operation, and how many in a row."""
    rng = random.Random(f"{seed}/faults")
    kinds = [FaultKind.TIMEOUTS_APPLIED, FaultKind.TIMEOUTS_LOST, FaultKind.STORAGE_ERRORS]
    plan = {
        index: (rng.choice(kinds), rng.randint(1, faults_in_a_row_max))
        for index in range(ops)
        if rng.random() < fault_probability
    }
    for index in rng.sample(range(ops), min(ops, 1 + ops // ops_per_kill, kills_max)):
        plan[index] = (FaultKind.KILL, 1)
    return plan


async def inject(cluster: Cluster, kind: FaultKind, count: int) -> None:
    cluster.injected[kind.value] += count
    cluster.model.note(f"fault {kind.value} x{count}")
    if kind is FaultKind.KILL:
        await cluster.restart()
    elif kind is FaultKind.STORAGE_ERRORS:
        cluster.faults.storage_errors = count
    else:
        cluster.faults.conditional_timeouts = count
        cluster.faults.applied_before_timeout = kind is FaultKind.TIMEOUTS_APPLIED


# Workload


class Workload:
    """One client's random requests, drawn from its own generator."""

    def __init__(self, world: World, model: Model, rng: random.Random) -> None:
        self.world = world
        self.model = model
        self.rng = rng
        self._accounts = {
            (currency, kind): world.ids(currency, kind) for currency in currencies for kind in AccountKind
        }
        self._parties = {
            currency: world.ids(currency, AccountKind.CUSTOMER, AccountKind.MERCHANT, AccountKind.FEES)
            for currency in currencies
        }
        makers: list[tuple[int, Callable[[str], Op[Any] | None]]] = [(6, self.pay), (1, self.top_up)]
        if HOLDS:
            makers += [(2, self.create_hold), (2, self.capture_hold), (1, self.void_hold)]
        if ESCROWS:
            makers += [(2, self.create_escrow), (1, self.release_escrow), (1, self.refund_escrow)]
            makers += [(1, self.dispute_escrow), (1, self.settle_dispute)]
        if REFUNDS:
            makers += [(1, self.refund_leg)]
        self._weights = [weight for weight, _ in makers]
        self._makers = [maker for _, maker in makers]

    def next(self, request_id: str) -> Op[Any]:
        maker = self.rng.choices(self._makers, self._weights)[0]
        return maker(request_id) or self.pay(request_id)

    def _currency(self) -> str:
        return self.rng.choice(currencies)

    def _amount(self, most_minor: int) -> int:
        return self.rng.randint(1, max(1, most_minor))

    def _due_ms(self) -> int:
        soon = self.rng.random() < due_soon_probability
        return self.model.due(self.rng.uniform(*due_soon_s) if soon else due_late_s)

    def _account(self, currency: str, kind: AccountKind) -> str:
        return self.rng.choice(self._accounts[currency, kind])

    def pay(self, request_id: str) -> Pay:
        currency = self._currency()
        parties = self._parties[currency]
        payer = self.rng.choice(parties)
        payees = [p for p in parties if p != payer]
        chosen = self.rng.sample(payees, self.rng.randint(1, legs_max))
        legs = tuple(Leg(payer, payee, self._amount(leg_max_minor)) for payee in chosen)
        return Pay(request_id, currency, legs)

    def top_up(self, request_id: str) -> Pay:
        """Money from outside: the settlement account pays a customer in, so that customers still have
        money to pay with over a long run (what they pay ends up with merchants, fees, holds and escrows)."""
        currency = self._currency()
        bank, customer = (
            self._account(currency, AccountKind.SETTLEMENT),
            self._account(currency, AccountKind.CUSTOMER),
        )
        return Pay(request_id, currency, (Leg(bank, customer, self._amount(top_up_max_minor)),))

    def create_hold(self, request_id: str) -> CreateHold:
        currency = self._currency()
        payer = self._account(currency, AccountKind.CUSTOMER)
        payee = self._account(currency, AccountKind.MERCHANT)
        amount_minor = self._amount(2 * leg_max_minor)
        return CreateHold(request_id, HoldCommand(payer, payee, currency, amount_minor, self._due_ms()))

    def _recent_hold(self) -> Hold | None:
        holds = list(itertools.islice(reversed(self.model.holds.values()), recent_items))
        return self.rng.choice(holds).hold if holds else None

    def capture_hold(self, request_id: str) -> CaptureHold | None:
        hold = self._recent_hold()
        if hold is None:
            return None
        amount_minor = self.rng.choice([0, self._amount(hold.amount_minor), hold.amount_minor + 1])
        return CaptureHold(request_id, hold.hold_id, amount_minor, hold.amount_minor)

    def void_hold(self, request_id: str) -> VoidHold | None:
        hold = self._recent_hold()
        return VoidHold(request_id, hold.hold_id) if hold is not None else None

    def create_escrow(self, request_id: str) -> CreateEscrow:
        currency = self._currency()
        amount_minor = self._amount(2 * leg_max_minor)
        command = EscrowCommand(
            buyer_account_id=self._account(currency, AccountKind.CUSTOMER),
            seller_account_id=self._account(currency, AccountKind.MERCHANT),
            escrow_account_id=self._account(currency, AccountKind.ESCROW),
            currency=currency,
            amount_minor=amount_minor,
            fee_account_id=self._account(currency, AccountKind.FEES),
            fee_minor=self.rng.randint(0, amount_minor // 10),
            release_time_ms=self._due_ms(),
        )
        return CreateEscrow(request_id, command)

    def _recent_escrow(self) -> Escrow | None:
        facts = self._recent_escrow_facts()
        return facts.escrow if facts is not None else None

    def _recent_escrow_facts(self) -> EscrowFacts | None:
        escrows = list(itertools.islice(reversed(self.model.escrows.values()), recent_items))
        return self.rng.choice(escrows) if escrows else None

    def release_escrow(self, request_id: str) -> ReleaseEscrow | None:
        escrow = self._recent_escrow()
        return ReleaseEscrow(request_id, escrow.escrow_id) if escrow is not None else None

    def refund_escrow(self, request_id: str) -> RefundEscrow | None:
        """Part of an escrow back to the buyer, or sometimes what the acknowledged refunds left of it (a
        dispute ends so: refunded; or refused, when a refund whose answer was lost took some already)."""
        facts = self._recent_escrow_facts()
        if facts is None:
            return None
        escrow = facts.escrow
        left_minor = escrow.amount_minor - facts.refunded_minor
        amount_minor = self._amount(escrow.amount_minor // 2)
        if left_minor > 0 and self.rng.random() < refund_rest_probability:
            amount_minor = left_minor
        return RefundEscrow(request_id, escrow.escrow_id, amount_minor)

    def dispute_escrow(self, request_id: str) -> DisputeEscrow | None:
        escrow = self._recent_escrow()
        return DisputeEscrow(request_id, escrow.escrow_id) if escrow is not None else None

    def settle_dispute(self, request_id: str) -> RefundEscrow | None:
        """What the acknowledged refunds left of the oldest open dispute back to the buyer: disputes end,
        so that what is open stays bounded over a long run (refused, when a refund whose answer was lost
        took some already; its client sends it again until it knows, and the next one asks for less)."""
        facts = next((self.model.escrows[key] for key in self.model.disputed), None)
        if facts is None:
            return None
        left_minor = facts.escrow.amount_minor - facts.refunded_minor
        return RefundEscrow(request_id, facts.escrow.escrow_id, left_minor) if left_minor > 0 else None

    def refund_leg(self, request_id: str) -> RefundLeg | None:
        paid = self.model.recent_transfers
        if not paid:
            return None
        pay = self.rng.choice(paid)
        index = self.rng.randrange(len(pay.legs))
        leg = pay.legs[index]
        amount_minor = self.rng.choice([self._amount(leg.amount_minor // 2), leg.amount_minor + 1])
        return RefundLeg(
            request_id, transfer_id_of(self.model.tenant, pay.request_id), index, leg, amount_minor
        )


# Clients


class Client:
    def __init__(self, cluster: Cluster, model: Model, workload: Workload) -> None:
        self.cluster = cluster
        self.model = model
        self.workload = workload
        # Its requests (other than payments) whose outcome is still unknown: sent again before each new
        # one, as a client does until it knows (and long before their request ids expire).
        self.pending: list[Attempt] = []

    async def run(self, tickets: Iterator[int], faults: dict[int, tuple[FaultKind, int]]) -> None:
        for index in tickets:
            if self.model.problems:
                return
            fault = faults.get(index)
            if fault is not None:
                await inject(self.cluster, *fault)
            if index % audit_every_ops == 0:
                await self.audit_settled()
            await self.send_pending()
            attempt = self.model.begin(self.workload.next(f"r{index}"))
            await self.execute(attempt)
            self.model.done(attempt)
            if attempt.op.request_id in self.model.unresolved:
                self.pending.append(attempt)

    async def send_pending(self) -> None:
        for attempt in list(self.pending):
            await self.send(attempt)
            if attempt.outcome is not Outcome.UNKNOWN:
                self.pending.remove(attempt)
                self.model.resolved(attempt)

    async def audit_settled(self) -> None:
        """Audit what settled (one pass at a time); a pass cut short by a fault carries on next time."""
        if self.model.auditing:
            return
        self.model.auditing = True
        try:
            await self.cluster.call(functools.partial(audit_settled, model=self.model))
        except (ApiError, StorageError, Lost) as error:
            if isinstance(error, Hung):
                self.model.problem(f"the audit of what settled: {error}")
        finally:
            self.model.auditing = False

    async def execute(self, attempt: Attempt) -> None:
        """Send, sometimes twice at once (a retry racing the first attempt); retry while the outcome is
        unknown (bounded); sometimes replay an acknowledged request."""
        if self.workload.rng.random() < racing_retry_probability:
            await asyncio.gather(self.send(attempt), self.send(attempt))
        else:
            await self.send(attempt)
        for _ in range(attempts_max):
            if attempt.outcome is not Outcome.UNKNOWN or self.model.problems:
                break
            await asyncio.sleep(retry_backoff_s)
            await self.send(attempt)
        if attempt.outcome is Outcome.ACKED and self.workload.rng.random() < replay_after_ack_probability:
            await self.send(attempt)

    async def send(self, attempt: Attempt) -> None:
        tenant = self.model.tenant
        try:
            answer = await self.cluster.call(lambda ledger: attempt.op.send(ledger, tenant, attempt.key))
        except ApiError as error:
            if error.code in OUTCOME_UNKNOWN_CODES:
                self.model.unknown(attempt, error.code.name)
            else:
                self.model.rejected(attempt, error)
        except (StorageError, Lost) as error:
            self.model.unknown(attempt, type(error).__name__)
            if isinstance(error, Hung):
                self.model.problem(f"{attempt.op}: {error}")
        except Exception as error:  # a bug: the service would answer INTERNAL, the outcome unknown
            self.model.problem(f"{attempt.op}: raised {error!r}")
        else:
            self.model.answered(attempt, answer)


# The audit: what settled as the run goes, the rest at the end


class Unsettled(Exception):
    """An item has not settled yet (a transfer's credits in flight, a hold still held, a request acting on
    it): it is audited again at `at_ms` (a hold when it expires, an escrow when it is released), or
    `audit_retry_s` later."""

    def __init__(self, key: str, at_ms: int | None = None) -> None:
        super().__init__(key)
        self.at_ms = at_ms


@dataclasses.dataclass
class Audit:
    """Audits items on a ledger into the model's books. During the run (`final` False) an item that has
    not settled raises Unsettled having changed nothing; at the end everything has settled, and what
    has not is a problem."""

    ledger: Ledger
    model: Model
    final: bool

    @property
    def books(self) -> Books:
        return self.model.books

    async def transfer(self, transfer_id: str) -> Transfer | None:
        found = await _found(self.ledger.get_transfer(self.model.tenant, transfer_id))
        if not self.final and found is not None and found.state is TransferState.DEBITED:
            raise Unsettled(transfer_id)
        return found

    def expect(self, found: Transfer | None, transfer_id: str, legs: tuple[Leg, ...], what: str) -> None:
        """A transfer that must exist, completed, with these legs; its legs move money either way."""
        if found is None or found.legs != legs or found.state is not TransferState.COMPLETED:
            self.model.problem(f"{what}: transfer {transfer_id} is {found}, expected legs {legs}")
        self.books.move(legs)

    async def item(self, kind: AuditKind, key: str) -> None:
        """Audit one item of the model and forget it (Unsettled: it stays)."""
        model = self.model
        if kind is AuditKind.PAYMENT:
            await self.payment(model.payments[key])
            del model.payments[key]
        elif kind is AuditKind.REFUND:
            await self.refund(*model.refunds[key])
            del model.refunds[key]
        else:
            items: dict[str, HoldFacts] | dict[str, EscrowFacts]
            items = model.holds if kind is AuditKind.HOLD else model.escrows
            recent = not model.workload_done and key in itertools.islice(reversed(items), recent_items)
            if model.named[key] > 0 or recent:
                raise Unsettled(key)
            if kind is AuditKind.HOLD:
                await self.hold(model.holds[key])
            else:
                await self.escrow(model.escrows[key])
            del items[key]
            self.model.disputed.pop(key, None)

    async def payment(self, sent: Sent) -> None:
        found = await self.transfer(transfer_id_of(self.model.tenant, sent.request_id))
        if found is None or found.state is TransferState.REJECTED:
            if sent.outcome is Outcome.ACKED:
                self.model.problem(f"{sent}: acknowledged, but the transfer is {found}")
            return
        if sent.outcome is Outcome.REJECTED:
            self.model.problem(f"{sent}: rejected ({sent.rejection}), but the transfer moved money")
        if found.legs != sent.pay_legs or found.state is not TransferState.COMPLETED:
            self.model.problem(f"{sent}: stored as {found}")
        self.books.move(found.legs)

    async def hold(self, facts: HoldFacts) -> None:
        hold = await self.ledger.get_hold(self.model.tenant, facts.hold.hold_id)
        if not self.final and hold.state is HoldState.HELD:
            raise Unsettled(hold.hold_id, hold.expire_time_ms + int(audit_lag_s * 1000))
        capture = None
        if hold.state is HoldState.CAPTURED:
            capture = await self.transfer(hold.capture_transfer_id)
        captured = (hold.state, hold.captured_minor) == (HoldState.CAPTURED, facts.captured_minor)
        if facts.captured_minor is not None and not captured:
            self.model.problem(f"hold captured ({facts.captured_minor}) when acknowledged, now {hold}")
        if facts.voided and hold.state is not HoldState.VOIDED:
            self.model.problem(f"hold voided when acknowledged, now {hold}")
        if hold.state is HoldState.HELD:
            self.books.held_minor[hold.account_id] += hold.amount_minor
        if hold.state is HoldState.CAPTURED:
            leg = Leg(hold.account_id, hold.payee_account_id, hold.captured_minor)
            self.expect(capture, hold.capture_transfer_id, (leg,), f"capture of {hold.hold_id}")

    async def escrow(self, facts: EscrowFacts) -> None:
        escrow = await self.ledger.get_escrow(self.model.tenant, facts.escrow.escrow_id)
        if not self.final and escrow.state is EscrowState.HELD:
            raise Unsettled(escrow.escrow_id, escrow.release_time_ms + int(audit_lag_s * 1000))
        if not self.final and escrow.state is EscrowState.DISPUTED:
            raise Unsettled(escrow.escrow_id)
        for wrong in escrow_problems(facts, escrow):
            self.model.problem(f"{escrow}: {wrong}")
        self.books.move(escrow_legs(escrow))

    async def refund(self, op: RefundLeg, refund: Refund) -> None:
        found = await self.transfer(refund.refund_transfer_id)
        self.expect(found, refund.refund_transfer_id, (op.back,), f"{op}")
        leg_key = (op.transfer_id, op.leg_index)
        self.books.refunded_minor[leg_key] += op.amount_minor
        if self.books.refunded_minor[leg_key] > op.leg.amount_minor:
            self.model.problem(f"refunds of leg {op.leg_index} of {op.transfer_id} exceed {op.leg}")


async def _found(call: Awaitable[A]) -> A | None:
    try:
        return await call
    except ApiError as error:
        if error.code is ErrorCode.NOT_FOUND:
            return None
        raise


async def audit_settled(ledger: Ledger, model: Model) -> None:
    """Audit what had time to settle, oldest first, at most `audit_items_per_pass_max` items: one that
    has not settled, or whose reads met storage trouble, comes back later; a kill ends the pass (the
    item stays first: the heap only changes once an item is done with)."""
    audit = Audit(ledger, model, final=False)
    for _ in range(audit_items_per_pass_max):
        now_ms = model.clock.wall_ms()
        if not model.audits or model.audits[0][0] > now_ms:
            return
        _, _, kind, key = model.audits[0]
        later_ms = now_ms + int(audit_retry_s * 1000)
        try:
            await audit.item(kind, key)
            model.audited[kind.value] += 1
        except Unsettled as unsettled:
            model.audit_later(kind, key, max(later_ms, unsettled.at_ms or later_ms))
        except (ApiError, StorageError) as error:
            if isinstance(error, ApiError) and error.code is ErrorCode.NOT_FOUND:
                model.problem(f"the audit of {kind.value} {key}: {error!r}")
            else:
                model.audit_later(kind, key, later_ms)
        heapq.heappop(model.audits)


async def audit_payments(audit: Audit, world: World) -> None:
    for sent in (*audit.model.payments.values(), *audit.model.unknown_payments.values()):
        await audit.payment(sent)


async def audit_holds(audit: Audit, world: World) -> None:
    for facts in audit.model.holds.values():
        await audit.hold(facts)


async def audit_escrows(audit: Audit, world: World) -> None:
    for facts in audit.model.escrows.values():
        await audit.escrow(facts)


async def audit_refunds(audit: Audit, world: World) -> None:
    for op, refund in audit.model.refunds.values():
        await audit.refund(op, refund)


def escrow_problems(facts: EscrowFacts, escrow: Escrow) -> list[str]:
    problems = []
    if facts.released and escrow.state is not EscrowState.RELEASED:
        problems.append("released when acknowledged")
    if facts.disputed and escrow.state not in (EscrowState.DISPUTED, EscrowState.REFUNDED):
        problems.append("disputed when acknowledged")
    if escrow.refunded_minor != facts.refunded_minor:
        problems.append(f"refunds acknowledged add up to {facts.refunded_minor}")
    if (escrow.state is EscrowState.REFUNDED) != (escrow.refunded_minor == escrow.amount_minor):
        problems.append("refunded state and amount disagree")
    return problems


def escrow_legs(escrow: Escrow) -> tuple[Leg, ...]:
    """Money an escrow moved: paid in, refunded, and on release paid out (the fee first)."""
    buyer, holder = escrow.buyer_account_id, escrow.escrow_account_id
    legs = [Leg(buyer, holder, escrow.amount_minor), Leg(holder, buyer, escrow.refunded_minor)]
    if escrow.state is EscrowState.RELEASED:
        left_minor = escrow.amount_minor - escrow.refunded_minor
        fee_minor = min(escrow.fee_minor, left_minor)
        legs += [
            Leg(holder, escrow.seller_account_id, left_minor - fee_minor),
            Leg(holder, escrow.fee_account_id, fee_minor),
        ]
    return tuple(legs)


async def audit_accounts(audit: Audit, world: World) -> None:
    books, model = audit.books, audit.model
    for spec in world.accounts:
        view = await audit.ledger.get_account(world.tenant, spec.account_id)
        balance = view.balance
        expected = (books.ledger_minor[spec.account_id], books.held_minor[spec.account_id])
        if (balance.ledger_minor, balance.held_minor) != expected:
            model.problem(f"{spec.account_id}: (ledger, held) = {balance}, the model says {expected}")
        if not spec.allow_negative and balance.available_minor < 0:
            model.problem(f"{spec.account_id}: available {balance.available_minor} < 0")
        await audit_journal(audit, spec.account_id)


async def audit_journal(audit: Audit, account_id: str) -> None:
    """No entry of a transfer leg is in an account's journal twice: every page of it."""
    seen: Counter[tuple[str, int, str]] = Counter()
    after: int | None = None
    for _ in range(entries_pages_max):
        query = EntryQuery(account_id, None, None, after, entries_page_max)
        entries, after = await audit.ledger.list_entries(audit.model.tenant, query)
        seen.update((e.transfer_id, e.leg_index, e.kind.value) for e in entries)
        if after is None:
            break
    else:
        audit.model.problem(f"{account_id}: journal longer than {entries_pages_max} pages, not all read")
    for entry, count in seen.items():
        if count > 1:
            audit.model.problem(f"{account_id}: journal entry {entry} is there {count} times")


# The run


@dataclasses.dataclass(frozen=True)
class Result:
    seed: int
    ops: int
    backend: str
    # Requests the clients made (fewer than `ops` when a problem stopped the run).
    requests: int
    elapsed_s: float
    trace_hash: str
    stats: tuple[str, ...]
    report: ReconcileReport | None
    problems: tuple[str, ...]

    def describe(self) -> str:
        rate = self.requests / self.elapsed_s if self.elapsed_s else 0.0
        lines = [
            f"simulation on {self.backend}: seed={self.seed} trace={self.trace_hash} ops={self.ops} "
            f"({self.requests} sent) in {self.elapsed_s:.1f} s ({rate:.0f} ops/s)"
        ]
        lines += [f"  {line}" for line in self.stats]
        if self.report is not None:
            lines.append(f"  reconcile: clean={self.report.clean} in flight={self.report.in_flight_minor}")
        if self.problems:
            lines.insert(0, f"SIMULATION FAILED seed={self.seed}")
            lines += [f"  - {problem}" for problem in self.problems[:problems_shown_max]]
            lines.append(f"  replay: JUBAO_SIM_SEED={self.seed} JUBAO_SIM_OPS={self.ops} make simulate")
        return "\n".join(lines)


async def simulate(
    backend: StorageBackend,
    faults: FaultPlan,
    settings: PaymentsSettings,
    tenant: str,
    *,
    seed: int,
    ops: int,
    clock: Clock,
    ids: IdSource,
    wait_out_late: bool = False,
) -> Result:
    started_s, clock_started_s = time.perf_counter(), clock.monotonic_s()
    world, model = World.build(tenant), Model(tenant, clock, wait_out_late=wait_out_late)
    settings = settings.model_copy(update={"wal_ttl_s": wal_ttl_s, "request_ttl_s": request_ttl_s})
    cluster = Cluster(backend, faults, settings, model, ids)
    crowd = [
        Client(cluster, model, Workload(world, model, random.Random(f"{seed}/{n}"))) for n in range(clients)
    ]
    report: ReconcileReport | None = None
    with processes_tracked():
        try:
            await open_world(cluster, world, model, crowd[0])
            tickets, faults_before = iter(range(ops)), fault_schedule(seed, ops)
            await asyncio.gather(*(client.run(tickets, faults_before) for client in crowd))
            if not model.problems:
                report = await settle(cluster, world, model, crowd[0])
                await audit(cluster.process.ledger, world, model, report)
        except Exception as error:  # reported with the seed like any other problem
            model.problem(f"the simulation stopped: {error!r}")
        finally:
            await cluster.process.kill()
    elapsed_s = time.perf_counter() - started_s
    stats = (
        f"requests: {counted(model.outcomes())}",
        f"answers that left the outcome unknown: {counted(model.unknown_answers)}",
        f"faults: {counted(cluster.injected)}",
        f"audited as the run went: {counted(model.audited)}",
        f"time on the run's clock: {clock.monotonic_s() - clock_started_s:.0f} s; peak RSS of the process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB",
    )
    if report is not None:
        model.note(f"reconciled {report.clean} {[dataclasses.astuple(total) for total in report.currencies]}")
    trace_hash = model.trace_hash()
    requests = model.requests
    return Result(
        seed, ops, backend.name, requests, elapsed_s, trace_hash, stats, report, tuple(model.problems)
    )


def counted(counts: Counter[str]) -> str:
    return " ".join(f"{name}={count}" for name, count in sorted(counts.items())) or "none"


async def open_world(cluster: Cluster, world: World, model: Model, opener: Client) -> None:
    """Open every account and fund the customers from their currency's settlement account."""
    for spec in world.accounts:
        await cluster.call(functools.partial(open_account, tenant=world.tenant, spec=spec))
    for currency in currencies:
        bank = world.ids(currency, AccountKind.SETTLEMENT)[0]
        for customer in world.ids(currency, AccountKind.CUSTOMER):
            pay = Pay(f"fund-{customer}", currency, (Leg(bank, customer, opening_minor),))
            attempt = model.begin(pay)
            await opener.execute(attempt)
            model.done(attempt)


async def open_account(ledger: Ledger, tenant: str, spec: AccountSpec) -> AccountView:
    policy = AccountPolicy(allow_negative=spec.allow_negative)
    command = OpenAccountCommand(spec.account_id, spec.currency, spec.kind, policy, spec.account_id)
    return await ledger.open_account(tenant, command, Idempotency(f"open-{spec.account_id}", "open"))


async def settle(cluster: Cluster, world: World, model: Model, client: Client) -> ReconcileReport:
    """Faults off, one more restart, unknown outcomes resolved, every shard recovered, due items swept
    (and audited as they close), deliveries landed: then the reconciliation report."""
    cluster.calm()
    await cluster.restart()
    for attempt in list(model.unresolved.values()):
        await client.execute(attempt)
        model.resolved(attempt)
    await cluster.call(functools.partial(recover_every_shard, tenant=world.tenant))
    model.workload_done = True
    until_ms = model.latest_due_ms + int(sweep_margin_s * 1000)
    for _ in range(settle_audits_max):
        left_ms = until_ms - model.clock.wall_ms()
        if left_ms <= 0:
            break
        await asyncio.sleep(min(left_ms / 1000, audit_retry_s))
        await client.audit_settled()
    report = await reconcile(cluster.backend, model.tenant, model.clock)
    for _ in range(settle_polls_max):
        if report.in_flight_minor == 0 and not report.moving:
            break
        await asyncio.sleep(settle_poll_s)
        report = await reconcile(cluster.backend, model.tenant, model.clock)
    return report


async def recover_every_shard(ledger: Ledger, tenant: str) -> None:
    """Acquire every shard, waiting out the leases the killed process still held: each recovers its
    records and delivers its outbox again."""
    for shard in range(await ledger.shards.shard_count(tenant)):
        await ledger.shards.actor(tenant, shard)


async def audit(ledger: Ledger, world: World, model: Model, report: ReconcileReport) -> None:
    for discrepancy in report.discrepancies:
        model.problem(f"reconcile: {discrepancy}")
    if report.in_flight_minor:
        model.problem(f"reconcile: {report.in_flight_minor} still in flight after settling")
    audit = Audit(ledger, model, final=True)
    for step in (audit_payments, audit_holds, audit_escrows, audit_refunds, audit_accounts):
        try:
            await step(audit, world)
        except (ApiError, StorageError) as error:
            model.problem(f"{step.__name__} failed: {error!r}")


def seed_and_ops(environ: Mapping[str, str], ops_variable: str = OPS_VARIABLE) -> tuple[int, int]:
    """The seed (random unless `JUBAO_SIM_SEED`) and the number of operations (`ops_variable`)."""
    seed = int(environ.get(SEED_VARIABLE) or random.randrange(2**32))
    return seed, int(environ.get(ops_variable) or ops_default)


def run_on_simulated_time(seed: int, ops: int, settings: PaymentsSettings) -> Result:
    """The simulation on the memory backend, on simulated time: the same seed, the same trace."""
    clock = SimClock()
    faults = FaultPlan(delays=random.Random(f"{seed}/delays"))

    # Half the seeds store claims with the commits they guard (as SQLite does), half claim first (as on
    # Cassandra).
    guarded_writes = random.Random(f"{seed}/guards").random() < 0.5

    async def main() -> Result:
        backend = MemoryBackend(clock, faults=faults, guarded_writes=guarded_writes)
        try:
            await migrate(backend)
            ids = SeededIds(f"{seed}/ids")
            return await simulate(
                backend, faults, settings, "sim", seed=seed, ops=ops, clock=clock, ids=ids, wait_out_late=True
            )
        finally:
            await backend.close()

    return run_simulated(main(), clock)
