"""PaymentService end to end: the SDK's AsyncClient against a real server on SQLite."""

from __future__ import annotations

import json

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from jubao.client import (
    AlreadyExists,
    AsyncClient,
    FailedPrecondition,
    InvalidArgument,
    JubaoError,
    NotFound,
    PermissionDenied,
    Reason,
)
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server.config import TelemetrySettings
from jubao_server.telemetry import setup_logging

from tests.payments.support import (
    CUSTOMER,
    FUNDS_MINOR,
    INT64_MAX,
    cli_of,
    completed,
    entries,
    ledgers_minor,
    leg,
    open_account,
    pay,
    rejected,
    update_policy,
)
from tests.platform.harness import Running


async def test_open_account_starts_at_zero_and_replays(bank: AsyncClient) -> None:
    request = pb.OpenAccountRequest(
        request_id="open-1",
        account=pb.Account(currency_code="JPY", kind=pb.ACCOUNT_KIND_MERCHANT, display_name="Shop"),
    )
    first = (await bank.payments.OpenAccount(request)).account
    assert first.account_id.startswith("acct-") and first.version == 1
    assert first.balance == pb.Balance() and first.create_time.seconds > 0
    again = (await bank.payments.OpenAccount(request)).account
    assert again == first
    listed = (await bank.payments.ListAccounts(pb.ListAccountsRequest())).accounts
    assert [a.account_id for a in listed] == [first.account_id]
    other = pb.OpenAccountRequest(request_id="open-2", account=pb.Account(account_id=first.account_id))
    other.account.currency_code, other.account.kind = "JPY", CUSTOMER
    await rejected(bank.payments.OpenAccount(other), AlreadyExists, Reason.ACCOUNT_EXISTS)


async def test_list_accounts_pages_through_every_account_once(bank: AsyncClient) -> None:
    opened = {(await open_account(bank, f"acc-{index}")).account_id for index in range(7)}
    seen: list[str] = []
    token = ""
    for _ in range(10):
        response = await bank.payments.ListAccounts(pb.ListAccountsRequest(page_size=2, page_token=token))
        assert len(response.accounts) <= 2
        seen += [account.account_id for account in response.accounts]
        token = response.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(opened)


async def test_transfer_and_split_payment_move_money(funded: AsyncClient) -> None:
    bank = funded
    split = await pay(bank, leg("alice", "shop", 9_700), leg("alice", "fees", 300), memo="order 42")
    assert split.transfer_id and split.request_id and split.memo == "order 42"
    assert list(split.legs) == [leg("alice", "shop", 9_700), leg("alice", "fees", 300)]
    assert (await completed(bank, split.transfer_id)).legs == split.legs
    assert await ledgers_minor(bank, "settlement", "alice", "shop", "fees") == [-FUNDS_MINOR, 0, 9_700, 300]
    alice = (await bank.payments.GetAccount(pb.GetAccountRequest(account_id="alice"))).account
    assert alice.balance == pb.Balance(ledger_minor=0, held_minor=0, available_minor=0)
    assert alice.version == 1 and alice.update_time.ToMilliseconds() >= alice.create_time.ToMilliseconds()


async def test_entries_carry_running_balances_and_page(funded: AsyncClient) -> None:
    bank = funded
    first = await pay(bank, leg("alice", "bob", 1_000))
    split = await pay(bank, leg("alice", "shop", 2_000), leg("alice", "fees", 50))
    journal = await entries(bank, "alice")
    rows = [(e.entry_seq, e.kind, e.amount_minor, e.balance_after_minor, e.leg_index) for e in journal]
    assert rows == [
        (1, pb.ENTRY_KIND_CREDIT, FUNDS_MINOR, FUNDS_MINOR, 0),
        (2, pb.ENTRY_KIND_DEBIT, -1_000, 9_000, 0),
        (3, pb.ENTRY_KIND_DEBIT, -2_000, 7_000, 0),
        (4, pb.ENTRY_KIND_DEBIT, -50, 6_950, 1),
    ]
    assert [e.transfer_id for e in journal[1:]] == [first.transfer_id, split.transfer_id, split.transfer_id]
    assert all(e.account_id == "alice" for e in journal)
    assert await entries(bank, "alice", page_size=1) == journal
    assert await entries(bank, "alice", page_size=3) == journal
    await completed(bank, split.transfer_id)
    shop = await entries(bank, "shop")
    assert [(e.kind, e.amount_minor, e.balance_after_minor) for e in shop] == [
        (pb.ENTRY_KIND_CREDIT, 2_000, 2_000)
    ]


