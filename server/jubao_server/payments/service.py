"""jubao.payments.v1.PaymentService: accounts, transfers and journal entries of the caller's tenant. The
pipeline has already checked that the tenant has the payments product; the ledger does the rest,
including idempotency by request id."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message
from jubao.payments.v1 import payments_pb2 as pb
from jubao.payments.v1 import payments_pb2_grpc as pb_grpc

from jubao_server.errors import invalid
from jubao_server.payments.api import Idempotency, LedgerApi
from jubao_server.payments.convert import (
    account_change,
    account_to_pb,
    checked_id,
    entry_query,
    entry_to_pb,
    open_account_command,
    transfer_command,
    transfer_to_pb,
)
from jubao_server.platform.context import current_caller
from jubao_server.platform.idempotency import body_sha256
from jubao_server.platform.paging import decode_token, encode_token, page_size

Context = grpc.aio.ServicerContext[Any, Any]


class PaymentService(pb_grpc.PaymentServiceServicer):
    def __init__(self, ledger: LedgerApi) -> None:
        self._ledger = ledger

    async def OpenAccount(self, request: pb.OpenAccountRequest, context: Context) -> pb.OpenAccountResponse:
        command = open_account_command(request)
        view = await self._ledger.open_account(_tenant_id(), command, _idempotency(request))
        return pb.OpenAccountResponse(account=account_to_pb(view))

    async def GetAccount(self, request: pb.GetAccountRequest, context: Context) -> pb.GetAccountResponse:
        account_id = checked_id("account_id", request.account_id)
        view = await self._ledger.get_account(_tenant_id(), account_id)
        return pb.GetAccountResponse(account=account_to_pb(view))

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        limit = page_size(request.page_size)
        after = decode_token("ListAccounts", request.page_token)
        views, next_after = await self._ledger.list_accounts(_tenant_id(), after, limit)
        return pb.ListAccountsResponse(
            accounts=[account_to_pb(view) for view in views],
            next_page_token=encode_token("ListAccounts", next_after),
        )

    async def UpdateAccount(
        self, request: pb.UpdateAccountRequest, context: Context
    ) -> pb.UpdateAccountResponse:
        change = account_change(request)
        view = await self._ledger.update_account(
            _tenant_id(), request.account_id, change, _idempotency(request)
        )
        return pb.UpdateAccountResponse(account=account_to_pb(view))

    async def CreateTransfer(
        self, request: pb.CreateTransferRequest, context: Context
    ) -> pb.CreateTransferResponse:
        command = transfer_command(request)
        transfer = await self._ledger.create_transfer(_tenant_id(), command, _idempotency(request))
        return pb.CreateTransferResponse(transfer=transfer_to_pb(transfer))

    async def GetTransfer(self, request: pb.GetTransferRequest, context: Context) -> pb.GetTransferResponse:
        transfer_id = checked_id("transfer_id", request.transfer_id)
        transfer = await self._ledger.get_transfer(_tenant_id(), transfer_id)
        return pb.GetTransferResponse(transfer=transfer_to_pb(transfer))

    async def ListEntries(self, request: pb.ListEntriesRequest, context: Context) -> pb.ListEntriesResponse:
        limit = page_size(request.page_size)
        after = _entry_seq(decode_token("ListEntries", request.page_token))
        entries, last_seq = await self._ledger.list_entries(_tenant_id(), entry_query(request, after, limit))
        return pb.ListEntriesResponse(
            entries=[entry_to_pb(entry) for entry in entries],
            next_page_token=encode_token("ListEntries", None if last_seq is None else str(last_seq)),
        )


def _tenant_id() -> str:
    return current_caller().tenant.tenant_id


def _idempotency(request: Message) -> Idempotency:
    request_id: str = getattr(request, "request_id")  # noqa: B009
    return Idempotency(request_id, body_sha256(request))


def _entry_seq(position: str | None) -> int | None:
    if position is None:
        return None
    if not position.isdigit():
        raise invalid("page_token", "is not a position of this list")
    return int(position)
