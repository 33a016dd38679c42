"""jubao.payments.v1.PaymentService: accounts, transfers, journal entries, holds, escrows and refunds of
the caller's tenant. The pipeline has already checked that the tenant has the payments product; the
ledger does the rest, including idempotency by request id."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
from google.protobuf.message import Message
from jubao.payments.v1 import payments_pb2 as pb
from jubao.payments.v1 import payments_pb2_grpc as pb_grpc
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, HeldElsewhere, unavailable
from jubao_server.invariants import ensure
from jubao_server.payments.api import Idempotency, LedgerApi, TransferCommand
from jubao_server.payments.batch import create_transfers
from jubao_server.payments.convert import (
    account_change,
    account_to_pb,
    balance_time_ms,
    balance_to_pb,
    batch_items,
    check_refund,
    checked_id,
    checked_item_id,
    entry_query,
    entry_to_pb,
    error_to_pb,
    escrow_command,
    escrow_to_pb,
    event_filter,
    event_to_pb,
    hold_command,
    hold_to_pb,
    open_account_command,
    reconcile_to_pb,
    refund_to_pb,
    transfer_command,
    transfer_to_pb,
)
from jubao_server.payments.model import Transfer
from jubao_server.platform.context import current_caller
from jubao_server.platform.forwarding import ForwardedError, Forwarder
from jubao_server.platform.idempotency import body_sha256
from jubao_server.platform.paging import PageTokens, page_size
from jubao_server.products import GrpcService, ServiceContext

Context = grpc.aio.ServicerContext[Any, Any]


BATCH_METHOD: Final = "/jubao.payments.v1.PaymentService/BatchCreateTransfers"


def grpc_services(ledger: LedgerApi, context: ServiceContext) -> list[GrpcService]:
    """The product's gRPC services: PaymentService on `ledger`."""
    servicer = PaymentService(ledger, context.forwarder, context.pages, context.clock)
    add = functools.partial(pb_grpc.add_PaymentServiceServicer_to_server, servicer)
    return [GrpcService(pb.DESCRIPTOR.services_by_name["PaymentService"], add)]


