"""jubao.fundta.v1.FundService and TradingService. The pipeline has already checked that the caller's
tenant has the fund_ta product; requests are checked here (`convert.py`), mutations run once per request
id (`requests.Requests`), and the agency does the rest."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.fundta.v1 import fundta_pb2_grpc as pb_grpc

from jubao_server.fundta import convert
from jubao_server.fundta.product import FundTa
from jubao_server.platform.context import current_caller
from jubao_server.platform.idempotency import Claim
from jubao_server.platform.paging import PageTokens, page_size
from jubao_server.products import GrpcService, ServiceContext
from jubao_server.tenancy.model import Tenant

Context = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R", bound=Message)


@functools.cache
def _descriptor(name: str) -> Any:
    return pb.DESCRIPTOR.services_by_name[name]


def grpc_services(running: FundTa, context: ServiceContext) -> list[GrpcService]:
    """The product's gRPC services on the running agency."""
    funds = FundService(running, context.pages)
    trading = TradingService(running, context.pages)
    return [
        GrpcService(
            _descriptor("FundService"), functools.partial(pb_grpc.add_FundServiceServicer_to_server, funds)
        ),
        GrpcService(
            _descriptor("TradingService"),
            functools.partial(pb_grpc.add_TradingServiceServicer_to_server, trading),
        ),
    ]


class _Base:
    def __init__(self, running: FundTa, pages: PageTokens) -> None:
        self._agency = running.agency
        self._requests = running.requests
        self._closes = running.closes
        self._statements = running.statements
        self._pages = pages

    def _once(
        self, operation: str, request: Message, response_type: type[R], apply: Callable[[Claim], Awaitable[R]]
    ) -> Awaitable[R]:
        return self._requests.run(_tenant().tenant_id, operation, request, response_type, apply)


class FundService(_Base, pb_grpc.FundServiceServicer):
    async def CreateFund(self, request: pb.CreateFundRequest, context: Context) -> pb.CreateFundResponse:
        fund = convert.fund_of(request)

        async def apply(claim: Claim) -> pb.CreateFundResponse:
            created = await self._agency.create_fund(_tenant(), fund, claim)
            return pb.CreateFundResponse(fund=convert.fund_to_pb(created))

        return await self._once("CreateFund", request, pb.CreateFundResponse, apply)

    async def GetFund(self, request: pb.GetFundRequest, context: Context) -> pb.GetFundResponse:
        code = convert.checked_code("fund_code", request.fund_code)
        return pb.GetFundResponse(fund=convert.fund_to_pb(await self._agency.get_fund(_tenant(), code)))

    async def ListFunds(self, request: pb.ListFundsRequest, context: Context) -> pb.ListFundsResponse:
        limit = page_size(request.page_size)
        page = self._pages.query(_tenant().tenant_id, request)
        funds, after = await self._agency.list_funds(_tenant(), page.start(), limit)
        return pb.ListFundsResponse(
            funds=[convert.fund_to_pb(f) for f in funds], next_page_token=page.next(after)
        )

    async def UpdateFund(self, request: pb.UpdateFundRequest, context: Context) -> pb.UpdateFundResponse:
        code, changes = convert.fund_changes(request)

        async def apply(claim: Claim) -> pb.UpdateFundResponse:
            fund = await self._agency.update_fund(_tenant(), code, changes, claim)
            return pb.UpdateFundResponse(fund=convert.fund_to_pb(fund))

        return await self._once("UpdateFund", request, pb.UpdateFundResponse, apply)

    async def GrantFund(self, request: pb.GrantFundRequest, context: Context) -> pb.GrantFundResponse:
        convert.grant_of(request)

        async def apply(claim: Claim) -> pb.GrantFundResponse:
            grant = await self._agency.grant_fund(_tenant(), request.fund_code, request.distributor_id, claim)
            return pb.GrantFundResponse(grant=convert.grant_to_pb(grant))

        return await self._once("GrantFund", request, pb.GrantFundResponse, apply)

    async def PublishPrice(
        self, request: pb.PublishPriceRequest, context: Context
    ) -> pb.PublishPriceResponse:
        date, nav = convert.price_of(request)

        async def apply(claim: Claim) -> pb.PublishPriceResponse:
            price = await self._agency.publish_price(
                _tenant(), request.fund_code, date, nav, request.income_minor
            )
            return pb.PublishPriceResponse(price=convert.price_to_pb(price))

        return await self._once("PublishPrice", request, pb.PublishPriceResponse, apply)

    async def ListPrices(self, request: pb.ListPricesRequest, context: Context) -> pb.ListPricesResponse:
        convert.price_range(request)
        limit = page_size(request.page_size)
        page = self._pages.query(_tenant().tenant_id, request)
        prices, after = await self._agency.list_prices(
            _tenant(),
            request.fund_code,
            start=request.start_date,
            end=request.end_date,
            after=page.start(),
            limit=limit,
        )
        return pb.ListPricesResponse(
            prices=[convert.price_to_pb(p) for p in prices], next_page_token=page.next(after)
        )

    async def StartDayClose(
        self, request: pb.StartDayCloseRequest, context: Context
    ) -> pb.StartDayCloseResponse:
        trade_date = convert.day_close_start(request)

        async def apply(claim: Claim) -> pb.StartDayCloseResponse:
            record = await self._closes.start(_tenant(), request.fund_code, trade_date)
            return pb.StartDayCloseResponse(day_close=convert.day_close_to_pb(record))

        # A retry starts (or resumes) the same day-close and answers it as it is now.
        return await apply(await self._requests.claim_only(_tenant().tenant_id, "StartDayClose", request))

    async def GetDayClose(self, request: pb.GetDayCloseRequest, context: Context) -> pb.GetDayCloseResponse:
        code, trade_date = convert.day_close_name(request.name)
        record = await self._closes.get(_tenant(), code, trade_date)
        return pb.GetDayCloseResponse(day_close=convert.day_close_to_pb(record))

    async def RevokeGrant(self, request: pb.RevokeGrantRequest, context: Context) -> pb.RevokeGrantResponse:
        convert.grant_of(request)

        async def apply(claim: Claim) -> pb.RevokeGrantResponse:
            grant = await self._agency.revoke_grant(
                _tenant(), request.fund_code, request.distributor_id, claim
            )
            return pb.RevokeGrantResponse(grant=convert.grant_to_pb(grant))

        return await self._once("RevokeGrant", request, pb.RevokeGrantResponse, apply)

    async def ListGrants(self, request: pb.ListGrantsRequest, context: Context) -> pb.ListGrantsResponse:
        convert.grants_query(request)
        limit = page_size(request.page_size)
        page = self._pages.query(_tenant().tenant_id, request)
        grants, after = await self._agency.list_grants(
            _tenant(), request.fund_code, after=page.start(), limit=limit
        )
        return pb.ListGrantsResponse(
            grants=[convert.grant_to_pb(g) for g in grants], next_page_token=page.next(after)
        )


