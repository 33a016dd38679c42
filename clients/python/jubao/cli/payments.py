"""`jubao payments ...`: accounts, transfers, journal entries, holds, escrows and refunds of the caller's
tenant (PaymentService).

Amounts are integers in the minor unit of the currency (fen for CNY, cents for USD, yen for JPY).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from jubao.cli.common import (
    EXIT_PARTIAL,
    PAGE_SIZE,
    RequestIdOption,
    connect,
    emit,
    enum_label,
    list_all,
    list_table,
    parse_time,
    record_table,
    show,
    state,
    text,
    time_label,
)
from jubao.payments.v1 import payments_pb2 as pb

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table


# `jubao payments events`: streams opened in one run, failures in a row before giving up, and backoff.
events_streams_max: Final = 1_000_000
events_failures_in_a_row_max: Final = 8
events_reconnect_backoff_s: Final = 0.25
events_backoff_doublings_max: Final = 4

app = typer.Typer(
    help="Accounts, transfers, journal entries, holds, escrows and refunds (payments product).",
    no_args_is_help=True,
)
accounts_app = typer.Typer(help="Open, show, list, freeze and unfreeze accounts.", no_args_is_help=True)
transfers_app = typer.Typer(help="Show transfers.", no_args_is_help=True)
holds_app = typer.Typer(
    help="Reserve funds, then capture or void them (two-phase payments).", no_args_is_help=True
)
escrows_app = typer.Typer(
    help="Guaranteed transactions: the buyer's payment waits until released or refunded.",
    no_args_is_help=True,
)
app.add_typer(accounts_app, name="accounts")
app.add_typer(transfers_app, name="transfers")
app.add_typer(holds_app, name="holds")
app.add_typer(escrows_app, name="escrows")


class Kind(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"
    ESCROW = "escrow"
    FEES = "fees"
    SETTLEMENT = "settlement"


AccountArgument = Annotated[str, typer.Argument(metavar="ID", help="Account id.")]
DebitsOption = Annotated[bool, typer.Option("--debits", help="Only debits (money out).")]
CreditsOption = Annotated[bool, typer.Option("--credits", help="Only credits (money in).")]
CURRENCY_OPTION = typer.Option("--currency", help="ISO 4217 code, e.g. CNY.")
NewAccountArgument = Annotated[
    str, typer.Argument(metavar="[ID]", help="Account id; omit to let the service choose one.")
]
HoldArgument = Annotated[str, typer.Argument(metavar="ID", help="Hold id.")]
EscrowArgument = Annotated[str, typer.Argument(metavar="ID", help="Escrow id.")]
CurrencyOption = Annotated[str, CURRENCY_OPTION]
PortionOption = Annotated[int, typer.Option("--amount", min=0, help="Minor units; 0 (default) means all.")]


@accounts_app.command("open")
def open_account(
    ctx: typer.Context,
    account_id: NewAccountArgument = "",
    *,
    currency: Annotated[str, CURRENCY_OPTION],
    kind: Annotated[Kind, typer.Option("--kind", help="What the account is for.")],
    allow_negative: Annotated[bool, typer.Option("--allow-negative", help="May go below zero.")] = False,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    request_id: RequestIdOption = "",
) -> None:
    """Open an account with a zero balance."""
    account = pb.Account(
        account_id=account_id,
        currency_code=currency.upper(),
        kind=pb.AccountKind.Value(f"ACCOUNT_KIND_{kind.value.upper()}"),
        display_name=name,
        policy=pb.AccountPolicy(allow_negative=allow_negative),
    )
    with connect(ctx) as client:
        response = client.payments.OpenAccount(pb.OpenAccountRequest(account=account, request_id=request_id))
    emit(ctx, response, lambda: account_record(response.account))


@accounts_app.command("get")
def get_account(ctx: typer.Context, account_id: AccountArgument) -> None:
    """Show an account and its current balances: ledger, held and available."""
    with connect(ctx) as client:
        response = client.payments.GetAccount(pb.GetAccountRequest(account_id=account_id))
    emit(ctx, response, lambda: account_record(response.account))


@accounts_app.command("list")
def list_accounts(ctx: typer.Context) -> None:
    """List every account with its balance."""
    with connect(ctx) as client:
        accounts = list_all(
            client.payments.ListAccounts, pb.ListAccountsRequest(page_size=PAGE_SIZE), lambda r: r.accounts
        )
    emit(ctx, pb.ListAccountsResponse(accounts=accounts), lambda: accounts_table(accounts))


@accounts_app.command()
def freeze(
    ctx: typer.Context,
    account_id: AccountArgument,
    debits: DebitsOption = False,
    credits: CreditsOption = False,
    request_id: RequestIdOption = "",
) -> None:
    """Freeze an account: transfers out of it (--debits), into it (--credits) or both (default) fail."""
    _set_frozen(ctx, account_id, debits, credits, request_id, frozen=True)


@accounts_app.command()
def unfreeze(
    ctx: typer.Context,
    account_id: AccountArgument,
    debits: DebitsOption = False,
    credits: CreditsOption = False,
    request_id: RequestIdOption = "",
) -> None:
    """Unfreeze an account's debits (--debits), credits (--credits) or both (default)."""
    _set_frozen(ctx, account_id, debits, credits, request_id, frozen=False)