class PaymentService(pb_grpc.PaymentServiceServicer):
    def __init__(self, ledger: LedgerApi, forwarder: Forwarder, pages: PageTokens, clock: Clock) -> None:
        self._ledger = ledger
        self._forwarder = forwarder
        self._pages = pages
        self._clock = clock

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
        page = self._pages.query(_tenant_id(), request)
        views, next_after = await self._ledger.list_accounts(_tenant_id(), page.start(), limit)
        return pb.ListAccountsResponse(
            accounts=[account_to_pb(view) for view in views], next_page_token=page.next(next_after)
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
        page = self._pages.query(_tenant_id(), request)
        query = entry_query(request, _entry_seq(page.start()), limit)
        entries, last_seq = await self._ledger.list_entries(_tenant_id(), query)
        return pb.ListEntriesResponse(
            entries=[entry_to_pb(entry) for entry in entries],
            next_page_token=page.next(None if last_seq is None else str(last_seq)),
        )

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Context) -> pb.GetBalanceResponse:
        as_of_ms = balance_time_ms(request, self._clock.wall_ms())
        return balance_to_pb(await self._ledger.balance_at(_tenant_id(), request.account_id, as_of_ms))

    async def BatchCreateTransfers(
        self, request: pb.BatchCreateTransfersRequest, context: Context
    ) -> pb.BatchCreateTransfersResponse:
        """The valid requests run through the ledger's batch path (one command per payer shard); each
        result is the transfer or the error of that request alone. The requests whose payer's shard
        another server holds go to that server, in one batch per server."""
        items = batch_items(request)
        results = [
            pb.TransferResult(error=error_to_pb(i)) if isinstance(i, ApiError) else pb.TransferResult()
            for i in items
        ]
        valid = [(i, item) for i, item in enumerate(items) if isinstance(item, TransferCommand)]
        commands = [(item, _idempotency(request.requests[i])) for i, item in valid]
        outcomes = await create_transfers(self._ledger, _tenant_id(), commands)
        held: dict[str, list[int]] = {}
        for (index, _), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, HeldElsewhere):
                held.setdefault(outcome.address, []).append(index)
            else:
                results[index] = _transfer_result(outcome)
        for address, indexes in held.items():
            await self._forward_items(request, indexes, results, address, context)
        ensure(all(r.WhichOneof("result") for r in results), "every request of a batch has its result")
        return pb.BatchCreateTransfersResponse(results=results)

    async def _forward_items(
        self,
        request: pb.BatchCreateTransfersRequest,
        indexes: list[int],
        results: list[pb.TransferResult],
        address: str,
        context: Context,
    ) -> None:
        """The results of the requests at `indexes`, from the server at `address`."""
        part = pb.BatchCreateTransfersRequest(requests=[request.requests[i] for i in indexes])
        timeout_s = context.time_remaining() or limits.deadline_default_ms / 1000
        try:
            answer = await self._forwarder.forward(
                BATCH_METHOD, part.SerializeToString(), context, address, timeout_s
            )
            forwarded = list(pb.BatchCreateTransfersResponse.FromString(answer).results)
        except (ApiError, ForwardedError) as error:
            failure = error if isinstance(error, ApiError) else unavailable(Reason.SHARD_MOVED, str(error))
            forwarded = [pb.TransferResult(error=error_to_pb(failure))] * len(indexes)
        ensure(len(forwarded) == len(indexes), "a forwarded batch has a result per request")
        for index, result in zip(indexes, forwarded, strict=True):
            results[index] = result

    # Holds

    async def CreateHold(self, request: pb.CreateHoldRequest, context: Context) -> pb.CreateHoldResponse:
        command = hold_command(request)
        hold = await self._ledger.create_hold(_tenant_id(), command, _idempotency(request))
        return pb.CreateHoldResponse(hold=hold_to_pb(hold))

    async def CaptureHold(self, request: pb.CaptureHoldRequest, context: Context) -> pb.CaptureHoldResponse:
        hold_id = checked_item_id(request.request_id, "hold_id", request.hold_id, request.amount_minor)
        hold = await self._ledger.capture_hold(
            _tenant_id(), hold_id, request.amount_minor, _idempotency(request)
        )
        return pb.CaptureHoldResponse(hold=hold_to_pb(hold))

    async def VoidHold(self, request: pb.VoidHoldRequest, context: Context) -> pb.VoidHoldResponse:
        hold_id = checked_item_id(request.request_id, "hold_id", request.hold_id)
        hold = await self._ledger.void_hold(_tenant_id(), hold_id, _idempotency(request))
        return pb.VoidHoldResponse(hold=hold_to_pb(hold))

    async def GetHold(self, request: pb.GetHoldRequest, context: Context) -> pb.GetHoldResponse:
        hold = await self._ledger.get_hold(_tenant_id(), checked_id("hold_id", request.hold_id))
        return pb.GetHoldResponse(hold=hold_to_pb(hold))

    # Escrows

    async def CreateEscrow(
        self, request: pb.CreateEscrowRequest, context: Context
    ) -> pb.CreateEscrowResponse:
        command = escrow_command(request)
        escrow = await self._ledger.create_escrow(_tenant_id(), command, _idempotency(request))
        return pb.CreateEscrowResponse(escrow=escrow_to_pb(escrow))

    async def ReleaseEscrow(
        self, request: pb.ReleaseEscrowRequest, context: Context
    ) -> pb.ReleaseEscrowResponse:
        escrow_id = checked_item_id(request.request_id, "escrow_id", request.escrow_id)
        escrow = await self._ledger.release_escrow(_tenant_id(), escrow_id, _idempotency(request))
        return pb.ReleaseEscrowResponse(escrow=escrow_to_pb(escrow))

    async def RefundEscrow(
        self, request: pb.RefundEscrowRequest, context: Context
    ) -> pb.RefundEscrowResponse:
        escrow_id = checked_item_id(request.request_id, "escrow_id", request.escrow_id, request.amount_minor)
        escrow = await self._ledger.refund_escrow(
            _tenant_id(), escrow_id, request.amount_minor, _idempotency(request)
        )
        return pb.RefundEscrowResponse(escrow=escrow_to_pb(escrow))

    async def DisputeEscrow(
        self, request: pb.DisputeEscrowRequest, context: Context
    ) -> pb.DisputeEscrowResponse:
        escrow_id = checked_item_id(request.request_id, "escrow_id", request.escrow_id)
        escrow = await self._ledger.dispute_escrow(_tenant_id(), escrow_id, _idempotency(request))
        return pb.DisputeEscrowResponse(escrow=escrow_to_pb(escrow))

    async def GetEscrow(self, request: pb.GetEscrowRequest, context: Context) -> pb.GetEscrowResponse:
        escrow = await self._ledger.get_escrow(_tenant_id(), checked_id("escrow_id", request.escrow_id))
        return pb.GetEscrowResponse(escrow=escrow_to_pb(escrow))

    # Reconciliation

    async def Reconcile(self, request: pb.ReconcileRequest, context: Context) -> pb.ReconcileResponse:
        return reconcile_to_pb(await self._ledger.reconcile(_tenant_id()))

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        wanted = event_filter(request)
        batches = self._ledger.watch_events(_tenant_id(), request.cursor, request.from_oldest, wanted)
        async for events, cursor in batches:
            yield pb.WatchEventsResponse(events=[event_to_pb(e) for e in events], cursor=cursor)

    # Refunds

    async def CreateRefund(
        self, request: pb.CreateRefundRequest, context: Context
    ) -> pb.CreateRefundResponse:
        check_refund(request)
        refund = await self._ledger.create_refund(
            _tenant_id(), request.transfer_id, request.leg_index, request.amount_minor, _idempotency(request)
        )
        return pb.CreateRefundResponse(refund=refund_to_pb(refund))


def _tenant_id() -> str:
    return current_caller().tenant.tenant_id


def _idempotency(request: Message) -> Idempotency:
    request_id: str = getattr(request, "request_id")  # noqa: B009
    return Idempotency(request_id, body_sha256(request))


def _transfer_result(outcome: Transfer | ApiError) -> pb.TransferResult:
    if isinstance(outcome, ApiError):
        return pb.TransferResult(error=error_to_pb(outcome))
    return pb.TransferResult(transfer=transfer_to_pb(outcome))


def _entry_seq(position: str | None) -> int | None:
    """The entry_seq a (signed, so well-formed) ListEntries position names."""
    if position is None:
        return None
    ensure(position.isascii() and position.isdigit(), "a ListEntries position is an entry_seq")
    return int(position)
