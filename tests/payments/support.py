"""Helpers of the payments end-to-end tests: accounts, transfers, balances, rejections and the CLI; fresh
tenants for server processes."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.cli.common import EXIT_CALL_FAILED
from jubao.cli.main import app
from jubao.client import AsyncClient, ClientConfig, JubaoError, Reason
from jubao.errors import error_from_status
from jubao.payments.v1 import payments_pb2 as pb
from typer.testing import CliRunner

from tests.platform.harness import Running, demo_keys

INT64_MAX = 2**63 - 1
FUNDS_MINOR = 10_000
COMPLETION_POLLS_MAX = 50
# Holds expire and escrows release on a sweep that runs at least every second.
SWEEP_WAIT_S = 10.0
SWEEP_POLL_S = 0.1
HOUR_S = 3600.0
SETTLE_POLLS_MAX = 50

T = TypeVar("T")
CUSTOMER = pb.ACCOUNT_KIND_CUSTOMER


def leg(debit: str, credit: str, amount_minor: int) -> pb.Leg:
    return pb.Leg(debit_account_id=debit, credit_account_id=credit, amount_minor=amount_minor)


async def open_account(
    client: AsyncClient,
    account_id: str,
    currency: str = "CNY",
    kind: pb.AccountKind.ValueType = CUSTOMER,
    **policy: Any,
) -> pb.Account:
    account = pb.Account(
        account_id=account_id, currency_code=currency, kind=kind, policy=pb.AccountPolicy(**policy)
    )
    response = await client.payments.OpenAccount(pb.OpenAccountRequest(account=account))
    return response.account


async def pay(
    client: AsyncClient, *legs: pb.Leg, currency: str = "CNY", request_id: str = "", memo: str = ""
) -> pb.Transfer:
    request = pb.CreateTransferRequest(request_id=request_id, currency_code=currency, legs=legs, memo=memo)
    response = await client.payments.CreateTransfer(request)
    return response.transfer


async def balance(client: AsyncClient, account_id: str) -> pb.Balance:
    response = await client.payments.GetAccount(pb.GetAccountRequest(account_id=account_id))
    return response.account.balance


async def ledgers_minor(client: AsyncClient, *account_ids: str) -> list[int]:
    return [(await balance(client, account_id)).ledger_minor for account_id in account_ids]


async def entries(client: AsyncClient, account_id: str, page_size: int = 0) -> list[pb.Entry]:
    """Every entry of an account, page by page."""
    found: list[pb.Entry] = []
    token = ""
    for _ in range(100):
        request = pb.ListEntriesRequest(account_id=account_id, page_size=page_size, page_token=token)
        response = await client.payments.ListEntries(request)
        found += response.entries
        token = response.next_page_token
        if not token:
            return found
    raise AssertionError("ListEntries did not end")


async def update_policy(client: AsyncClient, account_id: str, **policy: Any) -> pb.Account:
    request = pb.UpdateAccountRequest(
        account_id=account_id, policy=pb.AccountPolicy(**policy), update_mask=FieldMask(paths=["policy"])
    )
    return (await client.payments.UpdateAccount(request)).account


async def completed(client: AsyncClient, transfer_id: str) -> pb.Transfer:
    """The transfer once every credit is delivered (cross-shard credits land shortly after the debit)."""
    request = pb.GetTransferRequest(transfer_id=transfer_id)
    for _ in range(COMPLETION_POLLS_MAX):
        transfer = (await client.payments.GetTransfer(request)).transfer
        if transfer.state == pb.TRANSFER_STATE_COMPLETED:
            return transfer
        await asyncio.sleep(0.05)
    raise AssertionError(f"transfer {transfer_id} did not complete")


def json_document(output: str) -> dict[str, Any]:
    """The JSON the CLI printed; the in-process server's log lines share its stdout."""
    start = re.search(r"^\{$", output, re.MULTILINE)
    assert start is not None, output
    parsed, _ = json.JSONDecoder().raw_decode(output, start.start())
    assert isinstance(parsed, dict)
    return parsed


async def rejected(call: Awaitable[Any], error_type: type[JubaoError], reason: Reason) -> JubaoError:
    with pytest.raises(error_type) as caught:
        await call
    assert caught.value.reason == reason, caught.value
    return caught.value


