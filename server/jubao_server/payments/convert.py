"""Conversions between the jubao.payments.v1 messages and the payments domain.

Requests are validated completely before anything is converted: one INVALID_ARGUMENT lists every bad
field of the request with its exact path (`legs[1].amount_minor`). A bad or unknown currency makes the
reason UNKNOWN_CURRENCY instead of INVALID_ARGUMENT.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from jubao.payments.v1 import payments_pb2 as pb
from jubao.reasons import FieldViolation, Reason

from jubao_server import limits
from jubao_server.errors import ApiError, echo, invalid, invalid_fields
from jubao_server.invariants import ensure
from jubao_server.payments import currencies
from jubao_server.payments.api import BalanceAt, EntryQuery, EscrowCommand, HoldCommand, TransferCommand
from jubao_server.payments.commands import error_of
from jubao_server.payments.events import Event, EventFilter, EventKind
from jubao_server.payments.model import (
    ACCOUNT_ID_PATTERN,
    AMOUNT_MAX_MINOR,
    CURRENCY_PATTERN,
    AccountChange,
    AccountKind,
    AccountPolicy,
    AccountView,
    Entry,
    EntryKind,
    Escrow,
    EscrowState,
    Failure,
    Hold,
    HoldState,
    Leg,
    OpenAccountCommand,
    Refund,
    Transfer,
    TransferState,
)
from jubao_server.payments.reconcile import ReconcileReport
from jubao_server.platform.idempotency import check_request_id
from jubao_server.platform.timestamps import time_ms, timestamp

UPDATABLE_PATHS = ("policy", "display_name")
# Accounts opened without an id get one derived from the request id, so every retry names the same one.
_GENERATED_ID_NAMESPACE = uuid.UUID("6f0c9a52-51d4-4c8e-9d0b-3c1f4e0a7b21")

_KIND_TO_PB = {
    AccountKind.CUSTOMER: pb.ACCOUNT_KIND_CUSTOMER,
    AccountKind.MERCHANT: pb.ACCOUNT_KIND_MERCHANT,
    AccountKind.ESCROW: pb.ACCOUNT_KIND_ESCROW,
    AccountKind.FEES: pb.ACCOUNT_KIND_FEES,
    AccountKind.SETTLEMENT: pb.ACCOUNT_KIND_SETTLEMENT,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_TRANSFER_STATE_TO_PB = {
    TransferState.DEBITED: pb.TRANSFER_STATE_DEBITED,
    TransferState.COMPLETED: pb.TRANSFER_STATE_COMPLETED,
    TransferState.REJECTED: pb.TRANSFER_STATE_REJECTED,
}
_ENTRY_KIND_TO_PB = {EntryKind.DEBIT: pb.ENTRY_KIND_DEBIT, EntryKind.CREDIT: pb.ENTRY_KIND_CREDIT}
_HOLD_STATE_TO_PB = {
    HoldState.HELD: pb.HOLD_STATE_HELD,
    HoldState.CAPTURED: pb.HOLD_STATE_CAPTURED,
    HoldState.VOIDED: pb.HOLD_STATE_VOIDED,
    HoldState.EXPIRED: pb.HOLD_STATE_EXPIRED,
    HoldState.REJECTED: pb.HOLD_STATE_REJECTED,
}
_ESCROW_STATE_TO_PB = {
    EscrowState.HELD: pb.ESCROW_STATE_HELD,
    EscrowState.DISPUTED: pb.ESCROW_STATE_DISPUTED,
    EscrowState.RELEASED: pb.ESCROW_STATE_RELEASED,
    EscrowState.REFUNDED: pb.ESCROW_STATE_REFUNDED,
}
_REQUIRED_TIME = "required: a time in the future"


# Requests to commands


def open_account_command(request: pb.OpenAccountRequest) -> OpenAccountCommand:
    account = request.account
    violations = request_id_violations(request.request_id, required=False)
    if account.account_id:
        violations += id_violations("account.account_id", account.account_id)
    violations += currency_violations("account.currency_code", account.currency_code)
    if account.kind not in _KIND_FROM_PB:
        violations.append(FieldViolation("account.kind", "CUSTOMER, MERCHANT, ESCROW, FEES or SETTLEMENT"))
    violations += name_violations("account.display_name", account.display_name)
    violations += policy_violations("account.policy", account.policy)
    raise_if_any(violations)
    return OpenAccountCommand(
        account_id=account.account_id or generated_account_id(request.request_id),
        currency=account.currency_code,
        kind=_KIND_FROM_PB[account.kind],
        policy=policy_from_pb(account.policy),
        display_name=account.display_name,
    )


def account_change(request: pb.UpdateAccountRequest) -> AccountChange:
    paths = list(request.update_mask.paths)
    violations = request_id_violations(request.request_id, required=False)
    violations += id_violations("account_id", request.account_id)
    violations += mask_violations(paths)
    if "policy" in paths:
        violations += policy_violations("policy", request.policy)
    if "display_name" in paths:
        violations += name_violations("display_name", request.display_name)
    raise_if_any(violations)
    return AccountChange(
        policy=policy_from_pb(request.policy) if "policy" in paths else None,
        display_name=request.display_name if "display_name" in paths else None,
    )


def transfer_command(request: pb.CreateTransferRequest) -> TransferCommand:
    violations = request_id_violations(request.request_id, required=True)
    violations += currency_violations("currency_code", request.currency_code)
    violations += legs_violations(request.legs)
    if len(request.memo) > limits.transfer_memo_length_max:
        violations.append(FieldViolation("memo", f"at most {limits.transfer_memo_length_max} characters"))
    raise_if_any(violations)
    return TransferCommand(
        currency=request.currency_code,
        legs=tuple(
            Leg(leg.debit_account_id, leg.credit_account_id, leg.amount_minor) for leg in request.legs
        ),
        memo=request.memo,
    )


def entry_query(request: pb.ListEntriesRequest, after_entry_seq: int | None, limit: int) -> EntryQuery:
    violations = id_violations("account_id", request.account_id)
    start_time_ms = time_ms(request, "start_time", violations)
    end_time_ms = time_ms(request, "end_time", violations)
    if start_time_ms is not None and end_time_ms is not None and end_time_ms < start_time_ms:
        violations.append(FieldViolation("end_time", "must not be before start_time"))
    raise_if_any(violations)
    return EntryQuery(request.account_id, start_time_ms, end_time_ms, after_entry_seq, limit)


def hold_command(request: pb.CreateHoldRequest) -> HoldCommand:
    """The hold a request asks for. Whether its expire_time lies ahead is checked by the ledger, with
    its clock, once it knows the request is not a retry of one it applied (`commands.Ahead`)."""
    violations = request_id_violations(request.request_id, required=True)
    violations += id_violations("account_id", request.account_id)
    violations += id_violations("payee_account_id", request.payee_account_id)
    violations += differs_violations(
        "payee_account_id", request.payee_account_id, {"account_id": request.account_id}
    )
    violations += currency_violations("currency_code", request.currency_code)
    violations += positive_violations("amount_minor", request.amount_minor)
    expire_time_ms = time_ms(request, "expire_time", violations, required=_REQUIRED_TIME)
    raise_if_any(violations)
    ensure(expire_time_ms is not None, "a valid hold has an expire_time")
    return HoldCommand(
        account_id=request.account_id,
        payee_account_id=request.payee_account_id,
        currency=request.currency_code,
        amount_minor=request.amount_minor,
        expire_time_ms=expire_time_ms or 0,
    )


def escrow_command(request: pb.CreateEscrowRequest) -> EscrowCommand:
    """The escrow a request asks for; its release_time is checked like a hold's expire_time."""
    violations = request_id_violations(request.request_id, required=True)
    violations += escrow_parties_violations(request)
    violations += currency_violations("currency_code", request.currency_code)
    violations += positive_violations("amount_minor", request.amount_minor)
    violations += fee_violations(request)
    release_time_ms = time_ms(request, "release_time", violations, required=_REQUIRED_TIME)
    raise_if_any(violations)
    ensure(release_time_ms is not None, "a valid escrow has a release_time")
    return EscrowCommand(
        buyer_account_id=request.buyer_account_id,
        seller_account_id=request.seller_account_id,
        escrow_account_id=request.escrow_account_id,
        currency=request.currency_code,
        amount_minor=request.amount_minor,
        fee_account_id=request.fee_account_id,
        fee_minor=request.fee_minor,
        release_time_ms=release_time_ms or 0,
    )


