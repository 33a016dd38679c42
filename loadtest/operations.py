"""What a worker sends and what it makes of the answers: requests of the scenario's mix, their follow-ups
(a hold is captured, an escrow released or refunded, `settlement.after_s` after its acknowledgement), and
the tally of every acknowledged movement of money."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from jubao.client import AsyncClient
from jubao.fundta.v1 import fundta_pb2
from jubao.meta.v1 import meta_pb2
from jubao.payments.v1 import payments_pb2 as pb

from loadtest import bounds
from loadtest.accounts import AccountNames, as_pb
from loadtest.outcomes import UNKNOWN_OUTCOMES, status_code
from loadtest.scenario import Scenario
from loadtest.tally import Leg, OpenEscrow, OpenHold, TallyBuilder

# Holds and escrows of a run never expire or release by themselves while it runs.
OPEN_ITEM_LIFETIME_S: Final = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Op:
    """One request to send; a follow-up carries the hold or escrow it settles."""

    kind: str
    request: Message
    hold: OpenHold | None = None
    escrow: OpenEscrow | None = None

    @property
    def reads_only(self) -> bool:
        return self.kind in ("statement", "ping")

    @property
    def source(self) -> str:
        """The request, for messages: its kind and request id (a batch: its first item's and its size)."""
        if isinstance(self.request, pb.BatchCreateTransfersRequest) and self.request.requests:
            first = self.request.requests[0].request_id
            return f"batch of {len(self.request.requests)} from {first}"
        request_id = getattr(self.request, "request_id", "")
        return f"{self.kind} {request_id}" if request_id else self.kind


RequestT = TypeVar("RequestT", bound=Message)
# The request's own type is checked by the table's key.
Sender = Callable[[AsyncClient, Any, float], Awaitable[Message]]

_SENDERS: Final[dict[type[Message], Sender]] = {
    meta_pb2.PingRequest: lambda c, r, t: c.meta.Ping(r, timeout=t),
    pb.CreateTransferRequest: lambda c, r, t: c.payments.CreateTransfer(r, timeout=t),
    pb.BatchCreateTransfersRequest: lambda c, r, t: c.payments.BatchCreateTransfers(r, timeout=t),
    pb.CreateHoldRequest: lambda c, r, t: c.payments.CreateHold(r, timeout=t),
    pb.CaptureHoldRequest: lambda c, r, t: c.payments.CaptureHold(r, timeout=t),
    pb.CreateEscrowRequest: lambda c, r, t: c.payments.CreateEscrow(r, timeout=t),
    pb.ReleaseEscrowRequest: lambda c, r, t: c.payments.ReleaseEscrow(r, timeout=t),
    pb.RefundEscrowRequest: lambda c, r, t: c.payments.RefundEscrow(r, timeout=t),
    pb.ListEntriesRequest: lambda c, r, t: c.payments.ListEntries(r, timeout=t),
    fundta_pb2.CreateOrderRequest: lambda c, r, t: c.trading.CreateOrder(r, timeout=t),
}


def send(client: AsyncClient, op: Op, timeout_s: float) -> Awaitable[Message]:
    return _SENDERS[type(op.request)](client, op.request, timeout_s)


def _timestamp_in(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(time.time_ns() // 1_000_000 + int(seconds * 1000))
    return stamp


class Workload:
    """A worker's requests: new arrivals drawn from the mix, follow-ups when due, and the tally."""

    def __init__(self, scenario: Scenario, names: AccountNames, run_id: str, worker: int) -> None:
        self.scenario = scenario
        self.names = names
        self.tally = TallyBuilder()
        self._rng = random.Random(f"{run_id}-{worker}")
        self._ids = itertools.count()
        self._id_prefix = f"{run_id}-w{worker}-"
        self._kinds = [kind for kind, _ in scenario.mix]
        self._weights = [weight for _, weight in scenario.mix]
        self._follow_ups: list[tuple[float, int, Op]] = []

    def arrival(self) -> Op:
        kind = self._rng.choices(self._kinds, self._weights)[0]
        return self._BUILDERS[kind](self)

    def next_follow_up_s(self) -> float | None:
        """When the earliest follow-up is due (monotonic seconds), if any."""
        return self._follow_ups[0][0] if self._follow_ups else None

    def pop_follow_up(self) -> tuple[float, Op]:
        due_s, _, op = heapq.heappop(self._follow_ups)
        return due_s, op

    def acknowledge(self, op: Op, response: Message) -> Op | None:
        """Tally an answer; returns what is still to resolve (the items of a batch that timed out)."""
        if isinstance(response, pb.BatchCreateTransfersResponse):
            return self._batch_answered(op, response)
        if isinstance(response, pb.CreateTransferResponse):
            self._moved(response.transfer.transfer_id, _typed(op.request, pb.CreateTransferRequest))
        elif isinstance(response, pb.CreateHoldResponse):
            self._hold_answered(response.hold)
        elif isinstance(response, pb.CaptureHoldResponse):
            self._capture_answered(op, response.hold)
        elif isinstance(response, pb.CreateEscrowResponse):
            self._escrow_answered(op, response.escrow)
        elif op.escrow is not None:
            self._escrow_settled(op, op.escrow)
        return None

    def refused(self) -> None:
        self.tally.refused += 1

    # Requests

    def _request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    def _amount(self) -> int:
        return self._rng.randint(self.scenario.amount_min_minor, self.scenario.amount_max_minor)

    def _payer(self) -> str:
        return self.names.customer(self._rng.randrange(self.names.accounts.customers))

    def _payee(self) -> str:
        accounts = self.names.accounts
        if accounts.hot_merchants and self._rng.random() < accounts.hot_share:
            return self.names.hot_merchant(self._rng.randrange(accounts.hot_merchants))
        return self.names.merchant(self._rng.randrange(accounts.merchants))

    def _transfer_request(self) -> pb.CreateTransferRequest:
        leg = Leg(self._payer(), self._payee(), self._amount())
        return pb.CreateTransferRequest(
            request_id=self._request_id(),
            currency_code=self.names.accounts.currency,
            legs=[as_pb(leg)],
            memo=self.scenario.name,
        )

    def _transfer(self) -> Op:
        return Op("transfer", self._transfer_request())

    def _batch(self) -> Op:
        requests = [self._transfer_request() for _ in range(self.scenario.batch_size)]
        return Op("batch", pb.BatchCreateTransfersRequest(requests=requests))

    def _hold(self) -> Op:
        request = pb.CreateHoldRequest(
            request_id=self._request_id(),
            account_id=self._payer(),
            payee_account_id=self._payee(),
            currency_code=self.names.accounts.currency,
            amount_minor=self._amount(),
            expire_time=_timestamp_in(OPEN_ITEM_LIFETIME_S),
        )
        return Op("hold", request)

    def _escrow(self) -> Op:
        fee_minor = self.scenario.settlement.escrow_fee_minor
        request = pb.CreateEscrowRequest(
            request_id=self._request_id(),
            buyer_account_id=self._payer(),
            seller_account_id=self._payee(),
            escrow_account_id=self.names.escrow,
            currency_code=self.names.accounts.currency,
            amount_minor=self._amount(),
            fee_account_id=self.names.fees if fee_minor else "",
            fee_minor=fee_minor,
            release_time=_timestamp_in(OPEN_ITEM_LIFETIME_S),
        )
        return Op("escrow", request)

    def _statement(self) -> Op:
        request = pb.ListEntriesRequest(account_id=self._payer(), page_size=self.scenario.statement_page_size)
        return Op("statement", request)

    def _ping(self) -> Op:
        return Op("ping", meta_pb2.PingRequest())

    def _fundta_purchase(self) -> Op:
        """A purchase of the run's fund by one of its investors (no money moves in the ledger until the
        day-close, which the load does not run)."""
        request = fundta_pb2.CreateOrderRequest(
            fund_code=self.names.fund_code,
            trading_account_id=self.names.investor(self._rng.randrange(bounds.fundta_investors)),
            kind=fundta_pb2.ORDER_KIND_PURCHASE,
            amount_minor=self._amount(),
            request_id=self._request_id(),
        )
        return Op("fundta_purchase", request)

    _BUILDERS: Final[dict[str, Callable[[Workload], Op]]] = {
        "transfer": _transfer,
        "batch": _batch,
        "hold": _hold,
        "escrow": _escrow,
        "statement": _statement,
        "ping": _ping,
        "fundta_purchase": _fundta_purchase,
    }

    # Answers

    def _moved(self, transfer_id: str, request: pb.CreateTransferRequest) -> None:
        legs = (Leg(leg.debit_account_id, leg.credit_account_id, leg.amount_minor) for leg in request.legs)
        self.tally.moved(transfer_id, legs, request.request_id)

    def _batch_answered(self, op: Op, response: pb.BatchCreateTransfersResponse) -> Op | None:
        batch = _typed(op.request, pb.BatchCreateTransfersRequest)
        unknown = []
        for request, result in zip(batch.requests, response.results, strict=True):
            if result.WhichOneof("result") == "transfer":
                self._moved(result.transfer.transfer_id, request)
            elif status_code(result.error.code) in UNKNOWN_OUTCOMES:
                unknown.append(request)
            else:
                self.refused()
        return Op("batch", pb.BatchCreateTransfersRequest(requests=unknown)) if unknown else None

    def _schedule(self, op: Op) -> None:
        if len(self._follow_ups) >= bounds.follow_ups_per_worker_max:
            return
        due_s = time.monotonic() + self.scenario.settlement.after_s
        heapq.heappush(self._follow_ups, (due_s, next(self._ids), op))

    def _hold_answered(self, hold: pb.Hold) -> None:
        if hold.state != pb.HOLD_STATE_HELD:
            self.refused()
            return
        opened = OpenHold(hold.hold_id, hold.account_id, hold.payee_account_id, hold.amount_minor)
        self.tally.open_holds[hold.hold_id] = opened
        request = pb.CaptureHoldRequest(request_id=self._request_id(), hold_id=hold.hold_id)
        self._schedule(Op("capture", request, hold=opened))

    def _capture_answered(self, op: Op, hold: pb.Hold) -> None:
        opened = self.tally.open_holds.pop(hold.hold_id, None)
        if opened is not None and hold.state == pb.HOLD_STATE_CAPTURED:
            leg = Leg(opened.account_id, opened.payee_account_id, opened.amount_minor)
            self.tally.moved(hold.capture_transfer_id, (leg,), op.source)

    def _escrow_answered(self, op: Op, escrow: pb.Escrow) -> None:
        request = _typed(op.request, pb.CreateEscrowRequest)
        opened = OpenEscrow(
            escrow.escrow_id,
            request.buyer_account_id,
            request.seller_account_id,
            request.escrow_account_id,
            request.fee_account_id,
            request.amount_minor,
            request.fee_minor,
        )
        self.tally.moved(
            "", (Leg(opened.buyer_account_id, opened.escrow_account_id, opened.amount_minor),), op.source
        )
        if self._rng.random() < self.scenario.settlement.refund_share:
            refund = pb.RefundEscrowRequest(request_id=self._request_id(), escrow_id=escrow.escrow_id)
            self._schedule(Op("refund", refund, escrow=opened))
        else:
            release = pb.ReleaseEscrowRequest(request_id=self._request_id(), escrow_id=escrow.escrow_id)
            self._schedule(Op("release", release, escrow=opened))

    def _escrow_settled(self, op: Op, escrow: OpenEscrow) -> None:
        legs: tuple[Leg, ...]
        if op.kind == "refund":
            legs = (Leg(escrow.escrow_account_id, escrow.buyer_account_id, escrow.amount_minor),)
        else:
            legs = (
                Leg(
                    escrow.escrow_account_id, escrow.seller_account_id, escrow.amount_minor - escrow.fee_minor
                ),
                Leg(escrow.escrow_account_id, escrow.fee_account_id, escrow.fee_minor),
            )
        self.tally.moved("", legs, op.source)


def _typed(request: Message, kind: type[RequestT]) -> RequestT:
    if not isinstance(request, kind):
        raise TypeError(f"expected a {kind.__name__}, got a {type(request).__name__}")
    return request