def cli_of(running: Running, api_key: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    """`jubao --json payments ARGS...` against the running server; the JSON it printed: the response, or
    the error on stderr when the command exits 1. Fails unless the command exits `exit_code`."""
    base = ["--endpoint", running.address, "--api-key", api_key, "--json", "payments"]

    async def cli(*args: str, exit_code: int = 0) -> dict[str, Any]:
        result = await asyncio.to_thread(CliRunner().invoke, app, [*base, *args])
        assert result.exit_code == exit_code, result.output
        return json_document(result.stderr if exit_code == EXIT_CALL_FAILED else result.stdout)

    return cli


def hold_request(
    amount_minor: int = 1_000, expire_time: Timestamp | None = None, request_id: str = ""
) -> pb.CreateHoldRequest:
    """alice reserves `amount_minor` fen for shop until `expire_time` (an hour from now by default)."""
    return pb.CreateHoldRequest(
        request_id=request_id,
        account_id="alice",
        payee_account_id="shop",
        currency_code="CNY",
        amount_minor=amount_minor,
        expire_time=expire_time or seconds_from_now(HOUR_S),
    )


def escrow_request(
    amount_minor: int = 1_000,
    release_time: Timestamp | None = None,
    request_id: str = "",
    fee_minor: int = 0,
) -> pb.CreateEscrowRequest:
    """alice buys from shop for `amount_minor` fen through the escrow account, `fee_minor` of it going to
    fees, released at `release_time` (an hour from now by default)."""
    return pb.CreateEscrowRequest(
        request_id=request_id,
        buyer_account_id="alice",
        seller_account_id="shop",
        escrow_account_id="escrow",
        currency_code="CNY",
        amount_minor=amount_minor,
        fee_account_id="fees" if fee_minor else "",
        fee_minor=fee_minor,
        release_time=release_time or seconds_from_now(HOUR_S),
    )


def seconds_from_now(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(time.time_ns() // 1_000_000 + int(seconds * 1000))
    return stamp


async def eventually(fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """What `fetch` returns once `done` holds, polling for at most SWEEP_WAIT_S."""
    for _ in range(int(SWEEP_WAIT_S / SWEEP_POLL_S)):
        found = await fetch()
        if done(found):
            return found
        await asyncio.sleep(SWEEP_POLL_S)
    raise AssertionError(f"still not done after {SWEEP_WAIT_S} s: {found}")


def item_error(status: pb.Status) -> JubaoError:
    """The typed error of a batch item's status, read as the google.rpc.Status it is on the wire."""
    return error_from_status(status.code, status_pb2.Status.FromString(status.SerializeToString()), "")


async def fresh_tenant(address: str) -> tuple[str, str]:
    """A new tenant with payments, so that its shards start unowned; its id and key."""
    tenant_id = f"cluster-{uuid.uuid4().hex[:12]}"
    tenant = admin_pb.Tenant(
        tenant_id=tenant_id,
        display_name="Cluster test",
        kind=admin_pb.TENANT_KIND_BANK,
        quota=admin_pb.Quota(requests_per_s=10_000, burst_requests=10_000, concurrent_calls_max=1_000),
        products=[admin_pb.PRODUCT_PAYMENTS],
    )
    config = ClientConfig(endpoint=address, api_key=demo_keys()["demo-operator"])
    async with AsyncClient(config) as operator:
        await operator.admin.CreateTenant(admin_pb.CreateTenantRequest(request_id=tenant_id, tenant=tenant))
        issued = await operator.admin.IssueApiKey(admin_pb.IssueApiKeyRequest(tenant_id=tenant_id))
    return tenant_id, issued.secret


async def settled_balances(
    client: AsyncClient, customers: list[str], expected: Counter[str]
) -> dict[str, int]:
    """Balances once every credit landed (a credit left in another process's inbox lands a poll later)."""
    balances: dict[str, int] = {}
    for _ in range(SETTLE_POLLS_MAX):
        try:
            for account_id in customers:
                reply = await client.payments.GetAccount(pb.GetAccountRequest(account_id=account_id))
                balances[account_id] = reply.account.balance.ledger_minor
        except JubaoError:
            await asyncio.sleep(0.1)
            continue
        if balances == dict(expected):
            break
        await asyncio.sleep(0.1)
    return balances
