"""Request validation and domain-to-message conversion of the payments API, without a server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2
from hypothesis import given
from hypothesis import strategies as st
from jubao.errors import Reason
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server import limits
from jubao_server.errors import ApiError, ErrorCode, failed_precondition
from jubao_server.payments import convert, currencies
from jubao_server.payments.api import BalanceAt, HoldCommand
from jubao_server.payments.commands import Ahead
from jubao_server.payments.model import (
    AMOUNT_MAX_MINOR,
    Account,
    AccountKind,
    AccountPolicy,
    AccountView,
    Balance,
    Entry,
    EntryKind,
    Escrow,
    EscrowState,
    Hold,
    HoldState,
    Leg,
    Refund,
    Transfer,
    TransferState,
)

from tests.payments import support

M = TypeVar("M", bound=Message)
NOW_MS = 1_800_000_000_000
DAY_MS = 24 * 3600 * 1000


def leg(debit: str, credit: str, amount_minor: int) -> pb.Leg:
    return pb.Leg(debit_account_id=debit, credit_account_id=credit, amount_minor=amount_minor)


def transfer_request(
    *legs: pb.Leg, currency: str = "CNY", request_id: str = "t-1"
) -> pb.CreateTransferRequest:
    return pb.CreateTransferRequest(request_id=request_id, currency_code=currency, legs=legs)


def rejection(error: pytest.ExceptionInfo[ApiError]) -> tuple[str, dict[str, str]]:
    """The reason and the field violations (field -> description) of a rejection."""
    assert error.value.code == ErrorCode.INVALID_ARGUMENT
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


def stamp(ms: int) -> Timestamp:
    at = Timestamp()
    at.FromMilliseconds(ms)
    return at


def with_fields(request: M, fields: dict[str, object]) -> M:
    for field, value in fields.items():
        if isinstance(value, Message):
            getattr(request, field).CopyFrom(value)
        else:
            setattr(request, field, value)
    return request


def hold_request(**fields: object) -> pb.CreateHoldRequest:
    return with_fields(support.hold_request(300, stamp(NOW_MS + DAY_MS), "h-1"), fields)


def escrow_request(**fields: object) -> pb.CreateEscrowRequest:
    request = support.escrow_request(1_000, stamp(NOW_MS + DAY_MS), "e-1", fee_minor=50)
    return with_fields(request, fields)


def test_a_hold_request_becomes_a_command() -> None:
    assert convert.hold_command(hold_request()) == HoldCommand("alice", "shop", "CNY", 300, NOW_MS + DAY_MS)


def test_every_bad_field_of_a_hold_is_reported_at_once() -> None:
    request = hold_request(request_id="", payee_account_id="alice", amount_minor=0, currency_code="XYZ")
    request.ClearField("expire_time")
    with pytest.raises(ApiError) as caught:
        convert.hold_command(request)
    reason, fields = rejection(caught)
    assert reason == Reason.UNKNOWN_CURRENCY
    assert set(fields) == {"request_id", "payee_account_id", "currency_code", "amount_minor", "expire_time"}


@pytest.mark.parametrize("expire_ms", [NOW_MS, NOW_MS - 1, NOW_MS + limits.hold_expiry_max_ms + 1])
def test_a_hold_expires_in_the_next_30_days_by_the_ledger_clock(expire_ms: int) -> None:
    """The request's shape is checked at once; whether its time lies ahead, by the shard (`Ahead`)."""
    assert convert.hold_command(hold_request(expire_time=stamp(expire_ms))).expire_time_ms == expire_ms
    with pytest.raises(ApiError) as caught:
        Ahead("expire_time", expire_ms, limits.hold_expiry_max_ms).check(NOW_MS)
    assert rejection(caught)[1].keys() == {"expire_time"}
    Ahead("expire_time", NOW_MS + limits.hold_expiry_max_ms, limits.hold_expiry_max_ms).check(NOW_MS)


OUT_OF_RANGE_TIMES = [
    Timestamp(seconds=1, nanos=2_000_000_000),
    Timestamp(seconds=1, nanos=-1),
    Timestamp(seconds=-(2**63)),
    Timestamp(seconds=2**63 - 1),
    Timestamp(seconds=253_402_300_800),
    Timestamp(seconds=-62_135_596_801),
]