def checked_item_id(request_id: str, id_field: str, item_id: str, amount_minor: int = 0) -> str:
    """The id of the hold or escrow a mutation names, after checking the request id and the amount to
    move (0 meaning "all"), or INVALID_ARGUMENT."""
    violations = request_id_violations(request_id, required=True)
    violations += id_violations(id_field, item_id)
    violations += portion_violations("amount_minor", amount_minor)
    raise_if_any(violations)
    return item_id


def batch_items(request: pb.BatchCreateTransfersRequest) -> list[TransferCommand | ApiError]:
    """Each request of a batch as a command, or the INVALID_ARGUMENT it gets on its own. The batch
    itself must hold 1 to `batch_transfers_max` requests, and no request_id twice: such a batch is
    refused whole (INVALID_ARGUMENT naming each repeat and the request it repeats), nothing applied."""
    if not 1 <= len(request.requests) <= limits.batch_transfers_max:
        raise invalid("requests", f"1 to {limits.batch_transfers_max} transfers")
    raise_if_any(repeated_request_id_violations(request.requests))
    return [batch_item(item) for item in request.requests]


def repeated_request_id_violations(requests: Sequence[pb.CreateTransferRequest]) -> list[FieldViolation]:
    first_index: dict[str, int] = {}
    violations: list[FieldViolation] = []
    for index, item in enumerate(requests):
        earlier = first_index.setdefault(item.request_id, index)
        if item.request_id and earlier != index:
            violations.append(
                FieldViolation(f"requests[{index}].request_id", f"repeats requests[{earlier}].request_id")
            )
    return violations