async def test_entries_by_time_range(funded: AsyncClient) -> None:
    bank = funded
    await pay(bank, leg("alice", "bob", 1))
    journal = await entries(bank, "alice")
    first_ms, last_ms = journal[0].time.ToMilliseconds(), journal[-1].time.ToMilliseconds()

    async def in_range(start_ms: int, end_ms: int) -> list[pb.Entry]:
        request = pb.ListEntriesRequest(account_id="alice")
        request.start_time.FromMilliseconds(start_ms)
        request.end_time.FromMilliseconds(end_ms)
        return list((await bank.payments.ListEntries(request)).entries)

    assert await in_range(first_ms, last_ms + 1) == journal
    assert await in_range(last_ms + 1, last_ms + 10_000) == []
    assert await in_range(first_ms - 10_000, first_ms) == []
    backwards = pb.ListEntriesRequest(
        account_id="alice", start_time=Timestamp(seconds=10), end_time=Timestamp()
    )
    await rejected(bank.payments.ListEntries(backwards), InvalidArgument, Reason.INVALID_ARGUMENT)


async def test_get_transfer_returns_what_create_returned(funded: AsyncClient) -> None:
    bank = funded
    created = await pay(bank, leg("alice", "bob", 25), memo="lunch")
    fetched = await completed(bank, created.transfer_id)
    assert fetched.legs == created.legs and fetched.memo == "lunch" and fetched.currency_code == "CNY"
    assert fetched.request_id == created.request_id and fetched.create_time == created.create_time
    missing = pb.GetTransferRequest(transfer_id="tr_nope")
    await rejected(bank.payments.GetTransfer(missing), NotFound, Reason.TRANSFER_NOT_FOUND)


async def test_a_replayed_request_moves_money_once(funded: AsyncClient) -> None:
    bank = funded
    first = await pay(bank, leg("alice", "bob", 700), request_id="pay-1")
    again = await pay(bank, leg("alice", "bob", 700), request_id="pay-1")
    assert again.transfer_id == first.transfer_id and again.legs == first.legs
    assert await ledgers_minor(bank, "alice", "bob") == [FUNDS_MINOR - 700, 700]
    assert len(await entries(bank, "alice")) == 2
    other_body = pay(bank, leg("alice", "bob", 701), request_id="pay-1")
    await rejected(other_body, AlreadyExists, Reason.REQUEST_ID_REUSED)
    assert await ledgers_minor(bank, "alice", "bob") == [FUNDS_MINOR - 700, 700]


async def test_update_account_renames_and_changes_policy(funded: AsyncClient) -> None:
    bank = funded
    request = pb.UpdateAccountRequest(
        account_id="alice", display_name="Alice Li", update_mask=FieldMask(paths=["display_name"])
    )
    renamed = (await bank.payments.UpdateAccount(request)).account
    assert renamed.display_name == "Alice Li" and renamed.policy == pb.AccountPolicy()
    limited = await update_policy(bank, "alice", daily_outflow_limit_minor=5_000)
    assert limited.display_name == "Alice Li" and limited.version == renamed.version + 1
    assert limited.policy.daily_outflow_limit_minor == 5_000
    missing = pb.UpdateAccountRequest(account_id="nobody", update_mask=FieldMask(paths=["display_name"]))
    await rejected(bank.payments.UpdateAccount(missing), NotFound, Reason.ACCOUNT_NOT_FOUND)


REJECTIONS: list[tuple[tuple[pb.Leg, ...], str, type[JubaoError], Reason]] = [
    ((leg("alice", "bob", 0),), "CNY", InvalidArgument, Reason.INVALID_ARGUMENT),
    ((leg("alice", "bob", -5),), "CNY", InvalidArgument, Reason.INVALID_ARGUMENT),
    (
        (leg("alice", "bob", INT64_MAX), leg("alice", "shop", INT64_MAX)),
        "CNY",
        InvalidArgument,
        Reason.INVALID_ARGUMENT,
    ),
    ((leg("alice", "bob", 1), leg("bob", "shop", 1)), "CNY", InvalidArgument, Reason.INVALID_ARGUMENT),
    ((leg("alice", "bob", 1),), "XYZ", InvalidArgument, Reason.UNKNOWN_CURRENCY),
    ((leg("alice", "bob", 1),), "USD", FailedPrecondition, Reason.CURRENCY_MISMATCH),
    (
        (leg("alice", "bob", 1), leg("alice", "usd-wallet", 1)),
        "CNY",
        FailedPrecondition,
        Reason.CURRENCY_MISMATCH,
    ),
    ((leg("alice", "bob", FUNDS_MINOR + 1),), "CNY", FailedPrecondition, Reason.INSUFFICIENT_FUNDS),
    (
        (leg("alice", "bob", FUNDS_MINOR), leg("alice", "shop", 1)),
        "CNY",
        FailedPrecondition,
        Reason.INSUFFICIENT_FUNDS,
    ),
    ((leg("alice", "nobody", 1),), "CNY", NotFound, Reason.ACCOUNT_NOT_FOUND),
    ((leg("alice", "bob", 1), leg("alice", "nobody", 1)), "CNY", NotFound, Reason.ACCOUNT_NOT_FOUND),
    ((leg("nobody", "bob", 1),), "CNY", NotFound, Reason.ACCOUNT_NOT_FOUND),
]


