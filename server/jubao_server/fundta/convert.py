"""Requests of jubao.fundta.v1 checked and turned into domain values, and domain values into messages.
Every check of a request's own shape is here, before its request id is claimed; a bad request is
INVALID_ARGUMENT naming each bad field, and nothing is written."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.reasons import FieldViolation

from jubao_server import limits
from jubao_server.errors import echo
from jubao_server.fundta import calendar
from jubao_server.fundta.agency import FundChanges, Holding, OrderRef, OrderRequest, parse_order_id
from jubao_server.fundta.close import MONEY_MARKET_EXPONENT
from jubao_server.fundta.dayclose import next_close_date
from jubao_server.fundta.decimals import RATE_PLACES, parse, parse_shares, shares_text
from jubao_server.fundta.model import (
    Calendar,
    DayClose,
    DayClosePhase,
    DayCloseState,
    DividendMethod,
    Fund,
    FundKind,
    FundStatus,
    Grant,
    Investor,
    LargeRedemptionChoice,
    LargeRedemptionRule,
    Order,
    OrderKind,
    OrderStatus,
    Price,
    PurchaseFeeTier,
    RedemptionFeeTier,
)
from jubao_server.fundta.statement import Entry, EntryKind, Statement
from jubao_server.payments.convert import currency_violations, id_violations, name_violations, raise_if_any
from jubao_server.payments.currencies import MINOR_UNIT_EXPONENTS
from jubao_server.platform.timestamps import timestamp
from jubao_server.tenancy.model import TENANT_ID_PATTERN

_FUND_CODE: Final = re.compile(r"^[0-9A-Z]{4,12}$")
_ID_NUMBER: Final = re.compile(r"^[0-9A-Za-z]{1,32}$")
NAV_SCALE_DEFAULT: Final = 4
MINIMUM_PURCHASE_DEFAULT: Final = 100
UPDATABLE_PATHS: Final = ("status", "calendar.holidays", "minimum_purchase_minor", "minimum_holding_shares")

_KINDS: Final = {
    pb.FUND_KIND_MONEY_MARKET: FundKind.MONEY_MARKET,
    pb.FUND_KIND_BOND: FundKind.BOND,
    pb.FUND_KIND_EQUITY: FundKind.EQUITY,
    pb.FUND_KIND_INDEX: FundKind.INDEX,
    pb.FUND_KIND_MIXED: FundKind.MIXED,
}
_STATUSES: Final = {
    pb.FUND_STATUS_ISSUING: FundStatus.ISSUING,
    pb.FUND_STATUS_OPEN: FundStatus.OPEN,
    pb.FUND_STATUS_PURCHASE_SUSPENDED: FundStatus.PURCHASE_SUSPENDED,
    pb.FUND_STATUS_REDEMPTION_SUSPENDED: FundStatus.REDEMPTION_SUSPENDED,
    pb.FUND_STATUS_CLOSED: FundStatus.CLOSED,
}
_ORDER_KINDS: Final = {
    pb.ORDER_KIND_SUBSCRIPTION: OrderKind.SUBSCRIPTION,
    pb.ORDER_KIND_PURCHASE: OrderKind.PURCHASE,
    pb.ORDER_KIND_REDEMPTION: OrderKind.REDEMPTION,
    pb.ORDER_KIND_FAST_REDEMPTION: OrderKind.FAST_REDEMPTION,
    pb.ORDER_KIND_DIVIDEND_METHOD: OrderKind.DIVIDEND_METHOD,
}
_DIVIDEND_METHODS: Final = {
    pb.DIVIDEND_METHOD_CASH: DividendMethod.CASH,
    pb.DIVIDEND_METHOD_REINVEST: DividendMethod.REINVEST,
}
DIVIDEND_METHODS_PB: Final = {value: key for key, value in _DIVIDEND_METHODS.items()}
FAST_REDEMPTION_CAP_DEFAULT: Final = 1_000_000
_ORDER_STATUSES: Final = {
    OrderStatus.ACCEPTED: pb.ORDER_STATUS_ACCEPTED,
    OrderStatus.CANCELLED: pb.ORDER_STATUS_CANCELLED,
    OrderStatus.CONFIRMED: pb.ORDER_STATUS_CONFIRMED,
    OrderStatus.FAILED: pb.ORDER_STATUS_FAILED,
    OrderStatus.PARTIALLY_CONFIRMED: pb.ORDER_STATUS_PARTIALLY_CONFIRMED,
}
_RULES: Final = {
    pb.LARGE_REDEMPTION_RULE_CONFIRM_ALL: LargeRedemptionRule.CONFIRM_ALL,
    pb.LARGE_REDEMPTION_RULE_PRO_RATA: LargeRedemptionRule.PRO_RATA,
}
_RULES_PB: Final = {value: key for key, value in _RULES.items()}
_CHOICES: Final = {
    pb.LARGE_REDEMPTION_CHOICE_DEFER: LargeRedemptionChoice.DEFER,
    pb.LARGE_REDEMPTION_CHOICE_CANCEL: LargeRedemptionChoice.CANCEL,
}
_CHOICES_PB: Final = {value: key for key, value in _CHOICES.items()}
_CLOSE_STATES: Final = {
    DayCloseState.RUNNING: pb.DayClose.STATE_RUNNING,
    DayCloseState.SUCCEEDED: pb.DayClose.STATE_SUCCEEDED,
}
_CLOSE_PHASES: Final = {
    DayClosePhase.SEALING: pb.DayClose.PHASE_SEALING,
    DayClosePhase.PLANNING: pb.DayClose.PHASE_PLANNING,
    DayClosePhase.COMMITTING: pb.DayClose.PHASE_COMMITTING,
    DayClosePhase.DONE: pb.DayClose.PHASE_DONE,
}
_CLOSE_NAME: Final = re.compile(r"^funds/([0-9A-Z]{4,12})/dayCloses/([0-9]{4}-[0-9]{2}-[0-9]{2})$")
_ID_TYPES: Final = {
    pb.ID_TYPE_ID_CARD: "id_card",
    pb.ID_TYPE_PASSPORT: "passport",
    pb.ID_TYPE_BUSINESS_LICENSE: "license",
}


_KINDS_PB: Final = {value: key for key, value in _KINDS.items()}
_STATUSES_PB: Final = {value: key for key, value in _STATUSES.items()}
_ORDER_KINDS_PB: Final = {value: key for key, value in _ORDER_KINDS.items()}


# Funds


def fund_of(request: pb.CreateFundRequest) -> Fund:
    """The fund a CreateFundRequest describes (its manager and times are the agency's to set)."""
    message = request.fund
    violations = code_violations("fund.fund_code", message.fund_code)
    violations += name_violations("fund.display_name", message.display_name)
    if not message.display_name:
        violations.append(FieldViolation("fund.display_name", "required"))
    if message.kind not in _KINDS:
        violations.append(FieldViolation("fund.kind", "required: a FundKind"))
    violations += currency_violations("fund.currency_code", message.currency_code)
    exponent = MINOR_UNIT_EXPONENTS.get(message.currency_code)
    if message.kind == pb.FUND_KIND_MONEY_MARKET and exponent not in (None, MONEY_MARKET_EXPONENT):
        violations.append(
            FieldViolation("fund.currency_code", "a money-market fund's currency has 2 decimal places")
        )
    status = message.status or pb.FUND_STATUS_ISSUING
    if status not in _STATUSES:
        violations.append(FieldViolation("fund.status", "a FundStatus"))
    minimum = message.minimum_purchase_minor or MINIMUM_PURCHASE_DEFAULT
    if not 0 < minimum <= limits.fundta_amount_max_minor:
        violations.append(FieldViolation("fund.minimum_purchase_minor", "positive (default 100)"))
    holding = _shares("fund.minimum_holding_shares", message.minimum_holding_shares or "0", violations)
    nav_scale = message.nav_scale or NAV_SCALE_DEFAULT
    if not 2 <= nav_scale <= 8:
        violations.append(FieldViolation("fund.nav_scale", "2 to 8 (default 4)"))
    fast_cap = message.fast_redemption_cap_minor
    if message.kind == pb.FUND_KIND_MONEY_MARKET and not message.HasField("fast_redemption_cap_minor"):
        fast_cap = FAST_REDEMPTION_CAP_DEFAULT
    if not 0 <= fast_cap <= limits.fundta_amount_max_minor:
        violations.append(FieldViolation("fund.fast_redemption_cap_minor", "must not be negative (0: none)"))
    elif fast_cap and message.kind != pb.FUND_KIND_MONEY_MARKET:
        violations.append(
            FieldViolation("fund.fast_redemption_cap_minor", "only money-market funds redeem fast")
        )
    rule = message.large_redemption_rule or pb.LARGE_REDEMPTION_RULE_CONFIRM_ALL
    if rule not in _RULES:
        violations.append(FieldViolation("fund.large_redemption_rule", "a LargeRedemptionRule"))
    purchase_tiers = _purchase_tiers(message.purchase_fee_tiers, violations)
    redemption_tiers = _redemption_tiers(message.redemption_fee_tiers, violations)
    fund_calendar = _calendar(message.calendar, violations)
    raise_if_any(violations)
    return Fund(
        fund_code=message.fund_code,
        manager_id="",
        display_name=message.display_name,
        kind=_KINDS[message.kind],
        currency=message.currency_code,
        status=_STATUSES[status],
        minimum_purchase_minor=minimum,
        minimum_holding_shares=holding,
        purchase_fee_tiers=purchase_tiers,
        redemption_fee_tiers=redemption_tiers,
        calendar=fund_calendar,
        nav_scale=nav_scale,
        holder_shard_count=0,
        total_shares=0,
        create_time_ms=0,
        update_time_ms=0,
        fast_redemption_cap_minor=fast_cap,
        large_redemption_rule=_RULES.get(rule, LargeRedemptionRule.CONFIRM_ALL),
    )


def fund_changes(request: pb.UpdateFundRequest) -> tuple[str, FundChanges]:
    """The fund an UpdateFundRequest names and what it changes."""
    paths = list(request.update_mask.paths)
    message = request.fund
    violations = code_violations("fund.fund_code", message.fund_code)
    allowed = ", ".join(UPDATABLE_PATHS)
    unknown = sorted(set(paths) - set(UPDATABLE_PATHS))
    if not paths or unknown:
        found = f"unknown path {echo(unknown[0])}" if unknown else "no path"
        violations.append(FieldViolation("update_mask", f"{found}; allowed: {allowed}"))
    status = _STATUSES.get(message.status) if "status" in paths else None
    if "status" in paths and status is None:
        violations.append(FieldViolation("fund.status", "a FundStatus"))
    holidays = _holidays(message.calendar.holidays, violations) if "calendar.holidays" in paths else None
    minimum = message.minimum_purchase_minor if "minimum_purchase_minor" in paths else None
    if minimum is not None and not 0 < minimum <= limits.fundta_amount_max_minor:
        violations.append(FieldViolation("fund.minimum_purchase_minor", "positive"))
    holding = None
    if "minimum_holding_shares" in paths:
        holding = _shares("fund.minimum_holding_shares", message.minimum_holding_shares or "0", violations)
    raise_if_any(violations)
    return message.fund_code, FundChanges(status, holidays, minimum, holding)


def fund_to_pb(fund: Fund) -> pb.Fund:
    return pb.Fund(
        fund_code=fund.fund_code,
        manager_id=fund.manager_id,
        display_name=fund.display_name,
        kind=_KINDS_PB[fund.kind],
        currency_code=fund.currency,
        status=_STATUSES_PB[fund.status],
        minimum_purchase_minor=fund.minimum_purchase_minor,
        minimum_holding_shares=shares_text(fund.minimum_holding_shares),
        purchase_fee_tiers=[
            pb.PurchaseFeeTier(
                threshold_minor=t.threshold_minor, rate=t.rate, fixed_fee_minor=t.fixed_fee_minor
            )
            for t in fund.purchase_fee_tiers
        ],
        redemption_fee_tiers=[
            pb.RedemptionFeeTier(min_holding_days=t.min_holding_days, rate=t.rate)
            for t in fund.redemption_fee_tiers
        ],
        calendar=pb.TradingCalendar(
            time_zone=fund.calendar.time_zone, cut_off=fund.calendar.cut_off, holidays=fund.calendar.holidays
        ),
        nav_scale=fund.nav_scale,
        total_shares=shares_text(fund.total_shares),
        create_time=timestamp(fund.create_time_ms),
        update_time=timestamp(fund.update_time_ms),
        last_closed_date=fund.last_closed_date,
        next_close_date=next_close_date(fund).isoformat(),
        fast_redemption_cap_minor=fund.fast_redemption_cap_minor,
        large_redemption_rule=_RULES_PB[fund.large_redemption_rule],
    )


def grant_of(request: pb.GrantFundRequest | pb.RevokeGrantRequest) -> None:
    violations = code_violations("fund_code", request.fund_code)
    if not TENANT_ID_PATTERN.match(request.distributor_id):
        violations.append(FieldViolation("distributor_id", "a tenant id"))
    raise_if_any(violations)


def grant_to_pb(grant: Grant) -> pb.Grant:
    return pb.Grant(
        fund_code=grant.fund_code,
        distributor_id=grant.distributor_id,
        create_time=timestamp(grant.create_time_ms),
        revoke_time=timestamp(grant.revoke_time_ms) if grant.revoke_time_ms else None,
    )


def grants_query(request: pb.ListGrantsRequest) -> None:
    if request.fund_code:
        checked_code("fund_code", request.fund_code)


def checked_code(field: str, code: str) -> str:
    raise_if_any(code_violations(field, code))
    return code


def code_violations(field: str, code: str) -> list[FieldViolation]:
    if _FUND_CODE.match(code):
        return []
    return [FieldViolation(field, "4 to 12 of [0-9A-Z]")]


# Prices


def price_of(request: pb.PublishPriceRequest) -> tuple[datetime.date, Decimal | None]:
    """The date and NAV (None: none given) of a PublishPriceRequest."""
    violations = code_violations("fund_code", request.fund_code)
    date = _date("price_date", request.price_date, violations)
    nav = None
    if request.nav:
        nav = parse(request.nav, 8)
        if nav is None:
            violations.append(FieldViolation("nav", "a decimal of at most 8 places, e.g. 1.0234"))
    if not 0 <= request.income_minor <= limits.fundta_amount_max_minor:
        violations.append(FieldViolation("income_minor", "must not be negative"))
    raise_if_any(violations)
    return date or datetime.date.min, nav


def price_range(request: pb.ListPricesRequest) -> None:
    violations = code_violations("fund_code", request.fund_code)
    for field in ("start_date", "end_date"):
        if getattr(request, field):
            _date(field, getattr(request, field), violations)
    raise_if_any(violations)


def price_to_pb(price: Price) -> pb.Price:
    return pb.Price(
        fund_code=price.fund_code,
        price_date=price.price_date,
        nav=price.nav,
        income_minor=price.income_minor,
        income_per_10k_shares=price.income_per_10k_shares,
        seven_day_yield_percent=price.seven_day_yield_percent,
        total_shares=shares_text(price.total_shares),
        currency_code=price.currency,
        publish_time=timestamp(price.publish_time_ms),
        residual_minor=price.residual_minor,
    )


# Investors


def identity_of(request: pb.OpenInvestorRequest) -> str:
    """The identity (id type and number, upper case) an OpenInvestorRequest names."""
    violations = id_violations("trading_account_id", request.trading_account_id)
    if request.id_type not in _ID_TYPES:
        violations.append(FieldViolation("id_type", "required: an IdType"))
    if not _ID_NUMBER.match(request.id_number):
        violations.append(FieldViolation("id_number", "1 to 32 of [0-9A-Za-z]"))
    violations += name_violations("display_name", request.display_name)
    raise_if_any(violations)
    return f"{_ID_TYPES[request.id_type]}:{request.id_number.upper()}"


def checked_trading_account(field: str, value: str) -> str:
    raise_if_any(id_violations(field, value))
    return value


def investor_to_pb(investor: Investor) -> pb.Investor:
    return pb.Investor(
        trading_account_id=investor.trading_account_id,
        fund_account_id=investor.fund_account_id,
        distributor_id=investor.distributor_id,
        display_name=investor.display_name,
        create_time=timestamp(investor.create_time_ms),
    )


# Orders


def order_request(request: pb.CreateOrderRequest) -> OrderRequest:
    violations = code_violations("fund_code", request.fund_code)
    violations += id_violations("trading_account_id", request.trading_account_id)
    kind = _ORDER_KINDS.get(request.kind)
    method = _DIVIDEND_METHODS.get(request.dividend_method)
    shares = _order_body(kind, request, violations)
    if request.dividend_method and kind is not OrderKind.DIVIDEND_METHOD:
        violations.append(FieldViolation("dividend_method", "only a DIVIDEND_METHOD order names a method"))
    choice = request.large_redemption or pb.LARGE_REDEMPTION_CHOICE_DEFER
    if choice not in _CHOICES:
        violations.append(FieldViolation("large_redemption", "a LargeRedemptionChoice"))
    raise_if_any(violations)
    return OrderRequest(
        fund_code=request.fund_code,
        trading_account_id=request.trading_account_id,
        kind=kind or OrderKind.PURCHASE,
        amount_minor=request.amount_minor,
        shares=shares,
        request_id=request.request_id,
        large_redemption=_CHOICES.get(choice, LargeRedemptionChoice.DEFER),
        dividend_method=method if kind is OrderKind.DIVIDEND_METHOD else None,
    )


def _order_body(
    kind: OrderKind | None, request: pb.CreateOrderRequest, violations: list[FieldViolation]
) -> int:
    """Check what an order of `kind` names (an amount, shares or a dividend method); its shares."""
    shares = 0
    if kind is None:
        violations.append(
            FieldViolation(
                "kind", "required: SUBSCRIPTION, PURCHASE, REDEMPTION, FAST_REDEMPTION or DIVIDEND_METHOD"
            )
        )
    elif kind is OrderKind.DIVIDEND_METHOD:
        if request.dividend_method not in _DIVIDEND_METHODS:
            violations.append(FieldViolation("dividend_method", "required: CASH or REINVEST"))
        for field in ("amount_minor", "shares"):
            if getattr(request, field):
                violations.append(FieldViolation(field, "a dividend method change names no amount or shares"))
    elif kind in (OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION):
        shares = _shares("shares", request.shares, violations)
        if shares == 0 and request.shares:
            violations.append(FieldViolation("shares", "must be positive"))
        if request.amount_minor:
            violations.append(FieldViolation("amount_minor", "a redemption names shares, not an amount"))
    else:
        if not 0 < request.amount_minor <= limits.fundta_amount_max_minor:
            violations.append(FieldViolation("amount_minor", "required: a positive amount in minor units"))
        if request.shares:
            violations.append(
                FieldViolation("shares", "a subscription or purchase names an amount, not shares")
            )
    return shares


def order_ref(field: str, order_id: str) -> OrderRef:
    ref = parse_order_id(order_id)
    if ref is None:
        raise_if_any([FieldViolation(field, "an order id as CreateOrder answered it")])
    return ref  # type: ignore[return-value]


def confirmations_query(request: pb.ExportConfirmations) -> None:
    violations = code_violations("fund_code", request.fund_code)
    _date("trade_date", request.trade_date, violations)
    if request.distributor_id and not TENANT_ID_PATTERN.match(request.distributor_id):
        violations.append(FieldViolation("distributor_id", "a tenant id"))
    raise_if_any(violations)


def orders_query(request: pb.ListOrdersRequest) -> None:
    violations = code_violations("fund_code", request.fund_code)
    _date("trade_date", request.trade_date, violations)
    if request.distributor_id and not TENANT_ID_PATTERN.match(request.distributor_id):
        violations.append(FieldViolation("distributor_id", "a tenant id"))
    raise_if_any(violations)


def order_to_pb(order: Order) -> pb.Order:
    return pb.Order(
        order_id=order.order_id,
        fund_code=order.fund_code,
        distributor_id=order.distributor_id,
        trading_account_id=order.trading_account_id,
        fund_account_id=order.fund_account_id,
        kind=_ORDER_KINDS_PB[order.kind],
        status=_ORDER_STATUSES[order.status],
        trade_date=order.trade_date,
        amount_minor=order.amount_minor,
        shares=shares_text(order.shares)
        if order.kind in (OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION)
        else "",
        currency_code=order.currency,
        request_id=order.request_id,
        create_time=timestamp(order.create_time_ms),
        update_time=timestamp(order.update_time_ms),
        confirmation=_confirmation_to_pb(order),
        large_redemption=_CHOICES_PB[order.large_redemption],
        deferred_from_order_id=order.deferred_from_order_id,
        dividend_method=_dividend_method_pb(order.dividend_method),
    )


def _dividend_method_pb(method: DividendMethod | None) -> pb.DividendMethod.ValueType:
    return DIVIDEND_METHODS_PB[method] if method is not None else pb.DIVIDEND_METHOD_UNSPECIFIED


def _confirmation_to_pb(order: Order) -> pb.Confirmation | None:
    done = order.confirmation
    if done is None:
        return None
    return pb.Confirmation(
        return_code=done.return_code,
        reason=done.reason,
        nav=done.nav,
        amount_minor=done.amount_minor,
        shares=shares_text(done.shares),
        fee_minor=done.fee_minor,
        remainder_minor=done.remainder_minor,
        deferred_shares=shares_text(done.deferred_shares),
        cancelled_shares=shares_text(done.cancelled_shares),
    )


# Holdings


def holding_query(request: pb.GetHoldingRequest) -> None:
    violations = code_violations("fund_code", request.fund_code)
    violations += id_violations("trading_account_id", request.trading_account_id)
    if request.distributor_id and not TENANT_ID_PATTERN.match(request.distributor_id):
        violations.append(FieldViolation("distributor_id", "a tenant id"))
    raise_if_any(violations)


def holding_to_pb(fund_code: str, holding: Holding) -> pb.Holding:
    position = holding.position
    return pb.Holding(
        fund_code=fund_code,
        distributor_id=position.distributor_id,
        trading_account_id=position.trading_account_id,
        fund_account_id=position.fund_account_id,
        shares=shares_text(holding.shares),
        available_shares=shares_text(holding.available_shares),
        lots=[pb.Lot(trade_date=lot.trade_date, shares=shares_text(lot.shares)) for lot in position.lots],
        as_of_date=position.closed_date,
        last_income_minor=position.last_income_minor,
        income_total_minor=position.income_total_minor,
        dividend_method=DIVIDEND_METHODS_PB[holding.dividend_method],
    )


# Statements


_FUND_ACCOUNT: Final = re.compile(r"^F[0-9A-F]{20}$")
_ENTRY_KINDS: Final = {
    EntryKind.CONFIRMATION: pb.STATEMENT_ENTRY_KIND_CONFIRMATION,
    EntryKind.INCOME: pb.STATEMENT_ENTRY_KIND_INCOME,
    EntryKind.FAST_REDEMPTION: pb.STATEMENT_ENTRY_KIND_FAST_REDEMPTION,
}


def statement_query(request: pb.GetStatementRequest) -> None:
    violations = code_violations("fund_code", request.fund_code) if request.fund_code else []
    if not _FUND_ACCOUNT.match(request.fund_account_id):
        violations.append(FieldViolation("fund_account_id", "a TA fund account: F and 20 of [0-9A-F]"))
    start = _date("start_date", request.start_date, violations)
    end = _date("end_date", request.end_date, violations)
    if start is not None and end is not None and start > end:
        violations.append(FieldViolation("end_date", "must not be before start_date"))
    if request.distributor_id and not TENANT_ID_PATTERN.match(request.distributor_id):
        violations.append(FieldViolation("distributor_id", "a tenant id"))
    raise_if_any(violations)


def statement_to_pb(
    request: pb.GetStatementRequest, statement: Statement, entries: Sequence[Entry], next_page_token: str
) -> pb.GetStatementResponse:
    return pb.GetStatementResponse(
        fund_code=request.fund_code,
        fund_account_id=request.fund_account_id,
        currency_code=statement.funds[0].currency if request.fund_code else "",
        start_date=request.start_date,
        end_date=request.end_date,
        holdings=[
            pb.StatementHolding(
                fund_code=line.fund.fund_code,
                currency_code=line.fund.currency,
                distributor_id=line.distributor_id,
                trading_account_id=line.trading_account_id,
                opening_shares=shares_text(line.opening_shares),
                closing_shares=shares_text(line.closing_shares),
                dividend_method=DIVIDEND_METHODS_PB[line.dividend_method],
            )
            for line in statement.holdings
        ],
        entries=[_entry_to_pb(entry) for entry in entries],
        next_page_token=next_page_token,
    )


def _entry_to_pb(entry: Entry) -> pb.StatementEntry:
    message = pb.StatementEntry(
        date=entry.date,
        fund_code=entry.fund_code,
        distributor_id=entry.distributor_id,
        trading_account_id=entry.trading_account_id,
        kind=_ENTRY_KINDS[entry.kind],
        amount_minor=entry.amount_minor,
        fee_minor=entry.fee_minor,
        shares_delta=("-" if entry.shares_delta < 0 else "") + shares_text(abs(entry.shares_delta)),
        balance_shares=shares_text(entry.balance_shares),
    )
    order = entry.order
    if order is not None and order.confirmation is not None:
        message.order_id = order.order_id
        message.order_kind = _ORDER_KINDS_PB[order.kind]
        message.status = _ORDER_STATUSES[order.status]
        message.return_code = order.confirmation.return_code
        message.reason = order.confirmation.reason
        message.nav = order.confirmation.nav
        message.dividend_method = _dividend_method_pb(order.dividend_method)
    return message


# Day-closes


def day_close_start(request: pb.StartDayCloseRequest) -> datetime.date:
    violations = code_violations("fund_code", request.fund_code)
    date = _date("trade_date", request.trade_date, violations)
    raise_if_any(violations)
    return date or datetime.date.min


def day_close_name(name: str) -> tuple[str, datetime.date]:
    """The fund and trade date a day-close's name says."""
    match = _CLOSE_NAME.match(name)
    date = calendar.parse_date(match.group(2)) if match is not None else None
    if match is None or date is None:
        raise_if_any([FieldViolation("name", "funds/{fund_code}/dayCloses/{YYYY-MM-DD}")])
    return match.group(1), date  # type: ignore[union-attr,return-value]


def day_close_to_pb(record: DayClose) -> pb.DayClose:
    result = record.result
    return pb.DayClose(
        name=f"funds/{record.fund_code}/dayCloses/{record.trade_date}",
        fund_code=record.fund_code,
        trade_date=record.trade_date,
        state=_CLOSE_STATES[record.state],
        done=record.state is DayCloseState.SUCCEEDED,
        phase=_CLOSE_PHASES[record.phase],
        shards_total=record.shards_total,
        result=None
        if result is None
        else pb.DayCloseResult(
            holders=result.holders,
            orders_confirmed=result.orders_confirmed,
            orders_failed=result.orders_failed,
            total_shares=shares_text(result.total_shares),
            income_minor=result.income_minor,
            residual_minor=result.residual_minor,
            redemption_ratio=result.redemption_ratio,
            orders_prorated=result.orders_prorated,
            distributors=[
                pb.DistributorTotals(
                    distributor_id=d.distributor_id,
                    purchase_amount_minor=d.purchase_amount_minor,
                    purchase_fee_minor=d.purchase_fee_minor,
                    redemption_amount_minor=d.redemption_amount_minor,
                    redemption_fee_minor=d.redemption_fee_minor,
                )
                for d in result.distributors
            ],
        ),
        create_time=timestamp(record.create_time_ms),
        update_time=timestamp(record.update_time_ms),
    )


# Parts


def _shares(field: str, text: str, violations: list[FieldViolation]) -> int:
    shares = parse_shares(text)
    if shares is None or shares > limits.fundta_shares_max:
        violations.append(FieldViolation(field, "shares: a decimal of at most 2 places, e.g. 1000.00"))
        return 0
    return shares


def _rate(field: str, text: str, violations: list[FieldViolation]) -> str:
    rate = parse(text, RATE_PLACES)
    if rate is None or rate >= 1:
        violations.append(FieldViolation(field, "a fraction below 1 of at most 6 places, e.g. 0.015"))
        return ""
    return text


def _purchase_tiers(
    tiers: Sequence[pb.PurchaseFeeTier], violations: list[FieldViolation]
) -> tuple[PurchaseFeeTier, ...]:
    if len(tiers) > limits.fundta_fee_tiers_max:
        violations.append(FieldViolation("fund.purchase_fee_tiers", f"at most {limits.fundta_fee_tiers_max}"))
        return ()
    checked = []
    for i, tier in enumerate(tiers):
        field = f"fund.purchase_fee_tiers[{i}]"
        previous = tiers[i - 1].threshold_minor if i else -1
        if tier.threshold_minor <= previous or (i == 0 and tier.threshold_minor != 0):
            violations.append(FieldViolation(f"{field}.threshold_minor", "ascending, the first 0"))
        if bool(tier.rate) == bool(tier.fixed_fee_minor) or tier.fixed_fee_minor < 0:
            violations.append(FieldViolation(field, "set exactly one of rate and a positive fixed_fee_minor"))
        rate = _rate(f"{field}.rate", tier.rate, violations) if tier.rate else ""
        checked.append(PurchaseFeeTier(tier.threshold_minor, rate, tier.fixed_fee_minor))
    return tuple(checked)


def _redemption_tiers(
    tiers: Sequence[pb.RedemptionFeeTier], violations: list[FieldViolation]
) -> tuple[RedemptionFeeTier, ...]:
    if len(tiers) > limits.fundta_fee_tiers_max:
        violations.append(
            FieldViolation("fund.redemption_fee_tiers", f"at most {limits.fundta_fee_tiers_max}")
        )
        return ()
    checked = []
    for i, tier in enumerate(tiers):
        field = f"fund.redemption_fee_tiers[{i}]"
        previous = tiers[i - 1].min_holding_days if i else -1
        if tier.min_holding_days <= previous or (i == 0 and tier.min_holding_days != 0):
            violations.append(FieldViolation(f"{field}.min_holding_days", "ascending, the first 0"))
        checked.append(
            RedemptionFeeTier(tier.min_holding_days, _rate(f"{field}.rate", tier.rate, violations))
        )
    return tuple(checked)


def _calendar(message: pb.TradingCalendar, violations: list[FieldViolation]) -> Calendar:
    time_zone = message.time_zone or calendar.DEFAULT_TIME_ZONE
    if len(time_zone) > limits.tenant_id_length_max or calendar.zone(time_zone) is None:
        violations.append(FieldViolation("fund.calendar.time_zone", "an IANA time zone, e.g. Asia/Shanghai"))
    cut_off = message.cut_off or calendar.DEFAULT_CUT_OFF
    if calendar.cut_off_time(cut_off) is None:
        violations.append(FieldViolation("fund.calendar.cut_off", "a local time HH:MM, e.g. 15:00"))
    return Calendar(time_zone, cut_off, _holidays(message.holidays, violations))


def _holidays(holidays: Sequence[str], violations: list[FieldViolation]) -> tuple[str, ...]:
    if len(holidays) > limits.fundta_holidays_max:
        violations.append(FieldViolation("fund.calendar.holidays", f"at most {limits.fundta_holidays_max}"))
        return ()
    for i, day in enumerate(holidays):
        _date(f"fund.calendar.holidays[{i}]", day, violations)
    return tuple(sorted(set(holidays)))


def _date(field: str, text: str, violations: list[FieldViolation]) -> datetime.date | None:
    date = calendar.parse_date(text)
    if date is None:
        violations.append(FieldViolation(field, "a date YYYY-MM-DD"))
    return date