def batch_item(item: pb.CreateTransferRequest) -> TransferCommand | ApiError:
    try:
        return transfer_command(item)
    except ApiError as error:
        return error


def check_refund(request: pb.CreateRefundRequest) -> None:
    violations = request_id_violations(request.request_id, required=True)
    violations += id_violations("transfer_id", request.transfer_id)
    if not 0 <= request.leg_index < limits.transfer_legs_max:
        violations.append(FieldViolation("leg_index", f"0 to {limits.transfer_legs_max - 1}"))
    violations += positive_violations("amount_minor", request.amount_minor)
    raise_if_any(violations)


def balance_time_ms(request: pb.GetBalanceRequest, now_ms: int) -> int:
    """The as_of_time of a GetBalance request (required, from 1970 to now), or INVALID_ARGUMENT."""
    violations = id_violations("account_id", request.account_id)
    required = "required: a time from 1970 to now"
    as_of_ms = time_ms(request, "as_of_time", violations, required=required)
    if as_of_ms is not None and not 0 <= as_of_ms <= now_ms:
        violations.append(FieldViolation("as_of_time", required))
    raise_if_any(violations)
    return as_of_ms or 0


def checked_id(field: str, value: str) -> str:
    """An account or transfer id of a request, or INVALID_ARGUMENT."""
    raise_if_any(id_violations(field, value))
    return value


def generated_account_id(request_id: str) -> str:
    suffix = uuid.uuid5(_GENERATED_ID_NAMESPACE, request_id) if request_id else uuid.uuid4()
    return f"acct-{suffix.hex}"


def policy_from_pb(message: pb.AccountPolicy) -> AccountPolicy:
    return AccountPolicy(
        allow_negative=message.allow_negative,
        debits_frozen=message.debits_frozen,
        credits_frozen=message.credits_frozen,
        single_payment_limit_minor=message.single_payment_limit_minor,
        daily_outflow_limit_minor=message.daily_outflow_limit_minor,
    )


# Validation


def raise_if_any(violations: Sequence[FieldViolation]) -> None:
    if not violations:
        return
    error = invalid_fields(tuple(violations))
    if any(v.field.endswith("currency_code") for v in violations):
        error.reason = Reason.UNKNOWN_CURRENCY
    raise error