async def test_rejected_transfers_change_nothing(funded: AsyncClient) -> None:
    bank = funded
    await open_account(bank, "usd-wallet", currency="USD")
    accounts = ("settlement", "alice", "bob", "shop", "usd-wallet")
    before = await ledgers_minor(bank, *accounts)
    for legs, currency, error_type, reason in REJECTIONS:
        await rejected(pay(bank, *legs, currency=currency), error_type, reason)
    assert await ledgers_minor(bank, *accounts) == before
    assert len(await entries(bank, "alice")) == 1


async def test_a_refused_transfer_is_kept_and_its_retry_refused_alike(funded: AsyncClient) -> None:
    bank = funded
    too_much = leg("alice", "bob", FUNDS_MINOR + 1)
    await rejected(pay(bank, too_much, request_id="order-9"), FailedPrecondition, Reason.INSUFFICIENT_FUNDS)
    await pay(bank, leg("settlement", "alice", 1))
    await rejected(pay(bank, too_much, request_id="order-9"), FailedPrecondition, Reason.INSUFFICIENT_FUNDS)
    assert await ledgers_minor(bank, "alice", "bob") == [FUNDS_MINOR + 1, 0]
    retried = await pay(bank, too_much, request_id="order-10")
    found = await bank.payments.GetTransfer(pb.GetTransferRequest(transfer_id=retried.transfer_id))
    assert found.transfer.state == pb.TRANSFER_STATE_COMPLETED


async def test_frozen_accounts_and_limits_refuse_transfers(funded: AsyncClient) -> None:
    bank = funded
    await update_policy(bank, "alice", debits_frozen=True)
    await rejected(pay(bank, leg("alice", "bob", 1)), FailedPrecondition, Reason.ACCOUNT_FROZEN)
    await update_policy(bank, "alice")
    await update_policy(bank, "bob", credits_frozen=True)
    await rejected(pay(bank, leg("alice", "bob", 1)), FailedPrecondition, Reason.ACCOUNT_FROZEN)
    await update_policy(bank, "alice", single_payment_limit_minor=500)
    split = pay(bank, leg("alice", "shop", 300), leg("alice", "fees", 300))
    await rejected(split, FailedPrecondition, Reason.LIMIT_EXCEEDED)
    assert await ledgers_minor(bank, "alice", "bob", "shop", "fees") == [FUNDS_MINOR, 0, 0, 0]
    await pay(bank, leg("alice", "shop", 500))
    assert await ledgers_minor(bank, "alice", "shop") == [FUNDS_MINOR - 500, 500]


async def test_tenants_cannot_see_or_use_each_others_accounts(
    funded: AsyncClient, platform: AsyncClient
) -> None:
    bank = funded
    alice = pb.GetAccountRequest(account_id="alice")
    await rejected(platform.payments.GetAccount(alice), NotFound, Reason.ACCOUNT_NOT_FOUND)
    journal = platform.payments.ListEntries(pb.ListEntriesRequest(account_id="alice"))
    await rejected(journal, NotFound, Reason.ACCOUNT_NOT_FOUND)
    paid = pb.GetTransferRequest(transfer_id=(await pay(bank, leg("alice", "bob", 1))).transfer_id)
    await rejected(platform.payments.GetTransfer(paid), NotFound, Reason.TRANSFER_NOT_FOUND)
    await rejected(pay(platform, leg("alice", "bob", 1)), NotFound, Reason.ACCOUNT_NOT_FOUND)
    await open_account(platform, "platform-settlement", allow_negative=True)
    stealing = pay(platform, leg("platform-settlement", "alice", 1))
    await rejected(stealing, NotFound, Reason.ACCOUNT_NOT_FOUND)
    listed = (await platform.payments.ListAccounts(pb.ListAccountsRequest())).accounts
    assert [account.account_id for account in listed] == ["platform-settlement"]
    own_alice = await open_account(platform, "alice", currency="USD")
    assert own_alice.balance == pb.Balance()
    assert (await bank.payments.GetAccount(alice)).account.currency_code == "CNY"
    assert await ledgers_minor(bank, "alice") == [FUNDS_MINOR - 1]


