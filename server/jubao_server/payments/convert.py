"""Conversions between the jubao.payments.v1 messages and the payments domain.

Requests are validated completely before anything is converted: one INVALID_ARGUMENT lists every bad
field of the request with its exact path (`legs[1].amount_minor`). A bad or unknown currency makes the
reason UNKNOWN_CURRENCY instead of INVALID_ARGUMENT.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from jubao.errors import FieldViolation, Reason
from jubao.payments.v1 import payments_pb2 as pb

from jubao_server import limits
from jubao_server.errors import ApiError, invalid_fields
from jubao_server.payments import currencies
from jubao_server.payments.api import (
    AccountChange,
    AccountView,
    EntryQuery,
    OpenAccountCommand,
    TransferCommand,
)
from jubao_server.payments.model import (
    ACCOUNT_ID_PATTERN,
    AMOUNT_MAX_MINOR,
    CURRENCY_PATTERN,
    AccountKind,
    AccountPolicy,
    Entry,
    EntryKind,
    Leg,
    Transfer,
    TransferState,
)
from jubao_server.platform.idempotency import check_request_id
from jubao_server.tenancy.convert import timestamp

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
}
_ENTRY_KIND_TO_PB = {EntryKind.DEBIT: pb.ENTRY_KIND_DEBIT, EntryKind.CREDIT: pb.ENTRY_KIND_CREDIT}


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
    start_time_ms = request.start_time.ToMilliseconds() if request.HasField("start_time") else None
    end_time_ms = request.end_time.ToMilliseconds() if request.HasField("end_time") else None
    if start_time_ms is not None and end_time_ms is not None and end_time_ms < start_time_ms:
        violations.append(FieldViolation("end_time", "must not be before start_time"))
    raise_if_any(violations)
    return EntryQuery(request.account_id, start_time_ms, end_time_ms, after_entry_seq, limit)


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
        return [FieldViolation("request_id", "required: a transfer must be safe to retry")]
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
    return [FieldViolation(field, f"{code!r} is not an active ISO 4217 currency code such as CNY")]


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
        return [FieldViolation("update_mask", f"unknown paths {', '.join(unknown)}; allowed: {allowed}")]
    return []


def legs_violations(legs: Sequence[pb.Leg]) -> list[FieldViolation]:
    if not 1 <= len(legs) <= limits.transfer_legs_max:
        return [FieldViolation("legs", f"1 to {limits.transfer_legs_max} legs")]
    violations: list[FieldViolation] = []
    for index, leg in enumerate(legs):
        violations += leg_violations(f"legs[{index}]", leg, legs[0].debit_account_id)
    if sum(leg.amount_minor for leg in legs) > AMOUNT_MAX_MINOR:
        violations.append(FieldViolation("legs", f"the amounts add up to more than {AMOUNT_MAX_MINOR}"))
    return violations


def leg_violations(prefix: str, leg: pb.Leg, payer_id: str) -> list[FieldViolation]:
    violations = id_violations(f"{prefix}.debit_account_id", leg.debit_account_id)
    violations += id_violations(f"{prefix}.credit_account_id", leg.credit_account_id)
    if leg.debit_account_id != payer_id:
        violations.append(
            FieldViolation(f"{prefix}.debit_account_id", "every leg must debit legs[0].debit_account_id")
        )
    if leg.credit_account_id == leg.debit_account_id:
        violations.append(FieldViolation(f"{prefix}.credit_account_id", "must differ from the debit account"))
    if leg.amount_minor <= 0:
        violations.append(FieldViolation(f"{prefix}.amount_minor", "must be positive (minor units)"))
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