def request_id_violations(request_id: str, *, required: bool) -> list[FieldViolation]:
    if required and not request_id:
        return [FieldViolation("request_id", "required: a call that moves money must be safe to retry")]
    try:
        check_request_id(request_id)
    except ApiError as error:
        return list(error.field_violations)
    return []


def id_violations(field: str, value: str) -> list[FieldViolation]:
    if ACCOUNT_ID_PATTERN.match(value):
        return []
    return [FieldViolation(field, "1 to 64 characters of [A-Za-z0-9._:-], starting with a letter or digit")]


def currency_violations(field: str, code: str) -> list[FieldViolation]:
    if CURRENCY_PATTERN.match(code) and currencies.is_known(code):
        return []
    return [FieldViolation(field, f"{echo(code)} is not an active ISO 4217 currency code such as CNY")]


def name_violations(field: str, name: str) -> list[FieldViolation]:
    if len(name) <= limits.display_name_length_max and name.isprintable():
        return []
    return [FieldViolation(field, f"at most {limits.display_name_length_max} printable characters")]


def policy_violations(prefix: str, policy: pb.AccountPolicy) -> list[FieldViolation]:
    limits_minor = {
        "single_payment_limit_minor": policy.single_payment_limit_minor,
        "daily_outflow_limit_minor": policy.daily_outflow_limit_minor,
    }
    return [
        FieldViolation(f"{prefix}.{name}", "must not be negative (0 means no limit)")
        for name, value in limits_minor.items()
        if value < 0
    ]


def mask_violations(paths: Sequence[str]) -> list[FieldViolation]:
    allowed = ", ".join(UPDATABLE_PATHS)
    if not paths:
        return [FieldViolation("update_mask", f"name at least one of {allowed}")]
    unknown = sorted(set(paths) - set(UPDATABLE_PATHS))
    if unknown:
        return [FieldViolation("update_mask", f"unknown path {echo(unknown[0])}; allowed: {allowed}")]
    return []


def legs_violations(legs: Sequence[pb.Leg]) -> list[FieldViolation]:
    if not 1 <= len(legs) <= limits.transfer_legs_max:
        return [FieldViolation("legs", f"1 to {limits.transfer_legs_max} legs")]
    violations: list[FieldViolation] = []
    payer_id = legs[0].debit_account_id
    total_minor = 0
    for index, leg in enumerate(legs):
        total_minor += leg.amount_minor
        if not leg_is_valid(leg, payer_id):
            violations += leg_violations(f"legs[{index}]", leg, payer_id)
    if total_minor > AMOUNT_MAX_MINOR:
        violations.append(FieldViolation("legs", f"the amounts add up to more than {AMOUNT_MAX_MINOR}"))
    return violations


def leg_is_valid(leg: pb.Leg, payer_id: str) -> bool:
    """Whether `leg_violations` finds nothing, without building a field path (every leg of every
    transfer and batch item is checked; almost every one is valid)."""
    debit, credit = leg.debit_account_id, leg.credit_account_id
    return bool(
        debit == payer_id
        and credit != debit
        and leg.amount_minor > 0
        and ACCOUNT_ID_PATTERN.match(debit)
        and ACCOUNT_ID_PATTERN.match(credit)
    )


def leg_violations(prefix: str, leg: pb.Leg, payer_id: str) -> list[FieldViolation]:
    violations = id_violations(f"{prefix}.debit_account_id", leg.debit_account_id)
    violations += id_violations(f"{prefix}.credit_account_id", leg.credit_account_id)
    if leg.debit_account_id != payer_id:
        violations.append(
            FieldViolation(f"{prefix}.debit_account_id", "every leg must debit legs[0].debit_account_id")
        )
    if leg.credit_account_id == leg.debit_account_id:
        violations.append(FieldViolation(f"{prefix}.credit_account_id", "must differ from the debit account"))
    violations += positive_violations(f"{prefix}.amount_minor", leg.amount_minor)
    return violations


def positive_violations(field: str, amount_minor: int) -> list[FieldViolation]:
    if amount_minor > 0:
        return []
    return [FieldViolation(field, "must be positive (minor units)")]