async def test_tenants_without_payments_are_refused(insurer: AsyncClient) -> None:
    await rejected(
        insurer.payments.ListAccounts(pb.ListAccountsRequest()), PermissionDenied, Reason.PRODUCT_NOT_ENABLED
    )
    await rejected(pay(insurer, leg("a", "b", 1)), PermissionDenied, Reason.PRODUCT_NOT_ENABLED)


async def test_cli_opens_accounts_transfers_and_lists_entries(running: Running, keys: dict[str, str]) -> None:
    cli = cli_of(running, keys["demo-bank"])
    await cli("accounts", "open", "settle", "--currency", "cny", "--kind", "settlement", "--allow-negative")
    await cli("accounts", "open", "a1", "--currency", "CNY", "--kind", "customer", "--name", "A One")
    await cli("accounts", "open", "a2", "--currency", "CNY", "--kind", "merchant")
    moved = await cli(
        "transfer",
        "--from",
        "settle",
        "--to",
        "a1",
        "--amount",
        "500",
        "--leg",
        "a2:100",
        "--currency",
        "CNY",
    )
    transfer_id = moved["transfer"]["transferId"]
    assert (await cli("transfers", "get", transfer_id))["transfer"]["legs"][1]["amountMinor"] == "100"
    account = (await cli("accounts", "get", "a1"))["account"]
    assert account["balance"]["ledgerMinor"] == "500" and account["displayName"] == "A One"
    journal = (await cli("entries", "a1"))["entries"]
    assert [entry["balanceAfterMinor"] for entry in journal] == ["500"]
    frozen = (await cli("accounts", "freeze", "a1", "--debits"))["account"]["policy"]
    assert frozen == {"debitsFrozen": True}
    assert (await cli("accounts", "unfreeze", "a1"))["account"].get("policy", {}) == {}
    listed = (await cli("accounts", "list"))["accounts"]
    assert sorted(a["accountId"] for a in listed) == ["a1", "a2", "settle"]


async def test_cli_retries_a_payment_by_request_id_and_reports_refusals_as_json(
    running: Running, keys: dict[str, str], funded: AsyncClient
) -> None:
    cli = cli_of(running, keys["demo-bank"])
    open_carol = [
        "accounts",
        "open",
        "carol",
        "--currency",
        "CNY",
        "--kind",
        "customer",
        "--request-id",
        "o-1",
    ]
    opened = await cli(*open_carol)
    assert await cli(*open_carol) == opened

    def pay(amount_minor: int, *request_id: str) -> list[str]:
        return [
            "transfer",
            "--from",
            "alice",
            "--to",
            "carol",
            "--amount",
            str(amount_minor),
            "--currency",
            "CNY",
            *request_id,
        ]

    first = (await cli(*pay(250, "--request-id", "pay-1")))["transfer"]
    assert first["requestId"] == "pay-1"
    assert (await cli(*pay(250, "--request-id", "pay-1")))["transfer"] == first
    assert await ledgers_minor(funded, "alice", "carol") == [FUNDS_MINOR - 250, 250]
    reused = (await cli(*pay(251, "--request-id", "pay-1"), exit_code=1))["error"]
    assert (reused["status"], reused["reason"]) == ("ALREADY_EXISTS", "REQUEST_ID_REUSED")
    overdraft = (await cli(*pay(FUNDS_MINOR), exit_code=1))["error"]
    assert overdraft | {"message": ""} == {
        "code": 9,
        "status": "FAILED_PRECONDITION",
        "message": "",
        "reason": "INSUFFICIENT_FUNDS",
        "domain": "jubao.cloud",
        "metadata": {"account_id": "alice"},
    }
    frozen = await cli("accounts", "freeze", "carol", "--credits", "--request-id", "f-1")
    assert await cli("accounts", "freeze", "carol", "--credits", "--request-id", "f-1") == frozen
    assert await ledgers_minor(funded, "alice", "carol") == [FUNDS_MINOR - 250, 250]


async def test_a_tenants_first_use_logs_one_line_however_many_shards_it_takes(
    bank: AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(TelemetrySettings(log_format="json"))
    await open_account(bank, "first")
    await bank.payments.ListAccounts(pb.ListAccountsRequest())  # every shard of the tenant is acquired
    events = [
        json.loads(line)["event"] for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    assert [event for event in events if event.startswith("ledger")] == ["ledger opened"]