class TradingService(_Base, pb_grpc.TradingServiceServicer):
    async def OpenInvestor(
        self, request: pb.OpenInvestorRequest, context: Context
    ) -> pb.OpenInvestorResponse:
        identity = convert.identity_of(request)

        async def apply(claim: Claim) -> pb.OpenInvestorResponse:
            investor = await self._agency.open_investor(
                _tenant(), request.trading_account_id, identity, request.display_name, claim
            )
            return pb.OpenInvestorResponse(investor=convert.investor_to_pb(investor))

        return await self._once("OpenInvestor", request, pb.OpenInvestorResponse, apply)

    async def GetInvestor(self, request: pb.GetInvestorRequest, context: Context) -> pb.GetInvestorResponse:
        account = convert.checked_trading_account("trading_account_id", request.trading_account_id)
        investor = await self._agency.get_investor(_tenant(), account)
        return pb.GetInvestorResponse(investor=convert.investor_to_pb(investor))

    async def CreateOrder(self, request: pb.CreateOrderRequest, context: Context) -> pb.CreateOrderResponse:
        order_request = convert.order_request(request)

        async def apply(claim: Claim) -> pb.CreateOrderResponse:
            order = await self._agency.create_order(_tenant(), order_request, claim)
            return pb.CreateOrderResponse(order=convert.order_to_pb(order))

        return await self._once("CreateOrder", request, pb.CreateOrderResponse, apply)

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Context) -> pb.CancelOrderResponse:
        ref = convert.order_ref("order_id", request.order_id)

        async def apply(claim: Claim) -> pb.CancelOrderResponse:
            order = await self._agency.cancel_order(_tenant(), ref, claim)
            return pb.CancelOrderResponse(order=convert.order_to_pb(order))

        return await self._once("CancelOrder", request, pb.CancelOrderResponse, apply)

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.GetOrderResponse:
        ref = convert.order_ref("order_id", request.order_id)
        return pb.GetOrderResponse(order=convert.order_to_pb(await self._agency.get_order(_tenant(), ref)))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Context) -> pb.ListOrdersResponse:
        convert.orders_query(request)
        limit = page_size(request.page_size)
        page = self._pages.query(_tenant().tenant_id, request)
        orders, after = await self._agency.list_orders(
            _tenant(),
            request.fund_code,
            trade_date=request.trade_date,
            distributor_id=request.distributor_id,
            after=page.start(),
            limit=limit,
        )
        return pb.ListOrdersResponse(
            orders=[convert.order_to_pb(o) for o in orders], next_page_token=page.next(after)
        )

    async def GetHolding(self, request: pb.GetHoldingRequest, context: Context) -> pb.GetHoldingResponse:
        convert.holding_query(request)
        holding = await self._agency.get_holding(
            _tenant(), request.fund_code, request.trading_account_id, request.distributor_id
        )
        return pb.GetHoldingResponse(holding=convert.holding_to_pb(request.fund_code, holding))

    async def GetStatement(
        self, request: pb.GetStatementRequest, context: Context
    ) -> pb.GetStatementResponse:
        convert.statement_query(request)
        limit = page_size(request.page_size)
        page = self._pages.query(_tenant().tenant_id, request)
        statement = await self._statements.statement(
            _tenant(),
            request.fund_code,
            request.fund_account_id,
            start=request.start_date,
            end=request.end_date,
            distributor_id=request.distributor_id,
        )
        # The position is how many entries earlier pages answered.
        offset = int(page.start() or 0)
        entries = statement.entries[offset : offset + limit]
        more = offset + limit < len(statement.entries)
        return convert.statement_to_pb(
            request, statement, entries, page.next(str(offset + limit) if more else None)
        )


def _tenant() -> Tenant:
    return current_caller().tenant