def portion_violations(field: str, amount_minor: int) -> list[FieldViolation]:
    if amount_minor >= 0:
        return []
    return [FieldViolation(field, "must not be negative (minor units; 0 means all)")]


def differs_violations(field: str, value: str, others: Mapping[str, str]) -> list[FieldViolation]:
    """`field` must name another account than each of `others` (field -> value)."""
    return [
        FieldViolation(field, f"must differ from {name}") for name, other in others.items() if value == other
    ]


def escrow_parties_violations(request: pb.CreateEscrowRequest) -> list[FieldViolation]:
    buyer, seller, holder = request.buyer_account_id, request.seller_account_id, request.escrow_account_id
    violations = id_violations("buyer_account_id", buyer)
    violations += id_violations("seller_account_id", seller)
    violations += id_violations("escrow_account_id", holder)
    violations += differs_violations("seller_account_id", seller, {"buyer_account_id": buyer})
    others = {
        "buyer_account_id": buyer,
        "seller_account_id": seller,
        "fee_account_id": request.fee_account_id,
    }
    violations += differs_violations("escrow_account_id", holder, others)
    return violations


def fee_violations(request: pb.CreateEscrowRequest) -> list[FieldViolation]:
    if request.fee_minor == 0:
        if request.fee_account_id:
            return [FieldViolation("fee_account_id", "must be empty when fee_minor is 0")]
        return []
    violations = id_violations("fee_account_id", request.fee_account_id)
    if not 0 < request.fee_minor < request.amount_minor:
        violations.append(FieldViolation("fee_minor", "0 or more, and less than amount_minor"))
    return violations


# Domain to messages


def account_to_pb(view: AccountView) -> pb.Account:
    account, balance, policy = view.account, view.balance, view.account.policy
    return pb.Account(
        account_id=account.account_id,
        currency_code=account.currency,
        kind=_KIND_TO_PB[account.kind],
        display_name=account.display_name,
        policy=pb.AccountPolicy(
            allow_negative=policy.allow_negative,
            debits_frozen=policy.debits_frozen,
            credits_frozen=policy.credits_frozen,
            single_payment_limit_minor=policy.single_payment_limit_minor,
            daily_outflow_limit_minor=policy.daily_outflow_limit_minor,
        ),
        balance=pb.Balance(
            ledger_minor=balance.ledger_minor,
            held_minor=balance.held_minor,
            available_minor=balance.available_minor,
        ),
        create_time=timestamp(account.create_time_ms),
        update_time=timestamp(account.update_time_ms),
        version=account.version,
    )


def transfer_to_pb(transfer: Transfer) -> pb.Transfer:
    return pb.Transfer(
        transfer_id=transfer.transfer_id,
        request_id=transfer.request_id,
        currency_code=transfer.currency,
        legs=[
            pb.Leg(
                debit_account_id=leg.debit_account_id,
                credit_account_id=leg.credit_account_id,
                amount_minor=leg.amount_minor,
            )
            for leg in transfer.legs
        ],
        memo=transfer.memo,
        state=_TRANSFER_STATE_TO_PB[transfer.state],
        create_time=timestamp(transfer.create_time_ms),
        failure=_failure_to_pb(transfer.failure),
    )


def entry_to_pb(entry: Entry) -> pb.Entry:
    return pb.Entry(
        account_id=entry.account_id,
        entry_seq=entry.entry_seq,
        transfer_id=entry.transfer_id,
        leg_index=entry.leg_index,
        kind=_ENTRY_KIND_TO_PB[entry.kind],
        amount_minor=entry.amount_minor,
        balance_after_minor=entry.balance_after_minor,
        time=timestamp(entry.time_ms),
    )


def balance_to_pb(balance: BalanceAt) -> pb.GetBalanceResponse:
    return pb.GetBalanceResponse(
        account_id=balance.account_id,
        as_of_time=timestamp(balance.time_ms),
        ledger_minor=balance.ledger_minor,
        entry_seq=balance.entry_seq,
    )