@app.command()
def transfer(
    ctx: typer.Context,
    *,
    payer: Annotated[str, typer.Option("--from", help="Account to debit.")],
    payee: Annotated[str, typer.Option("--to", help="Account to credit.")],
    amount: Annotated[int, typer.Option("--amount", min=1, help="Minor units to move to --to.")],
    currency: Annotated[str, CURRENCY_OPTION],
    legs: Annotated[
        list[str] | None, typer.Option("--leg", metavar="ACCOUNT:AMOUNT", help="Another payee; repeatable.")
    ] = None,
    memo: Annotated[str, typer.Option("--memo", help="Free text for the parties.")] = "",
    request_id: RequestIdOption = "",
) -> None:
    """Move money from one account to one or more others, atomically. Run it again with the same
    --request-id after a timeout: the money moves once. A refusal (INSUFFICIENT_FUNDS, ...) exits 1."""
    payees = [(payee, amount), *(_parse_leg(leg) for leg in legs or ())]
    request = pb.CreateTransferRequest(
        currency_code=currency.upper(),
        legs=[
            pb.Leg(debit_account_id=payer, credit_account_id=to, amount_minor=minor) for to, minor in payees
        ],
        memo=memo,
        request_id=request_id,
    )
    with connect(ctx) as client:
        response = client.payments.CreateTransfer(request)
    emit(ctx, response, lambda: transfer_record(response.transfer))


@transfers_app.command("get")
def get_transfer(
    ctx: typer.Context, transfer_id: Annotated[str, typer.Argument(metavar="ID", help="Transfer id.")]
) -> None:
    """Show a transfer and its legs."""
    with connect(ctx) as client:
        response = client.payments.GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id))
    emit(ctx, response, lambda: transfer_record(response.transfer))


@app.command()
def entries(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT", help="Account id.")],
    start: Annotated[str, typer.Option("--start", help="ISO time; entries at or after it.")] = "",
    end: Annotated[str, typer.Option("--end", help="ISO time; entries before it.")] = "",
) -> None:
    """List an account's journal entries with the balance after each, oldest first."""
    query = pb.ListEntriesRequest(account_id=account_id, page_size=PAGE_SIZE)
    if start:
        query.start_time.CopyFrom(_timestamp("--start", start))
    if end:
        query.end_time.CopyFrom(_timestamp("--end", end))
    with connect(ctx) as client:
        found = list_all(client.payments.ListEntries, query, lambda r: r.entries)
    emit(ctx, pb.ListEntriesResponse(entries=found), lambda: entries_table(found))


@app.command()
def balance(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT", help="Account id.")],
    at: Annotated[str, typer.Option("--at", help="ISO time in the past; UTC without an offset.")],
) -> None:
    """Show an account's ledger balance as it was at a past time (the balance now, with what is held
    and available: `payments accounts get`)."""
    request = pb.GetBalanceRequest(account_id=account_id, as_of_time=_timestamp("--at", at))
    with connect(ctx) as client:
        response = client.payments.GetBalance(request)
    emit(ctx, response, lambda: balance_record(response))


@app.command()
def refund(
    ctx: typer.Context,
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER_ID", help="A completed transfer.")],
    *,
    leg: Annotated[int, typer.Option("--leg", min=0, help="Which leg to refund (0-based).")] = 0,
    amount: Annotated[int, typer.Option("--amount", min=1, help="Minor units to send back.")],
    request_id: RequestIdOption = "",
) -> None:
    """Send money of one leg of a transfer back from its payee to its payer."""
    request = pb.CreateRefundRequest(
        transfer_id=transfer_id, leg_index=leg, amount_minor=amount, request_id=request_id
    )
    with connect(ctx) as client:
        response = client.payments.CreateRefund(request)
    emit(ctx, response, lambda: refund_record(response.refund))