@pytest.mark.parametrize("bad", OUT_OF_RANGE_TIMES)
def test_out_of_range_timestamps_are_invalid_fields(bad: Timestamp) -> None:
    """Every Timestamp a request takes is checked, and the violation names the field."""
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: convert.hold_command(hold_request(expire_time=bad)), "expire_time"),
        (lambda: convert.escrow_command(escrow_request(release_time=bad)), "release_time"),
        (
            lambda: convert.entry_query(pb.ListEntriesRequest(account_id="a", start_time=bad), None, 9),
            "start_time",
        ),
        (
            lambda: convert.entry_query(pb.ListEntriesRequest(account_id="a", end_time=bad), None, 9),
            "end_time",
        ),
        (
            lambda: convert.balance_time_ms(pb.GetBalanceRequest(account_id="a", as_of_time=bad), NOW_MS),
            "as_of_time",
        ),
    ]
    for convert_request, field in cases:
        with pytest.raises(ApiError) as caught:
            convert_request()
        assert rejection(caught)[1].keys() == {field}


def test_the_extreme_valid_timestamps_convert() -> None:
    for seconds, nanos in ((-62_135_596_800, 0), (253_402_300_799, 999_999_999)):
        request = pb.ListEntriesRequest(account_id="a", start_time=Timestamp(seconds=seconds, nanos=nanos))
        assert convert.entry_query(request, None, 9).start_time_ms == seconds * 1000 + nanos // 1_000_000


def test_an_escrow_request_becomes_a_command() -> None:
    command = convert.escrow_command(escrow_request())
    assert (command.buyer_account_id, command.seller_account_id, command.escrow_account_id) == (
        "alice",
        "shop",
        "escrow",
    )
    assert (command.amount_minor, command.fee_account_id, command.fee_minor) == (1_000, "fees", 50)
    assert command.release_time_ms == NOW_MS + DAY_MS
    free = convert.escrow_command(escrow_request(fee_account_id="", fee_minor=0))
    assert (free.fee_account_id, free.fee_minor) == ("", 0)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"fee_minor": 1_000}, "fee_minor"),
        ({"fee_minor": -1}, "fee_minor"),
        ({"fee_account_id": ""}, "fee_account_id"),
        ({"fee_minor": 0}, "fee_account_id"),
        ({"seller_account_id": "alice"}, "seller_account_id"),
        ({"escrow_account_id": "fees"}, "escrow_account_id"),
        ({"amount_minor": -1, "fee_minor": 0, "fee_account_id": ""}, "amount_minor"),
        ({"release_time": Timestamp(seconds=1, nanos=-1)}, "release_time"),
    ],
)
def test_bad_escrows_name_the_field(fields: dict[str, object], bad: str) -> None:
    with pytest.raises(ApiError) as caught:
        convert.escrow_command(escrow_request(**fields))
    assert rejection(caught)[1].keys() == {bad}


def test_changes_of_holds_and_escrows_need_a_request_id_and_no_negative_amount() -> None:
    assert convert.checked_item_id("c-1", "hold_id", "hd_1", 0) == "hd_1"
    with pytest.raises(ApiError) as caught:
        convert.checked_item_id("", "escrow_id", "", -1)
    assert rejection(caught)[1].keys() == {"request_id", "escrow_id", "amount_minor"}


def test_refunds_name_a_leg_and_a_positive_amount() -> None:
    convert.check_refund(
        pb.CreateRefundRequest(request_id="r-1", transfer_id="tr_1", leg_index=15, amount_minor=1)
    )
    bad = pb.CreateRefundRequest(transfer_id="tr_1", leg_index=limits.transfer_legs_max, amount_minor=0)
    with pytest.raises(ApiError) as caught:
        convert.check_refund(bad)
    assert rejection(caught)[1].keys() == {"request_id", "leg_index", "amount_minor"}


def test_balances_are_of_the_past() -> None:
    request = pb.GetBalanceRequest(account_id="alice", as_of_time=stamp(NOW_MS))
    assert convert.balance_time_ms(request, NOW_MS) == NOW_MS
    for bad in (pb.GetBalanceRequest(account_id="alice"), pb.GetBalanceRequest(as_of_time=stamp(NOW_MS + 1))):
        with pytest.raises(ApiError) as caught:
            convert.balance_time_ms(bad, NOW_MS)
        assert "as_of_time" in rejection(caught)[1]


