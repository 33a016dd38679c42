"""Request validation and domain-to-message conversion of the payments API, without a server."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from jubao.errors import Reason
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server import limits
from jubao_server.errors import ApiError
from jubao_server.payments import convert, currencies
from jubao_server.payments.api import AccountView
from jubao_server.payments.model import (
    AMOUNT_MAX_MINOR,
    Account,
    AccountKind,
    AccountPolicy,
    Balance,
    Entry,
    EntryKind,
    Leg,
    Transfer,
    TransferState,
)


def leg(debit: str, credit: str, amount_minor: int) -> pb.Leg:
    return pb.Leg(debit_account_id=debit, credit_account_id=credit, amount_minor=amount_minor)


def transfer_request(
    *legs: pb.Leg, currency: str = "CNY", request_id: str = "t-1"
) -> pb.CreateTransferRequest:
    return pb.CreateTransferRequest(request_id=request_id, currency_code=currency, legs=legs)


def rejection(error: pytest.ExceptionInfo[ApiError]) -> tuple[str, dict[str, str]]:
    """The reason and the field violations (field -> description) of a rejection."""
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return error.value.reason, {v.field: v.description for v in error.value.field_violations}


def test_a_split_transfer_becomes_a_command() -> None:
    request = transfer_request(leg("alice", "shop", 9_700), leg("alice", "fees", 300))
    request.memo = "order 42"
    command = convert.transfer_command(request)
    assert command.currency == "CNY" and command.memo == "order 42"
    assert command.legs == (Leg("alice", "shop", 9_700), Leg("alice", "fees", 300))


def test_every_bad_field_of_a_transfer_is_reported_at_once() -> None:
    request = pb.CreateTransferRequest(
        currency_code="CNY",
        legs=[
            leg("alice", "shop", 0),
            leg("bob", "fees", -5),
            leg("alice", "alice", 1),
            leg("al ice", "x", 1),
        ],
        memo="m" * (limits.transfer_memo_length_max + 1),
    )
    with pytest.raises(ApiError) as caught:
        convert.transfer_command(request)
    reason, fields = rejection(caught)
    assert reason == Reason.INVALID_ARGUMENT
    assert set(fields) == {
        "request_id",
        "legs[0].amount_minor",
        "legs[1].debit_account_id",
        "legs[1].amount_minor",
        "legs[2].credit_account_id",
        "legs[3].debit_account_id",
        "memo",
    }


@pytest.mark.parametrize("count", [0, limits.transfer_legs_max + 1])
def test_a_transfer_has_1_to_16_legs(count: int) -> None:
    request = transfer_request(*(leg("alice", f"p{i}", 1) for i in range(count)))
    with pytest.raises(ApiError) as caught:
        convert.transfer_command(request)
    assert rejection(caught)[1].keys() == {"legs"}


def test_sixteen_legs_are_allowed() -> None:
    request = transfer_request(*(leg("alice", f"p{i}", 1) for i in range(limits.transfer_legs_max)))
    assert len(convert.transfer_command(request).legs) == limits.transfer_legs_max


def test_legs_adding_up_past_int64_are_refused() -> None:
    request = transfer_request(leg("alice", "a", AMOUNT_MAX_MINOR), leg("alice", "b", 1))
    with pytest.raises(ApiError) as caught:
        convert.transfer_command(request)
    assert rejection(caught)[1].keys() == {"legs"}


@pytest.mark.parametrize("code", ["XYZ", "cny", "CN", "CNYY", "", "XAU"])
def test_unknown_or_malformed_currencies_have_their_own_reason(code: str) -> None:
    with pytest.raises(ApiError) as caught:
        convert.transfer_command(transfer_request(leg("alice", "bob", 1), currency=code))
    reason, fields = rejection(caught)
    assert reason == Reason.UNKNOWN_CURRENCY and fields.keys() == {"currency_code"}


@pytest.mark.parametrize(("code", "exponent"), [("CNY", 2), ("USD", 2), ("JPY", 0), ("KWD", 3), ("CLF", 4)])
def test_currency_exponents(code: str, exponent: int) -> None:
    assert currencies.is_known(code)
    assert currencies.MINOR_UNIT_EXPONENTS[code] == exponent


def test_withdrawn_currencies_are_unknown() -> None:
    assert not any(currencies.is_known(code) for code in ("HRK", "ZWL", "VEF", "DEM", "usd"))


def test_a_transfer_needs_a_well_formed_request_id() -> None:
    with pytest.raises(ApiError) as caught:
        convert.transfer_command(transfer_request(leg("alice", "bob", 1), request_id="has space"))
    assert rejection(caught)[1].keys() == {"request_id"}


def test_open_account_derives_a_missing_id_from_the_request_id() -> None:
    account = pb.Account(currency_code="JPY", kind=pb.ACCOUNT_KIND_MERCHANT, display_name="Shop")
    first = convert.open_account_command(pb.OpenAccountRequest(request_id="r-1", account=account))
    retry = convert.open_account_command(pb.OpenAccountRequest(request_id="r-1", account=account))
    other = convert.open_account_command(pb.OpenAccountRequest(request_id="r-2", account=account))
    assert first == retry and first.account_id != other.account_id
    assert first.account_id.startswith("acct-") and first.kind is AccountKind.MERCHANT
    assert first.policy == AccountPolicy() and first.currency == "JPY"


def test_open_account_reports_every_bad_field() -> None:
    account = pb.Account(
        account_id="-starts-badly",
        currency_code="EURO",
        display_name="bad\nname",
        policy=pb.AccountPolicy(single_payment_limit_minor=-1, daily_outflow_limit_minor=-1),
    )
    with pytest.raises(ApiError) as caught:
        convert.open_account_command(pb.OpenAccountRequest(account=account))
    reason, fields = rejection(caught)
    assert reason == Reason.UNKNOWN_CURRENCY
    assert set(fields) == {
        "account.account_id",
        "account.currency_code",
        "account.kind",
        "account.display_name",
        "account.policy.single_payment_limit_minor",
        "account.policy.daily_outflow_limit_minor",
    }


def test_update_changes_only_the_masked_fields() -> None:
    request = pb.UpdateAccountRequest(
        account_id="alice",
        policy=pb.AccountPolicy(debits_frozen=True),
        display_name="ignored",
        update_mask=FieldMask(paths=["policy"]),
    )
    change = convert.account_change(request)
    assert change.policy == AccountPolicy(debits_frozen=True) and change.display_name is None


@pytest.mark.parametrize("paths", [[], ["balance"], ["policy", "kind"]])
def test_update_needs_a_mask_of_known_paths(paths: list[str]) -> None:
    request = pb.UpdateAccountRequest(account_id="alice", update_mask=FieldMask(paths=paths))
    with pytest.raises(ApiError) as caught:
        convert.account_change(request)
    assert rejection(caught)[1].keys() == {"update_mask"}


def test_entry_query_takes_an_optional_time_range() -> None:
    request = pb.ListEntriesRequest(account_id="alice", start_time=Timestamp(seconds=10))
    query = convert.entry_query(request, 7, 50)
    assert (query.start_time_ms, query.end_time_ms, query.after_entry_seq, query.limit) == (
        10_000,
        None,
        7,
        50,
    )
    request.end_time.CopyFrom(Timestamp(seconds=9))
    with pytest.raises(ApiError) as caught:
        convert.entry_query(request, None, 50)
    assert rejection(caught)[1].keys() == {"end_time"}


def test_ids_are_checked() -> None:
    assert convert.checked_id("transfer_id", "tr_0123abcd") == "tr_0123abcd"
    with pytest.raises(ApiError) as caught:
        convert.checked_id("account_id", "")
    assert rejection(caught)[1].keys() == {"account_id"}


def test_domain_objects_become_messages() -> None:
    policy = AccountPolicy(allow_negative=True, single_payment_limit_minor=500)
    account = Account("alice", "CNY", AccountKind.CUSTOMER, policy, "Alice", 1_000, 2_000, 3)
    message = convert.account_to_pb(AccountView(account, Balance(ledger_minor=900, held_minor=200)))
    assert message.balance == pb.Balance(ledger_minor=900, held_minor=200, available_minor=700)
    assert message.policy.allow_negative and message.policy.single_payment_limit_minor == 500
    assert message.kind == pb.ACCOUNT_KIND_CUSTOMER and message.update_time.ToMilliseconds() == 2_000
    transfer = Transfer(
        "tr_1", "r-1", "CNY", (Leg("alice", "bob", 5),), "memo", TransferState.COMPLETED, 3_000
    )
    assert convert.transfer_to_pb(transfer).legs[0] == leg("alice", "bob", 5)
    entry = convert.entry_to_pb(Entry("alice", 4, "tr_1", 0, EntryKind.DEBIT, -5, 895, 3_000))
    assert entry.kind == pb.ENTRY_KIND_DEBIT and entry.amount_minor == -5 and entry.balance_after_minor == 895