@app.command()
def batch(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(metavar="FILE.jsonl", exists=True, dir_okay=False, help="One transfer per line.")
    ],
) -> None:
    """Make up to 1000 independent transfers, one per line of FILE; each succeeds or fails on its own.

    A line is a CreateTransferRequest as proto JSON: {"requestId": "pay-1", "currencyCode": "CNY",
    "legs": [{"debitAccountId": "a", "creditAccountId": "b", "amountMinor": "100"}]}. Give every line a
    requestId to make a rerun of the file safe; a line without one gets a fresh id. Exits 4 when some
    lines failed (the others are done).
    """
    requests = _batch_requests(path)
    with connect(ctx) as client:
        response = client.payments.BatchCreateTransfers(pb.BatchCreateTransfersRequest(requests=requests))
    emit(ctx, response, lambda: batch_table(requests, response.results))
    failed = sum(result.HasField("error") for result in response.results)
    if failed:
        typer.echo(f"{failed} of {len(requests)} transfers failed", err=True)
        raise typer.Exit(EXIT_PARTIAL)


@holds_app.command("create")
def create_hold(
    ctx: typer.Context,
    *,
    payer: Annotated[str, typer.Option("--from", help="Account to reserve the amount on.")],
    payee: Annotated[str, typer.Option("--to", help="Account a capture pays.")],
    amount: Annotated[int, typer.Option("--amount", min=1, help="Minor units to reserve.")],
    currency: CurrencyOption,
    expires: Annotated[str, typer.Option("--expires", help="ISO time, at most 30 days ahead.")],
    request_id: RequestIdOption = "",
) -> None:
    """Reserve money on an account; it is released by itself when it expires uncaptured."""
    request = pb.CreateHoldRequest(
        account_id=payer,
        payee_account_id=payee,
        currency_code=currency.upper(),
        amount_minor=amount,
        expire_time=_timestamp("--expires", expires),
        request_id=request_id,
    )
    with connect(ctx) as client:
        response = client.payments.CreateHold(request)
    emit(ctx, response, lambda: hold_record(response.hold))


@app.command()
def events(
    ctx: typer.Context,
    *,
    cursor: Annotated[str, typer.Option("--cursor", help="Resume after this cursor.")] = "",
    from_oldest: Annotated[
        bool, typer.Option("--from-oldest", help="Start at the oldest event kept.")
    ] = False,
    account: Annotated[str, typer.Option("--account", help="Only events about this account.")] = "",
    count: Annotated[
        int, typer.Option("--count", min=0, help="Stop after this many events (0: follow).")
    ] = 0,
) -> None:
    """Follow the tenant's money events (WatchEvents); the last line is the cursor to resume from. A
    stream that ends or breaks (the server restarts, say) is opened again from the last cursor."""
    request = pb.WatchEventsRequest(cursor=cursor, from_oldest=from_oldest, account_id=account)
    with connect(ctx) as client:
        cursor = follow_events(
            client.payments.WatchEvents,
            request,
            count,
            lambda response: emit(ctx, response, functools.partial(_event_lines, response)),
        )
    if not state(ctx).json_output:
        show(text(f"cursor {cursor}"))


Watch = Callable[[pb.WatchEventsRequest], Iterable[pb.WatchEventsResponse]]