def hold_to_pb(hold: Hold) -> pb.Hold:
    return pb.Hold(
        hold_id=hold.hold_id,
        request_id=hold.request_id,
        account_id=hold.account_id,
        payee_account_id=hold.payee_account_id,
        currency_code=hold.currency,
        amount_minor=hold.amount_minor,
        captured_minor=hold.captured_minor,
        state=_HOLD_STATE_TO_PB[hold.state],
        expire_time=timestamp(hold.expire_time_ms),
        create_time=timestamp(hold.create_time_ms),
        capture_transfer_id=hold.capture_transfer_id,
        failure=_failure_to_pb(hold.failure),
    )


def escrow_to_pb(escrow: Escrow) -> pb.Escrow:
    return pb.Escrow(
        escrow_id=escrow.escrow_id,
        request_id=escrow.request_id,
        buyer_account_id=escrow.buyer_account_id,
        seller_account_id=escrow.seller_account_id,
        escrow_account_id=escrow.escrow_account_id,
        fee_account_id=escrow.fee_account_id,
        currency_code=escrow.currency,
        amount_minor=escrow.amount_minor,
        fee_minor=escrow.fee_minor,
        refunded_minor=escrow.refunded_minor,
        state=_ESCROW_STATE_TO_PB[escrow.state],
        release_time=timestamp(escrow.release_time_ms),
        create_time=timestamp(escrow.create_time_ms),
    )


def refund_to_pb(refund: Refund) -> pb.Refund:
    return pb.Refund(
        refund_id=refund.refund_id,
        request_id=refund.request_id,
        transfer_id=refund.transfer_id,
        leg_index=refund.leg_index,
        amount_minor=refund.amount_minor,
        refund_transfer_id=refund.refund_transfer_id,
        create_time=timestamp(refund.create_time_ms),
    )


def event_filter(request: pb.WatchEventsRequest) -> EventFilter:
    if request.account_id:
        raise_if_any(id_violations("account_id", request.account_id))
    if len(request.kinds) > len(EventKind):
        raise invalid("kinds", f"at most {len(EventKind)} kinds")
    kinds = set()
    for kind in request.kinds:
        name = pb.EventKind.Name(kind) if kind in pb.EventKind.values() else ""
        if not name or kind == pb.EVENT_KIND_UNSPECIFIED:
            raise invalid("kinds", f"{kind} is not an event kind")
        kinds.add(EventKind[name.removeprefix("EVENT_KIND_")])
    return EventFilter(frozenset(kinds), request.account_id)


def event_to_pb(event: Event) -> pb.Event:
    return pb.Event(
        event_id=event.event_id,
        kind=pb.EventKind.Value(f"EVENT_KIND_{event.kind.name}"),
        time=timestamp(event.time_ms),
        account_ids=event.account_ids,
        transfer_id=event.transfer_id,
        transfer=transfer_to_pb(event.transfer) if event.transfer is not None else None,
        hold=hold_to_pb(event.hold) if event.hold is not None else None,
        escrow=escrow_to_pb(event.escrow) if event.escrow is not None else None,
        entries=[entry_to_pb(entry) for entry in event.entries],
    )


def reconcile_to_pb(report: ReconcileReport) -> pb.ReconcileResponse:
    listed = report.discrepancies[: limits.reconcile_discrepancies_listed_max]
    return pb.ReconcileResponse(
        clean=report.clean,
        shard_count=report.shard_count,
        accounts_checked=report.accounts_checked,
        currencies=[
            pb.CurrencyTotal(
                currency_code=total.currency,
                accounts=total.accounts,
                ledger_minor=total.ledger_minor,
                in_flight_minor=total.in_flight_minor,
            )
            for total in report.currencies
        ],
        discrepancies=[
            pb.Discrepancy(
                kind=pb.DiscrepancyKind.Value(f"DISCREPANCY_KIND_{found.kind.name}"),
                account_id=found.account_id,
                expected=found.expected,
                actual=found.actual,
                detail=found.detail,
            )
            for found in listed
        ],
        discrepancies_omitted=len(report.discrepancies) - len(listed),
    )


def _failure_to_pb(failure: Failure | None) -> pb.Status | None:
    return error_to_pb(error_of(failure)) if failure is not None else None


def error_to_pb(error: ApiError) -> pb.Status:
    status = error.to_status()
    return pb.Status(code=status.code, message=status.message, details=status.details)