def test_batch_items_fail_alone() -> None:
    good = transfer_request(leg("alice", "bob", 1), request_id="t-1")
    invalid = transfer_request(leg("alice", "bob", 0), request_id="t-2")
    unnamed = transfer_request(leg("alice", "bob", 1), request_id="")
    items = convert.batch_items(pb.BatchCreateTransfersRequest(requests=[good, invalid, unnamed, unnamed]))
    assert items[0] == convert.transfer_command(good)
    assert [type(item) for item in items[1:]] == [ApiError, ApiError, ApiError]
    assert [v.field for item in items[1:] if isinstance(item, ApiError) for v in item.field_violations] == [
        "legs[0].amount_minor",
        "request_id",
        "request_id",
    ]


def test_a_batch_repeating_a_request_id_is_refused_whole() -> None:
    """Both items of a repeated request_id are named; the batch is not split into items."""
    first = transfer_request(leg("alice", "bob", 1), request_id="t-1")
    other = transfer_request(leg("alice", "bob", 2), request_id="t-2")
    again = transfer_request(leg("alice", "shop", 1), request_id="t-1")
    batch = pb.BatchCreateTransfersRequest(requests=[first, other, again, other])
    with pytest.raises(ApiError) as caught:
        convert.batch_items(batch)
    assert rejection(caught) == (
        Reason.INVALID_ARGUMENT,
        {
            "requests[2].request_id": "repeats requests[0].request_id",
            "requests[3].request_id": "repeats requests[1].request_id",
        },
    )


@pytest.mark.parametrize("count", [0, limits.batch_transfers_max + 1])
def test_a_batch_has_1_to_1000_requests(count: int) -> None:
    requests = [transfer_request(leg("alice", "bob", 1), request_id=f"t-{i}") for i in range(count)]
    with pytest.raises(ApiError) as caught:
        convert.batch_items(pb.BatchCreateTransfersRequest(requests=requests))
    assert rejection(caught)[1].keys() == {"requests"}


def test_holds_escrows_refunds_and_errors_become_messages() -> None:
    hold = Hold("hd_1", "h-1", "alice", "shop", "CNY", 300, 100, HoldState.CAPTURED, 9_000, 1_000, "tr_9")
    message = convert.hold_to_pb(hold)
    assert message.state == pb.HOLD_STATE_CAPTURED and message.expire_time.ToMilliseconds() == 9_000
    assert (message.captured_minor, message.capture_transfer_id) == (100, "tr_9")
    escrow = Escrow(
        "es_1",
        "e-1",
        "alice",
        "shop",
        "escrow",
        "fees",
        "CNY",
        1_000,
        50,
        300,
        EscrowState.DISPUTED,
        9_000,
        1_000,
    )
    assert convert.escrow_to_pb(escrow).state == pb.ESCROW_STATE_DISPUTED
    assert convert.escrow_to_pb(escrow).refunded_minor == 300
    refund = convert.refund_to_pb(Refund("rf_1", "r-1", "tr_1", 2, 40, "tr_2", 5_000))
    assert (refund.leg_index, refund.amount_minor, refund.refund_transfer_id) == (2, 40, "tr_2")
    balance = convert.balance_to_pb(BalanceAt("alice", 5_000, 700, 3))
    assert (balance.ledger_minor, balance.entry_seq, balance.as_of_time.ToMilliseconds()) == (700, 3, 5_000)
    error = failed_precondition(Reason.INVALID_STATE, "hold hd_1 is voided", hold_id="hd_1")
    status = status_pb2.Status.FromString(convert.error_to_pb(error).SerializeToString())
    assert status == error.to_status()


_ids = st.sampled_from(["alice", "shop", "fees", "al ice", "", "-x", "a" * 64, "a" * 65])


@given(_ids, _ids, st.integers(-2, 2), _ids)
def test_a_leg_is_valid_exactly_when_it_has_no_violation(
    debit: str, credit: str, amount_minor: int, payer: str
) -> None:
    """The check of a valid leg (which builds no field path) agrees with the full list of violations."""
    request_leg = leg(debit, credit, amount_minor)
    violations = convert.leg_violations("legs[0]", request_leg, payer)
    assert convert.leg_is_valid(request_leg, payer) == (violations == [])