def follow_events(
    watch: Watch,
    request: pb.WatchEventsRequest,
    count: int,
    show: Callable[[pb.WatchEventsResponse], None],
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Show the responses of `watch` until `count` events (0: for ever), opening the stream again from
    the last cursor when it ends or fails with UNAVAILABLE or DEADLINE_EXCEEDED; gives up after
    `events_failures_in_a_row_max` failures in a row. Returns the last cursor."""
    from jubao.errors import DeadlineExceeded, Unavailable

    cursor, seen, failures = request.cursor, 0, 0
    for _ in range(events_streams_max):
        attempt = pb.WatchEventsRequest()
        attempt.CopyFrom(request)
        attempt.cursor = cursor
        try:
            for response in watch(attempt):
                show(response)
                cursor, seen, failures = response.cursor, seen + len(response.events), 0
                if count and seen >= count:
                    return cursor
        except (Unavailable, DeadlineExceeded) as error:
            failures += 1
            if failures > events_failures_in_a_row_max:
                raise
            typer.echo(f"event stream broke ({error.reason}); reconnecting", err=True)
            sleep(events_reconnect_backoff_s * 2 ** min(failures, events_backoff_doublings_max))
    return cursor


def _event_lines(response: pb.WatchEventsResponse) -> RenderableType:
    lines = [
        f"{event.event_id}  {enum_label(pb.EventKind.Name(event.kind), 'EVENT_KIND_')}  "
        f"{time_label(event.time)}  {event.transfer_id or event.hold.hold_id or event.escrow.escrow_id}  "
        f"{' '.join(event.account_ids)}"
        for event in response.events
    ]
    return text("\n".join(lines))


@holds_app.command("capture")
def capture_hold(
    ctx: typer.Context, hold_id: HoldArgument, amount: PortionOption = 0, request_id: RequestIdOption = ""
) -> None:
    """Pay all or part of a hold to its payee; the rest is released."""
    request = pb.CaptureHoldRequest(hold_id=hold_id, amount_minor=amount, request_id=request_id)
    with connect(ctx) as client:
        response = client.payments.CaptureHold(request)
    emit(ctx, response, lambda: hold_record(response.hold))


@holds_app.command("void")
def void_hold(ctx: typer.Context, hold_id: HoldArgument, request_id: RequestIdOption = "") -> None:
    """Release a hold without paying anything."""
    with connect(ctx) as client:
        response = client.payments.VoidHold(pb.VoidHoldRequest(hold_id=hold_id, request_id=request_id))
    emit(ctx, response, lambda: hold_record(response.hold))


@holds_app.command("get")
def get_hold(ctx: typer.Context, hold_id: HoldArgument) -> None:
    """Show a hold."""
    with connect(ctx) as client:
        response = client.payments.GetHold(pb.GetHoldRequest(hold_id=hold_id))
    emit(ctx, response, lambda: hold_record(response.hold))


@escrows_app.command("create")
def create_escrow(
    ctx: typer.Context,
    *,
    buyer: Annotated[str, typer.Option("--buyer", help="Account that pays.")],
    seller: Annotated[str, typer.Option("--seller", help="Account paid on release.")],
    holder: Annotated[str, typer.Option("--escrow-account", help="Escrow account the money waits in.")],
    amount: Annotated[int, typer.Option("--amount", min=1, help="Minor units the buyer pays.")],
    currency: CurrencyOption,
    release_at: Annotated[str, typer.Option("--release-at", help="ISO time of the automatic release.")],
    fee: Annotated[int, typer.Option("--fee", min=0, help="Minor units taken at release.")] = 0,
    fee_account: Annotated[str, typer.Option("--fee-account", help="Account the fee goes to.")] = "",
    request_id: RequestIdOption = "",
) -> None:
    """Debit the buyer into an escrow account until release (to the seller, less the fee) or refund."""
    request = pb.CreateEscrowRequest(
        buyer_account_id=buyer,
        seller_account_id=seller,
        escrow_account_id=holder,
        currency_code=currency.upper(),
        amount_minor=amount,
        fee_account_id=fee_account,
        fee_minor=fee,
        release_time=_timestamp("--release-at", release_at),
        request_id=request_id,
    )
    with connect(ctx) as client:
        response = client.payments.CreateEscrow(request)
    emit(ctx, response, lambda: escrow_record(response.escrow))


@escrows_app.command("release")
def release_escrow(ctx: typer.Context, escrow_id: EscrowArgument, request_id: RequestIdOption = "") -> None:
    """Pay what is left of an escrow to the seller, less the fee."""
    request = pb.ReleaseEscrowRequest(escrow_id=escrow_id, request_id=request_id)
    with connect(ctx) as client:
        response = client.payments.ReleaseEscrow(request)
    emit(ctx, response, lambda: escrow_record(response.escrow))


@escrows_app.command("refund")
def refund_escrow(
    ctx: typer.Context, escrow_id: EscrowArgument, amount: PortionOption = 0, request_id: RequestIdOption = ""
) -> None:
    """Return all or part of what is left of an escrow to the buyer."""
    request = pb.RefundEscrowRequest(escrow_id=escrow_id, amount_minor=amount, request_id=request_id)
    with connect(ctx) as client:
        response = client.payments.RefundEscrow(request)
    emit(ctx, response, lambda: escrow_record(response.escrow))


@escrows_app.command("dispute")
def dispute_escrow(ctx: typer.Context, escrow_id: EscrowArgument, request_id: RequestIdOption = "") -> None:
    """Block the release of an escrow; it can then only be refunded."""
    request = pb.DisputeEscrowRequest(escrow_id=escrow_id, request_id=request_id)
    with connect(ctx) as client:
        response = client.payments.DisputeEscrow(request)
    emit(ctx, response, lambda: escrow_record(response.escrow))


@escrows_app.command("get")
def get_escrow(ctx: typer.Context, escrow_id: EscrowArgument) -> None:
    """Show an escrow."""
    with connect(ctx) as client:
        response = client.payments.GetEscrow(pb.GetEscrowRequest(escrow_id=escrow_id))
    emit(ctx, response, lambda: escrow_record(response.escrow))


def _set_frozen(
    ctx: typer.Context, account_id: str, debits: bool, credits: bool, request_id: str, *, frozen: bool
) -> None:
    both = not debits and not credits
    with connect(ctx) as client:
        policy = client.payments.GetAccount(pb.GetAccountRequest(account_id=account_id)).account.policy
        if debits or both:
            policy.debits_frozen = frozen
        if credits or both:
            policy.credits_frozen = frozen
        request = pb.UpdateAccountRequest(
            account_id=account_id,
            policy=policy,
            update_mask=FieldMask(paths=["policy"]),
            request_id=request_id,
        )
        response = client.payments.UpdateAccount(request)
    emit(ctx, response, lambda: account_record(response.account))


def _parse_leg(text: str) -> tuple[str, int]:
    account_id, _, amount = text.rpartition(":")
    if not account_id or not amount.isdigit() or int(amount) <= 0:
        raise typer.BadParameter(f"{text!r} is not ACCOUNT:AMOUNT with a positive amount", param_hint="--leg")
    return account_id, int(amount)


def _timestamp(option: str, text: str) -> Timestamp:
    """An ISO 8601 time; without an offset it is UTC."""
    stamp = Timestamp()
    stamp.FromDatetime(parse_time(option, text))
    return stamp


def _batch_requests(path: Path) -> list[pb.CreateTransferRequest]:
    lines = enumerate(path.read_text().splitlines(), 1)
    return [_batch_request(path, number, line) for number, line in lines if line.strip()]


def _batch_request(path: Path, number: int, line: str) -> pb.CreateTransferRequest:
    """One line as a request; without a request id it gets a fresh one (the SDK fills only top-level ids)."""
    from google.protobuf import json_format

    try:
        request = json_format.Parse(line, pb.CreateTransferRequest())
    except json_format.ParseError as error:
        raise typer.BadParameter(f"line {number}: {error}", param_hint=str(path)) from None
    request.request_id = request.request_id or str(uuid.uuid4())
    return request


def _reason(status: pb.Status) -> str:
    from google.rpc import error_details_pb2

    info = error_details_pb2.ErrorInfo()
    return next((info.reason for detail in status.details if detail.Unpack(info)), "")


def _kind(account: pb.Account) -> str:
    return enum_label(pb.AccountKind.Name(account.kind), "ACCOUNT_KIND_")


def _frozen(policy: pb.AccountPolicy) -> str:
    sides = [
        side for side, on in (("debits", policy.debits_frozen), ("credits", policy.credits_frozen)) if on
    ]
    return ", ".join(sides)


def accounts_table(accounts: list[pb.Account]) -> Table:
    headers = ("ID", "CURRENCY", "KIND", "NAME", "LEDGER", "HELD", "AVAILABLE", "FROZEN")
    rows = [
        (
            account.account_id,
            account.currency_code,
            _kind(account),
            account.display_name,
            str(account.balance.ledger_minor),
            str(account.balance.held_minor),
            str(account.balance.available_minor),
            _frozen(account.policy),
        )
        for account in accounts
    ]
    return list_table(headers, rows, wrap=(3,))


def account_record(account: pb.Account) -> Table:
    policy = account.policy
    return record_table(
        [
            ("account", account.account_id),
            ("name", account.display_name),
            ("currency", account.currency_code),
            ("kind", _kind(account)),
            ("ledger (minor)", str(account.balance.ledger_minor)),
            ("held (minor)", str(account.balance.held_minor)),
            ("available (minor)", str(account.balance.available_minor)),
            ("may go negative", "yes" if policy.allow_negative else ""),
            ("frozen", _frozen(policy)),
            ("single payment limit", str(policy.single_payment_limit_minor or "")),
            ("daily outflow limit", str(policy.daily_outflow_limit_minor or "")),
            ("created", time_label(account.create_time)),
            ("updated", time_label(account.update_time)),
            ("version", str(account.version)),
        ]
    )


def transfer_record(transfer: pb.Transfer) -> Table:
    legs = "\n".join(
        f"{leg.debit_account_id} -> {leg.credit_account_id}: {leg.amount_minor}" for leg in transfer.legs
    )
    return record_table(
        [
            ("transfer", transfer.transfer_id),
            ("request id", transfer.request_id),
            ("state", enum_label(pb.TransferState.Name(transfer.state), "TRANSFER_STATE_")),
            ("currency", transfer.currency_code),
            ("legs (minor)", legs),
            ("memo", transfer.memo),
            ("created", time_label(transfer.create_time)),
            ("refused", transfer.failure.message),
        ]
    )


def entries_table(found: list[pb.Entry]) -> Table:
    headers = ("SEQ", "TIME", "TRANSFER", "LEG", "KIND", "AMOUNT", "BALANCE")
    rows = [
        (
            str(entry.entry_seq),
            time_label(entry.time),
            entry.transfer_id,
            str(entry.leg_index),
            enum_label(pb.EntryKind.Name(entry.kind), "ENTRY_KIND_"),
            str(entry.amount_minor),
            str(entry.balance_after_minor),
        )
        for entry in found
    ]
    return list_table(headers, rows, wrap=(1,))


def balance_record(response: pb.GetBalanceResponse) -> Table:
    return record_table(
        [
            ("account", response.account_id),
            ("as of", time_label(response.as_of_time)),
            ("ledger (minor)", str(response.ledger_minor)),
            ("last entry", str(response.entry_seq or "none")),
        ]
    )


def refund_record(found: pb.Refund) -> Table:
    return record_table(
        [
            ("refund", found.refund_id),
            ("request id", found.request_id),
            ("transfer", found.transfer_id),
            ("leg", str(found.leg_index)),
            ("amount (minor)", str(found.amount_minor)),
            ("refund transfer", found.refund_transfer_id),
            ("created", time_label(found.create_time)),
        ]
    )


def batch_table(requests: list[pb.CreateTransferRequest], results: Sequence[pb.TransferResult]) -> Table:
    headers = ("#", "REQUEST ID", "TRANSFER", "ERROR", "MESSAGE")
    rows = [
        (
            str(index),
            request.request_id,
            result.transfer.transfer_id,
            _reason(result.error),
            result.error.message,
        )
        for index, (request, result) in enumerate(zip(requests, results, strict=True))
    ]
    return list_table(headers, rows, wrap=(4,))


def hold_record(hold: pb.Hold) -> Table:
    return record_table(
        [
            ("hold", hold.hold_id),
            ("request id", hold.request_id),
            ("state", enum_label(pb.HoldState.Name(hold.state), "HOLD_STATE_")),
            ("account", hold.account_id),
            ("payee", hold.payee_account_id),
            ("currency", hold.currency_code),
            ("amount (minor)", str(hold.amount_minor)),
            ("captured (minor)", str(hold.captured_minor or "")),
            ("capture transfer", hold.capture_transfer_id),
            ("expires", time_label(hold.expire_time)),
            ("created", time_label(hold.create_time)),
            ("refused", hold.failure.message),
        ]
    )


def escrow_record(escrow: pb.Escrow) -> Table:
    return record_table(
        [
            ("escrow", escrow.escrow_id),
            ("request id", escrow.request_id),
            ("state", enum_label(pb.EscrowState.Name(escrow.state), "ESCROW_STATE_")),
            ("buyer", escrow.buyer_account_id),
            ("seller", escrow.seller_account_id),
            ("escrow account", escrow.escrow_account_id),
            ("currency", escrow.currency_code),
            ("amount (minor)", str(escrow.amount_minor)),
            ("fee (minor)", str(escrow.fee_minor or "")),
            ("fee account", escrow.fee_account_id),
            ("refunded (minor)", str(escrow.refunded_minor or "")),
            ("release time", time_label(escrow.release_time)),
            ("created", time_label(escrow.create_time)),
        ]
    )
