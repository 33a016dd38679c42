"""`jubao payments ...`: accounts, transfers and journal entries of the caller's tenant (PaymentService).

Amounts are integers in the minor unit of the currency (fen for CNY, cents for USD, yen for JPY).
"""

from __future__ import annotations

import datetime
import functools
from enum import StrEnum
from typing import Annotated

import typer
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from jubao.cli.common import (
    PAGE_SIZE,
    Page,
    collect_pages,
    connect,
    emit,
    enum_label,
    list_table,
    record_table,
    time_label,
)
from jubao.client import Client
from jubao.payments.v1 import payments_pb2 as pb

app = typer.Typer(help="Accounts, transfers and journal entries (payments product).", no_args_is_help=True)
accounts_app = typer.Typer(help="Open, show, list, freeze and unfreeze accounts.", no_args_is_help=True)
transfers_app = typer.Typer(help="Show transfers.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(transfers_app, name="transfers")


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


@accounts_app.command("open")
def open_account(
    ctx: typer.Context,
    account_id: NewAccountArgument = "",
    *,
    currency: Annotated[str, CURRENCY_OPTION],
    kind: Annotated[Kind, typer.Option("--kind", help="What the account is for.")],
    allow_negative: Annotated[bool, typer.Option("--allow-negative", help="May go below zero.")] = False,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
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
        response = client.payments.OpenAccount(pb.OpenAccountRequest(account=account))
    emit(ctx, response, lambda: account_record(response.account))


@accounts_app.command("get")
def get_account(ctx: typer.Context, account_id: AccountArgument) -> None:
    """Show an account and its balance."""
    with connect(ctx) as client:
        response = client.payments.GetAccount(pb.GetAccountRequest(account_id=account_id))
    emit(ctx, response, lambda: account_record(response.account))


@accounts_app.command("list")
def list_accounts(ctx: typer.Context) -> None:
    """List every account with its balance."""
    with connect(ctx) as client:
        accounts = collect_pages(functools.partial(_account_page, client))
    emit(ctx, pb.ListAccountsResponse(accounts=accounts), lambda: accounts_table(accounts))


@accounts_app.command()
def freeze(
    ctx: typer.Context,
    account_id: AccountArgument,
    debits: DebitsOption = False,
    credits: CreditsOption = False,
) -> None:
    """Freeze an account: transfers out of it (--debits), into it (--credits) or both (default) fail."""
    _set_frozen(ctx, account_id, debits, credits, frozen=True)


@accounts_app.command()
def unfreeze(
    ctx: typer.Context,
    account_id: AccountArgument,
    debits: DebitsOption = False,
    credits: CreditsOption = False,
) -> None:
    """Unfreeze an account's debits (--debits), credits (--credits) or both (default)."""
    _set_frozen(ctx, account_id, debits, credits, frozen=False)


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
) -> None:
    """Move money from one account to one or more others, atomically (a fresh request id each run)."""
    payees = [(payee, amount), *(_parse_leg(leg) for leg in legs or ())]
    request = pb.CreateTransferRequest(
        currency_code=currency.upper(),
        legs=[
            pb.Leg(debit_account_id=payer, credit_account_id=to, amount_minor=minor) for to, minor in payees
        ],
        memo=memo,
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
        found = collect_pages(functools.partial(_entry_page, client, query))
    emit(ctx, pb.ListEntriesResponse(entries=found), lambda: entries_table(found))


def _set_frozen(ctx: typer.Context, account_id: str, debits: bool, credits: bool, *, frozen: bool) -> None:
    both = not debits and not credits
    with connect(ctx) as client:
        policy = client.payments.GetAccount(pb.GetAccountRequest(account_id=account_id)).account.policy
        if debits or both:
            policy.debits_frozen = frozen
        if credits or both:
            policy.credits_frozen = frozen
        request = pb.UpdateAccountRequest(
            account_id=account_id, policy=policy, update_mask=FieldMask(paths=["policy"])
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
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from None
    stamp = Timestamp()
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC))
    return stamp


def _account_page(client: Client, page_token: str) -> Page[pb.Account]:
    response = client.payments.ListAccounts(
        pb.ListAccountsRequest(page_size=PAGE_SIZE, page_token=page_token)
    )
    return response.accounts, response.next_page_token


def _entry_page(client: Client, query: pb.ListEntriesRequest, page_token: str) -> Page[pb.Entry]:
    request = pb.ListEntriesRequest()
    request.CopyFrom(query)
    request.page_token = page_token
    response = client.payments.ListEntries(request)
    return response.entries, response.next_page_token


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
    return list_table(headers, rows)


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
        ]
    )


def entries_table(found: list[pb.Entry]) -> Table:
    headers = ("SEQ", "TIME", "TRANSFER", "LEG", "KIND", "AMOUNT", "BALANCE AFTER")
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
    return list_table(headers, rows)
