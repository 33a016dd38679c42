"""The fund transfer agency's orchestration: funds, grants, prices, investors, orders and holdings, on
the storage contract (tables: `tables.py`). Implements what the servicers call; every mutation runs
inside `requests.Requests.run` (its request id claimed first) and is told by its `Claim` whether an
earlier attempt of the same request ran, so it recognises what that attempt wrote.

Who sees what: a fund lives in its manager's scope; a distributor reaches it through the fund code's
registry (`~platform`) and only when granted (or as the manager, selling its own fund). An investor lives
in its distributor's scope; its holdings and orders in the manager's scope, in the holder shard of its
fund account, keyed by distributor, so a distributor reads only its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import msgspec
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import (
    ApiError,
    ErrorCode,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    permission_denied,
)
from jubao_server.fundta import calendar, segments
from jubao_server.fundta.close import RETURN_OK
from jubao_server.fundta.decimals import fixed, places, shares_text
from jubao_server.fundta.model import (
    STATUS_TAKES,
    Confirmation,
    DividendMethod,
    Fund,
    FundKind,
    FundStatus,
    Grant,
    Investor,
    LargeRedemptionChoice,
    Order,
    OrderKind,
    OrderStatus,
    Position,
    Price,
    Reservation,
    decode,
    default_dividend_method,
    encode,
)
from jubao_server.fundta.tables import FUND_CODES, FUNDS, HOLDERS, INVESTORS, TENANT_FUNDS
from jubao_server.invariants import InvariantViolation
from jubao_server.platform.idempotency import Claim
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import (
    PLATFORM_SCOPE,
    Batch,
    Bound,
    PartitionRef,
    Put,
    Row,
    RowAbsent,
    RowMatches,
    RowQuery,
    StaticMatches,
    StorageBackend,
    read_all,
)
from jubao_server.tenancy.model import Product, Tenant, TenantKind
from jubao_server.tenancy.store import TenantStore

FUND = ("fund", "")
# A fund partition's day-close records, by trade date.
CLOSE = "close"
GRANT = "grant"
PRICE = "price"
# A holder shard's rows: positions (`segments.py`: written by day-closes), reservations (by orders and
# cancellations).
RESERVATION = "reservation"


def account_kind(fund_account_id: str) -> str:
    """The row kind of a fund account's index of its orders in a holder shard (written with each order,
    keyed "<distributor>/<trading account>/<trade date>/<order id>"): what its statement reads."""
    return f"account:{fund_account_id}"


def account_key(order: Order) -> str:
    return f"{order.distributor_id}/{order.trading_account_id}/{order.trade_date}/{order.order_id}"


def order_kind(trade_date: str) -> str:
    """The row kind of a trade date's orders in a holder shard."""
    return f"order:{trade_date}"


@dataclasses.dataclass(frozen=True)
class FundChanges:
    """What UpdateFund changes (None: unchanged)."""

    status: FundStatus | None = None
    holidays: tuple[str, ...] | None = None
    minimum_purchase_minor: int | None = None
    minimum_holding_shares: int | None = None


@dataclasses.dataclass(frozen=True)
class OrderRequest:
    fund_code: str
    trading_account_id: str
    kind: OrderKind
    amount_minor: int
    shares: int
    request_id: str
    large_redemption: LargeRedemptionChoice = LargeRedemptionChoice.DEFER
    dividend_method: DividendMethod | None = None


@dataclasses.dataclass(frozen=True)
class Holding:
    """A holder's position and the shares a redemption may take now."""

    position: Position
    # Registered, less the fast redemptions since (they leave when accepted).
    shares: int
    available_shares: int
    # The position's, or the fund's default.
    dividend_method: DividendMethod


@dataclasses.dataclass(frozen=True)
class OrderRef:
    """What an order id says: its fund, trade date and holder shard."""

    fund_code: str
    trade_date: str
    shard: int
    order_id: str


class Agency:
    """The running product (`products.Running`)."""

    def __init__(self, backend: StorageBackend, clock: Clock, identity_key: bytes, shard_count: int) -> None:
        self._backend = backend
        self._clock = clock
        self._identity_key = identity_key
        self._shard_count = shard_count
        self._tenants = TenantStore(backend, clock)

    @property
    def backend(self) -> StorageBackend:
        return self._backend

    async def stop(self) -> None:
        """Nothing runs in the background: every change is written before its call answers."""

    # Funds

    async def create_fund(self, tenant: Tenant, fund: Fund, claim: Claim) -> Fund:
        if tenant.kind is not TenantKind.FUND_HOUSE:
            raise permission_denied(Reason.NOT_FUND_MANAGER, "only a fund house creates funds")
        now_ms = claim.claimed_ms
        code = fund.fund_code
        registered = Put((), {"manager_id": tenant.tenant_id, "create_time_ms": now_ms})
        registry = FUND_CODES.partition(PLATFORM_SCOPE, code)
        outcome = await self._backend.write(Batch(registry, (registered,), conditions=(RowAbsent(()),)))
        holder = outcome.current_rows.get(()) if not outcome.applied else None
        if holder is not None and (claim.fresh or holder["manager_id"] != tenant.tenant_id):
            raise already_exists(Reason.FUND_EXISTS, f"fund code {code} is taken", fund_code=code)
        created = msgspec.structs.replace(
            fund,
            manager_id=tenant.tenant_id,
            holder_shard_count=self._shard_count,
            create_time_ms=now_ms,
            update_time_ms=now_ms,
        )
        put = Put(FUND, {"record": encode(created), "version": 1})
        partition = FUNDS.partition(tenant.tenant_id, code)
        outcome = await self._backend.write(Batch(partition, (put,), conditions=(RowAbsent(FUND),)))
        if not outcome.applied:
            created = _fund_of(outcome.current_rows.get(FUND))
        await self._index(tenant.tenant_id, created)
        return created

    async def get_fund(self, tenant: Tenant, code: str) -> Fund:
        fund, _ = await self.visible_fund(tenant, code)
        return fund

    async def list_funds(
        self, tenant: Tenant, after: str | None, limit: int
    ) -> tuple[list[Fund], str | None]:
        """The funds the tenant manages or was granted, by code."""
        query = RowQuery(TENANT_FUNDS.partition(tenant.tenant_id), limit=limit)
        page = await self._backend.read_page(query.after((after,)) if after is not None else query)
        funds = []
        for row in page.rows:
            fund = await self._fund(row.as_text("manager_id"), row.as_text("fund_code"))
            if fund is not None:
                funds.append(fund)
        return funds, page.rows[-1].as_text("fund_code") if page.next_after is not None else None

    async def update_fund(self, tenant: Tenant, code: str, changes: FundChanges, claim: Claim) -> Fund:
        for _ in range(limits.fundta_write_attempts_max):
            fund, version = await self.managed_fund(tenant, code)
            updated = msgspec.structs.replace(
                fund,
                status=fund.status if changes.status is None else changes.status,
                calendar=fund.calendar
                if changes.holidays is None
                else msgspec.structs.replace(fund.calendar, holidays=changes.holidays),
                minimum_purchase_minor=_or(changes.minimum_purchase_minor, fund.minimum_purchase_minor),
                minimum_holding_shares=_or(changes.minimum_holding_shares, fund.minimum_holding_shares),
                update_time_ms=self._clock.wall_ms(),
            )
            put = Put(FUND, {"record": encode(updated), "version": version + 1})
            batch = Batch(
                FUNDS.partition(tenant.tenant_id, code),
                (put,),
                conditions=(RowMatches(FUND, {"version": version}),),
            )
            if (await self._backend.write(batch)).applied:
                return updated
        raise _contended(code)

    async def grant_fund(self, tenant: Tenant, code: str, distributor_id: str, claim: Claim) -> Grant:
        await self.managed_fund(tenant, code)
        if distributor_id == tenant.tenant_id:
            raise invalid("distributor_id", "a manager sells its own funds without a grant")
        distributor = await self._tenants.get_tenant(distributor_id)
        if distributor is None or Product.FUND_TA not in distributor.products:
            raise not_found(
                Reason.TENANT_NOT_FOUND, f"no tenant {distributor_id} with fund_ta", tenant_id=distributor_id
            )
        grant = Grant(code, distributor_id, claim.claimed_ms)
        key = (GRANT, distributor_id)
        partition = FUNDS.partition(tenant.tenant_id, code)
        for _ in range(limits.fundta_write_attempts_max):
            row = await self._backend.read_row(partition, key)
            kept = decode(row["record"], Grant) if row is not None else None
            if kept is not None and not kept.revoke_time_ms:
                grant = kept
                break
            # A revoked grant is granted anew.
            version = row.as_int("version") if row is not None else 0
            put = Put(key, {"record": encode(grant), "version": version + 1})
            condition = RowMatches(key, {"version": version}) if row is not None else RowAbsent(key)
            if (await self._backend.write(Batch(partition, (put,), conditions=(condition,)))).applied:
                break
        else:
            raise _contended(code)
        index = Put((code,), {"manager_id": tenant.tenant_id, "create_time_ms": grant.create_time_ms})
        await self._backend.write(Batch(TENANT_FUNDS.partition(distributor_id), (index,)))
        return grant

    async def revoke_grant(self, tenant: Tenant, code: str, distributor_id: str, claim: Claim) -> Grant:
        """End a distributor's right to sell the fund: its new orders are refused, what it placed stays."""
        await self.managed_fund(tenant, code)
        key = (GRANT, distributor_id)
        partition = FUNDS.partition(tenant.tenant_id, code)
        for _ in range(limits.fundta_write_attempts_max):
            row = await self._backend.read_row(partition, key)
            if row is None:
                raise not_found(
                    Reason.GRANT_NOT_FOUND,
                    f"{distributor_id} was never granted {code}",
                    fund_code=code,
                    distributor_id=distributor_id,
                )
            grant = decode(row["record"], Grant)
            if grant.revoke_time_ms:
                if grant.revoke_time_ms == claim.claimed_ms:
                    return grant
                raise failed_precondition(
                    Reason.INVALID_STATE,
                    f"the grant of {code} to {distributor_id} is already revoked",
                    fund_code=code,
                    distributor_id=distributor_id,
                )
            revoked = msgspec.structs.replace(grant, revoke_time_ms=claim.claimed_ms)
            version = row.as_int("version")
            put = Put(key, {"record": encode(revoked), "version": version + 1})
            batch = Batch(partition, (put,), conditions=(RowMatches(key, {"version": version}),))
            if (await self._backend.write(batch)).applied:
                return revoked
        raise _contended(code)

    async def list_grants(
        self, tenant: Tenant, code: str, *, after: str | None, limit: int
    ) -> tuple[list[Grant], str | None]:
        """The grants of the funds the tenant manages (every distributor's, revoked ones too) and those it
        was given, by fund code and distributor (one fund's with `code`); the position is "<fund
        code>/<distributor>", "<fund code>/~" once past every grant of that fund."""
        after_code, _, after_distributor = (after or "").partition("/")
        funds, complete = await self._funds_from(tenant, code, after_code, limit)
        grants: list[Grant] = []
        for fund_code, manager_id in funds:
            start = after_distributor if fund_code == after_code else ""
            grants += await self._grants_of(tenant, fund_code, manager_id, start, limit - len(grants))
            if len(grants) >= limit:
                last = grants[-1]
                return grants, f"{last.fund_code}/{last.distributor_id}"
        if complete or not funds:
            return grants, None
        return grants, f"{funds[-1][0]}/~"

    async def _funds_from(
        self, tenant: Tenant, code: str, after_code: str, limit: int
    ) -> tuple[list[tuple[str, str]], bool]:
        """The (code, manager) of the funds whose grants the tenant lists, from `after_code` on, read in at
        most `fundta_list_reads_max` pages, and whether they are all of them."""
        if code:
            fund, _ = await self.visible_fund(tenant, code)
            return [(code, fund.manager_id)], True
        lower = Bound((after_code,), inclusive=True) if after_code else None
        query = RowQuery(TENANT_FUNDS.partition(tenant.tenant_id), lower, limit=limit)
        funds: list[tuple[str, str]] = []
        for _ in range(limits.fundta_list_reads_max):
            page = await self._backend.read_page(query)
            funds += [(row.as_text("fund_code"), row.as_text("manager_id")) for row in page.rows]
            if page.next_after is None:
                return funds, True
            query = query.after(page.next_after)
        return funds, False

    async def fund_codes(self, tenant: Tenant, limit: int) -> list[str]:
        """The codes of the funds the tenant manages or was granted (at most `limit`, else
        INVALID_ARGUMENT: too many to take at once)."""
        funds, complete = await self._funds_from(tenant, "", "", limits.storage_page_rows_max)
        if not complete or len(funds) > limit:
            raise invalid("fund_code", f"required: you have more than {limit} funds")
        return [code for code, _ in funds]

    async def _grants_of(
        self, tenant: Tenant, code: str, manager_id: str, after_distributor: str, limit: int
    ) -> list[Grant]:
        """A fund's grants the tenant sees after `after_distributor`: every one (its manager), or its own."""
        partition = FUNDS.partition(manager_id, code)
        if manager_id != tenant.tenant_id:
            row = (
                None
                if after_distributor
                else await self._backend.read_row(partition, (GRANT, tenant.tenant_id))
            )
            return [decode(row["record"], Grant)] if row is not None else []
        lower = (
            Bound((GRANT, after_distributor), inclusive=False) if after_distributor else Bound((GRANT,), True)
        )
        page = await self._backend.read_page(RowQuery(partition, lower, Bound((GRANT,), True), limit=limit))
        return [decode(row["record"], Grant) for row in page.rows]

    # Prices

    async def publish_price(
        self, tenant: Tenant, code: str, date: datetime.date, nav: Decimal | None, income_minor: int
    ) -> Price:
        fund, _ = await self.managed_fund(tenant, code)
        money_market = fund.kind is FundKind.MONEY_MARKET
        if money_market and nav is not None:
            raise invalid("nav", "a money-market fund publishes its income (income_minor), not a NAV")
        if not money_market and nav is None:
            raise invalid("nav", "required: the NAV of a trade date")
        if not money_market and income_minor:
            raise invalid("income_minor", "only a money-market fund publishes an income")
        if nav is not None and (nav <= 0 or places(nav) > fund.nav_scale):
            raise invalid("nav", f"a positive NAV of at most {fund.nav_scale} places (the fund's nav_scale)")
        if date > calendar.trade_date_of(fund.calendar, self._clock.wall_ms()):
            raise invalid("price_date", "must not be after the fund's current trade date")
        if not money_market and not calendar.is_trade_date(fund.calendar, date):
            raise invalid("price_date", "a NAV is published for a trade date")
        price = Price(
            fund_code=fund.fund_code,
            price_date=date.isoformat(),
            nav=fixed(Decimal(1) if nav is None else nav, fund.nav_scale),
            income_minor=income_minor,
            income_per_10k_shares="",
            seven_day_yield_percent="",
            total_shares=0,
            currency=fund.currency,
            publish_time_ms=self._clock.wall_ms(),
        )
        key = (PRICE, price.price_date)
        put = Put(key, {"record": encode(price), "version": 1})
        partition = FUNDS.partition(tenant.tenant_id, code)
        outcome = await self._backend.write(Batch(partition, (put,), conditions=(RowAbsent(key),)))
        if outcome.applied:
            return price
        kept = decode(_row(outcome.current_rows.get(key))["record"], Price)
        if (kept.nav, kept.income_minor) != (price.nav, price.income_minor):
            raise already_exists(
                Reason.PRICE_PUBLISHED,
                f"the price of {code} on {price.price_date} was published with other values",
                fund_code=code,
                price_date=price.price_date,
            )
        return kept

    async def list_prices(
        self, tenant: Tenant, code: str, *, start: str, end: str, after: str | None, limit: int
    ) -> tuple[list[Price], str | None]:
        fund, _ = await self.visible_fund(tenant, code)
        lower = Bound((PRICE, after), inclusive=False) if after is not None else _from(PRICE, start)
        query = RowQuery(FUNDS.partition(fund.manager_id, code), lower, _to(PRICE, end), limit=limit)
        page = await self._backend.read_page(query)
        prices = [decode(row["record"], Price) for row in page.rows]
        return prices, prices[-1].price_date if page.next_after is not None else None

    # Investors

    async def open_investor(
        self,
        tenant: Tenant,
        trading_account_id: str,
        identity: str,
        display_name: str,
        claim: Claim,
    ) -> Investor:
        """The investor of the caller's trading account, with the TA fund account of `identity` (id type
        and number): the same account whichever distributor asks, derived from a keyed hash."""
        identity_hash = hmac.new(self._identity_key, identity.encode(), hashlib.sha256).hexdigest()
        investor = Investor(
            trading_account_id=trading_account_id,
            fund_account_id="F" + identity_hash[:20].upper(),
            distributor_id=tenant.tenant_id,
            display_name=display_name,
            identity_hash=identity_hash,
            create_time_ms=claim.claimed_ms,
        )
        partition = INVESTORS.partition(tenant.tenant_id, trading_account_id)
        put = Put((), {"record": encode(investor)})
        outcome = await self._backend.write(Batch(partition, (put,), conditions=(RowAbsent(()),)))
        if outcome.applied:
            return investor
        kept = decode(_row(outcome.current_rows.get(()))["record"], Investor)
        if kept.identity_hash != identity_hash:
            raise already_exists(
                Reason.INVESTOR_EXISTS,
                f"trading account {trading_account_id} belongs to another investor",
                trading_account_id=trading_account_id,
            )
        return kept

    async def get_investor(self, tenant: Tenant, trading_account_id: str) -> Investor:
        return await self._investor(tenant.tenant_id, trading_account_id)

    # Orders

    async def create_order(self, tenant: Tenant, request: OrderRequest, claim: Claim) -> Order:
        fund, _ = await self._selling_fund(tenant, request.fund_code)
        investor = await self._investor(tenant.tenant_id, request.trading_account_id)
        shard = shard_of(investor.fund_account_id, fund.holder_shard_count)
        partition = HOLDERS.partition(fund.manager_id, fund.fund_code, shard)
        placed = calendar.trade_date_of(fund.calendar, claim.claimed_ms)
        suffix = _order_suffix(tenant.tenant_id, request.request_id)
        checked = False
        for _ in range(limits.fundta_write_attempts_max):
            # A trade date whose day-close has sealed the shard takes no more orders: the next one does.
            sealed = _sealed(await self._backend.read_static(partition))
            trade_date = placed
            if sealed is not None and sealed >= placed.isoformat():
                trade_date = calendar.next_trade_date(fund.calendar, datetime.date.fromisoformat(sealed))
            day = trade_date.isoformat()
            order_id = functools.partial(_order_id, fund.fund_code, shard, suffix)
            if not claim.fresh:
                earlier = await self._earlier_order(partition, (placed.isoformat(), day), order_id)
                if earlier is not None:
                    return earlier
            if not checked:
                _check_order(fund, request)
                checked = True
            order = _placed(
                fixed(Decimal(1), fund.nav_scale),
                order_id=order_id(day),
                fund_code=fund.fund_code,
                distributor_id=tenant.tenant_id,
                trading_account_id=investor.trading_account_id,
                fund_account_id=investor.fund_account_id,
                kind=request.kind,
                status=OrderStatus.ACCEPTED,
                trade_date=day,
                amount_minor=request.amount_minor,
                shares=request.shares,
                currency=fund.currency,
                request_id=request.request_id,
                large_redemption=request.large_redemption,
                dividend_method=request.dividend_method,
                create_time_ms=claim.claimed_ms,
                update_time_ms=claim.claimed_ms,
            )
            today = calendar.today(fund.calendar, claim.claimed_ms).isoformat()
            outcome = await self._write_order(
                partition, order, sealed, (fund.fast_redemption_cap_minor, today)
            )
            if outcome is not None:
                return outcome
        raise _contended(fund.fund_code)

    async def _earlier_order(
        self, partition: PartitionRef, dates: tuple[str, ...], order_id: Callable[[str], str]
    ) -> Order | None:
        """The order an earlier attempt of this request wrote: on the date it was placed, or on the date
        a seal moved it to."""
        for day in dict.fromkeys(dates):
            row = await self._backend.read_row(partition, (order_kind(day), order_id(day)))
            if row is not None:
                return decode(row["record"], Order)
        return None

    async def _write_order(
        self, partition: PartitionRef, order: Order, sealed: str | None, fast_cap: tuple[int, str]
    ) -> Order | None:
        """Write a new order (a redemption reserves its shares, in the same batch), conditioned on the
        seal it was dated by: the order, the one an earlier attempt of its request wrote, or None when the
        holding or the seal moved. `fast_cap`: the fund's cap of fast redemptions and today's date."""
        key = (order_kind(order.trade_date), order.order_id)
        puts = [
            Put(key, {"record": encode(order), "version": 1}),
            Put((account_kind(order.fund_account_id), account_key(order)), {"version": 1}),
        ]
        conditions: list[RowAbsent | RowMatches | StaticMatches] = [
            RowAbsent(key),
            StaticMatches({"sealed_date": sealed}),
        ]
        if order.kind in (OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION):
            holder = _holding_key(order.distributor_id, order.trading_account_id)
            position = await self.position(partition, holder, order.fund_account_id)
            reservation_row = await self._backend.read_row(partition, (RESERVATION, holder))
            reservation = (
                decode(reservation_row["record"], Reservation) if reservation_row else Reservation(0)
            )
            available = position.shares - (reservation.reserved_shares - position.released_shares)
            try:
                reserved = _reserve(reservation, available, order, fast_cap)
            except ApiError:
                earlier = await self._backend.read_row(partition, key)
                if earlier is not None:
                    return decode(earlier["record"], Order)
                raise
            puts.append(_reservation_put(holder, reserved, reservation_row))
            conditions.append(_reservation_condition(holder, reservation_row))
        batch = Batch(
            partition, tuple(puts), static_values={"sealed_date": sealed}, conditions=tuple(conditions)
        )
        outcome = await self._backend.write(batch)
        if outcome.applied:
            return order
        earlier_row = outcome.current_rows.get(key)
        return decode(earlier_row["record"], Order) if earlier_row is not None else None

    async def cancel_order(self, tenant: Tenant, ref: OrderRef, claim: Claim) -> Order:
        # A distributor whose grant was revoked may still cancel what it placed.
        fund, _ = await self.visible_fund(tenant, ref.fund_code)
        partition = HOLDERS.partition(fund.manager_id, fund.fund_code, ref.shard)
        key = (order_kind(ref.trade_date), ref.order_id)
        for _ in range(limits.fundta_write_attempts_max):
            row = await self._backend.read_row(partition, key)
            order = decode(row["record"], Order) if row is not None else None
            if row is None or order is None or order.distributor_id != tenant.tenant_id:
                raise not_found(Reason.ORDER_NOT_FOUND, f"no order {ref.order_id}", order_id=ref.order_id)
            if order.status is OrderStatus.CANCELLED and not claim.fresh:
                return order
            if order.status is not OrderStatus.ACCEPTED:
                raise failed_precondition(
                    Reason.INVALID_STATE,
                    f"order {ref.order_id} is {order.status.value}",
                    order_id=ref.order_id,
                )
            now_ms = self._clock.wall_ms()
            sealed = _sealed(row)
            cut_off_ms = calendar.cut_off_ms(fund.calendar, datetime.date.fromisoformat(order.trade_date))
            if now_ms >= cut_off_ms or (sealed is not None and sealed >= order.trade_date):
                raise failed_precondition(
                    Reason.CUTOFF_PASSED,
                    f"the cut-off of {order.trade_date} has passed",
                    order_id=ref.order_id,
                    trade_date=order.trade_date,
                )
            cancelled = msgspec.structs.replace(order, status=OrderStatus.CANCELLED, update_time_ms=now_ms)
            version = row.as_int("version")
            puts = [Put(key, {"record": encode(cancelled), "version": version + 1})]
            conditions: list[RowAbsent | RowMatches | StaticMatches] = [
                RowMatches(key, {"version": version}),
                StaticMatches({"sealed_date": sealed}),
            ]
            if order.kind is OrderKind.REDEMPTION:
                holder = _holding_key(order.distributor_id, order.trading_account_id)
                reservation_row = _row(await self._backend.read_row(partition, (RESERVATION, holder)))
                reservation = decode(reservation_row["record"], Reservation)
                released = msgspec.structs.replace(
                    reservation, reserved_shares=reservation.reserved_shares - order.shares
                )
                puts.append(_reservation_put(holder, released, reservation_row))
                conditions.append(_reservation_condition(holder, reservation_row))
            batch = Batch(
                partition, tuple(puts), static_values={"sealed_date": sealed}, conditions=tuple(conditions)
            )
            if (await self._backend.write(batch)).applied:
                return cancelled
        raise _contended(fund.fund_code)

    async def get_order(self, tenant: Tenant, ref: OrderRef) -> Order:
        missing = not_found(Reason.ORDER_NOT_FOUND, f"no order {ref.order_id}", order_id=ref.order_id)
        manager_id = await self._manager_of(ref.fund_code)
        if manager_id is None:
            raise missing
        partition = HOLDERS.partition(manager_id, ref.fund_code, ref.shard)
        row = await self._backend.read_row(partition, (order_kind(ref.trade_date), ref.order_id))
        order = decode(row["record"], Order) if row is not None else None
        if order is None or tenant.tenant_id not in (manager_id, order.distributor_id):
            raise missing
        return order

    async def list_orders(
        self,
        tenant: Tenant,
        code: str,
        *,
        trade_date: str,
        distributor_id: str,
        after: str | None,
        limit: int,
    ) -> tuple[list[Order], str | None]:
        """The orders of a fund and trade date the caller may see, by holder shard and order id; the
        position is "<shard>/<order id>"."""
        fund, managed = await self.visible_fund(tenant, code)
        wanted = seen_distributor(fund, tenant.tenant_id, managed, distributor_id)
        shard, after_id = (0, None) if after is None else _position(after)
        orders: list[Order] = []
        kind = order_kind(trade_date)
        for _ in range(limits.fundta_list_reads_max):
            if shard >= fund.holder_shard_count or len(orders) >= limit:
                break
            lower = Bound((kind, after_id), inclusive=False) if after_id is not None else Bound((kind,), True)
            partition = HOLDERS.partition(fund.manager_id, code, shard)
            page = await self._backend.read_page(
                RowQuery(partition, lower, Bound((kind,), True), limit=limit)
            )
            complete = True
            for row in page.rows:
                if len(orders) >= limit:
                    complete = False
                    break
                order = decode(row["record"], Order)
                after_id = order.order_id
                if wanted is None or order.distributor_id == wanted:
                    orders.append(order)
            if complete and page.next_after is None:
                shard, after_id = shard + 1, None
        if shard >= fund.holder_shard_count:
            return orders, None
        return orders, f"{shard}/{after_id or ''}"

    # Holdings

    async def get_holding(
        self, tenant: Tenant, code: str, trading_account_id: str, distributor_id: str
    ) -> Holding:
        fund, managed = await self.visible_fund(tenant, code)
        if not managed and distributor_id not in ("", tenant.tenant_id):
            raise permission_denied(Reason.NOT_FUND_MANAGER, "a distributor reads only its own investors")
        if managed and not distributor_id:
            raise invalid("distributor_id", "required: the distributor whose investor it is")
        owner = distributor_id or tenant.tenant_id
        investor = await self._investor(owner, trading_account_id)
        shard = shard_of(investor.fund_account_id, fund.holder_shard_count)
        partition = HOLDERS.partition(fund.manager_id, code, shard)
        holder = _holding_key(owner, trading_account_id)
        position = await self.position(partition, holder, investor.fund_account_id)
        reservation_row = await self._backend.read_row(partition, (RESERVATION, holder))
        reservation = decode(reservation_row["record"], Reservation) if reservation_row else Reservation(0)
        fast_pending = reservation.fast_reserved_shares - position.fast_released_shares
        return Holding(
            position,
            shares=position.shares - fast_pending,
            available_shares=position.shares - (reservation.reserved_shares - position.released_shares),
            dividend_method=position.dividend_method or default_dividend_method(fund),
        )

    async def position(self, partition: PartitionRef, holder: str, fund_account_id: str) -> Position:
        position = await segments.read_position(self._backend, partition, holder)
        if position is not None:
            return position
        distributor_id, _, trading_account_id = holder.partition("/")
        return empty_position(distributor_id, trading_account_id, fund_account_id)

    # Lookups

    async def _manager_of(self, code: str) -> str | None:
        row = await self._backend.read_row(FUND_CODES.partition(PLATFORM_SCOPE, code))
        return row.as_text("manager_id") if row is not None else None

    async def _fund_row(self, manager_id: str, code: str) -> Row | None:
        return await self._backend.read_row(FUNDS.partition(manager_id, code), FUND)

    async def _fund(self, manager_id: str, code: str) -> Fund | None:
        row = await self._fund_row(manager_id, code)
        return _fund_of(row) if row is not None else None

    async def visible_fund(self, tenant: Tenant, code: str) -> tuple[Fund, bool]:
        """The fund, if the tenant manages it or was granted it, and whether it manages it."""
        return await visible_fund(self._backend, tenant.tenant_id, code)

    async def managed_fund(self, tenant: Tenant, code: str) -> tuple[Fund, int]:
        """The fund the tenant manages, with its version."""
        row = await self._fund_row(tenant.tenant_id, code)
        if row is None:
            fund, _ = await self.visible_fund(tenant, code)
            raise permission_denied(
                Reason.NOT_FUND_MANAGER, f"only the manager of {fund.fund_code} may do this", fund_code=code
            )
        return _fund_of(row), row.as_int("version")

    async def _selling_fund(self, tenant: Tenant, code: str) -> tuple[Fund, bool]:
        """A fund the tenant may place orders for: its own, or one it was granted."""
        manager_id = await self._manager_of(code)
        fund = await self._fund(manager_id, code) if manager_id is not None else None
        if fund is None:
            raise _no_fund(code)
        managed = manager_id == tenant.tenant_id
        if not managed and not await self._granted(fund, tenant.tenant_id):
            raise permission_denied(
                Reason.FUND_NOT_GRANTED,
                f"the manager of {code} has not granted it to you, or revoked the grant",
                fund_code=code,
            )
        return fund, managed

    async def _granted(self, fund: Fund, distributor_id: str) -> bool:
        """Whether the distributor may sell the fund now: granted, and not revoked since."""
        partition = FUNDS.partition(fund.manager_id, fund.fund_code)
        row = await self._backend.read_row(partition, (GRANT, distributor_id))
        return row is not None and not decode(row["record"], Grant).revoke_time_ms

    async def _investor(self, distributor_id: str, trading_account_id: str) -> Investor:
        row = await self._backend.read_row(INVESTORS.partition(distributor_id, trading_account_id))
        if row is None:
            raise not_found(
                Reason.INVESTOR_NOT_FOUND,
                f"no investor {trading_account_id}",
                trading_account_id=trading_account_id,
            )
        return decode(row["record"], Investor)

    async def _index(self, tenant_id: str, fund: Fund) -> None:
        put = Put((fund.fund_code,), {"manager_id": fund.manager_id, "create_time_ms": fund.create_time_ms})
        await self._backend.write(Batch(TENANT_FUNDS.partition(tenant_id), (put,)))


def parse_order_id(order_id: str) -> OrderRef | None:
    """The fund, trade date and shard an order id names, or None when it is not an order id."""
    parts = order_id.split("-")
    if len(parts) != 4 or not parts[2].isdigit() or len(parts[2]) != 4:
        return None
    code, day, shard, suffix = parts
    date = calendar.parse_date(f"{day[:4]}-{day[4:6]}-{day[6:]}") if len(day) == 8 and day.isdigit() else None
    if date is None or len(suffix) != 16 or not all(c in "0123456789abcdef" for c in suffix):
        return None
    if not 0 < len(code) <= limits.fundta_fund_code_length_max:
        return None
    return OrderRef(code, date.isoformat(), int(shard), order_id)


def _order_id(code: str, shard: int, suffix: str, day: str) -> str:
    return f"{code}-{day.replace('-', '')}-{shard:04d}-{suffix}"


def _order_suffix(distributor_id: str, request_id: str) -> str:
    """16 hex digits: derived from the distributor and request id (a retry names the same order), or
    random for a request without one."""
    if not request_id:
        return secrets.token_hex(8)
    return hashlib.sha256(f"{distributor_id}\n{request_id}".encode()).hexdigest()[:16]


def _position(after: str) -> tuple[int, str | None]:
    shard, _, order_id = after.partition("/")
    return int(shard), order_id or None


def _holding_key(distributor_id: str, trading_account_id: str) -> str:
    return f"{distributor_id}/{trading_account_id}"


async def visible_fund(backend: StorageBackend, tenant_id: str, code: str) -> tuple[Fund, bool]:
    """The fund, if the tenant manages it or was granted it (else FUND_NOT_FOUND), and whether it manages
    it."""
    row = await backend.read_row(FUND_CODES.partition(PLATFORM_SCOPE, code))
    manager_id = row.as_text("manager_id") if row is not None else None
    fund_row = (
        await backend.read_row(FUNDS.partition(manager_id, code), FUND) if manager_id is not None else None
    )
    if fund_row is None:
        raise _no_fund(code)
    fund = _fund_of(fund_row)
    if manager_id == tenant_id:
        return fund, True
    if await backend.read_row(FUNDS.partition(fund.manager_id, code), (GRANT, tenant_id)) is None:
        raise _no_fund(code)
    return fund, False


def scan(backend: StorageBackend, query: RowQuery, what: str) -> AsyncIterator[Row]:
    """Every row of a range read, page by page (at most `fundta_shard_pages_max` pages: `what` says whose
    range would pass it)."""
    pages_max = limits.fundta_shard_pages_max
    return read_all(
        backend, query, pages_max, lambda: InvariantViolation(f"{what} of more than {pages_max} pages")
    )


def seen_distributor(fund: Fund, tenant_id: str, managed: bool, distributor_id: str) -> str | None:
    """Whose investors' data a caller asking for `distributor_id` ("" for no filter) sees: one distributor,
    or None for every one (the manager only); a distributor asking for another's is NOT_FUND_MANAGER."""
    if managed:
        return distributor_id or None
    if distributor_id not in ("", tenant_id):
        raise permission_denied(
            Reason.NOT_FUND_MANAGER, f"a distributor sees only its own orders of {fund.fund_code}"
        )
    return tenant_id


def empty_position(distributor_id: str, trading_account_id: str, fund_account_id: str) -> Position:
    return Position(distributor_id, trading_account_id, fund_account_id, 0, (), 0, 0, 0, "")


def _sealed(row: Row | None) -> str | None:
    """The last trade date sealed in a holder shard (its static column), or None."""
    sealed = row["sealed_date"] if row is not None else None
    return sealed if isinstance(sealed, str) else None


def _reservation_put(holder: str, reservation: Reservation, row: Row | None) -> Put:
    version = row.as_int("version") + 1 if row is not None else 1
    return Put((RESERVATION, holder), {"record": encode(reservation), "version": version})


def _reserve(
    reservation: Reservation, available: int, order: Order, fast_cap: tuple[int, str]
) -> Reservation:
    """The reservation with a redemption's shares reserved (a fast redemption's counted against the
    fund's cap of the day too), or the refusal."""
    if available < order.shares:
        raise failed_precondition(
            Reason.INSUFFICIENT_SHARES,
            f"{shares_text(max(available, 0))} shares available",
            available_shares=shares_text(max(available, 0)),
        )
    reserved = msgspec.structs.replace(
        reservation, reserved_shares=reservation.reserved_shares + order.shares
    )
    if order.kind is not OrderKind.FAST_REDEMPTION:
        return reserved
    cap_minor, today = fast_cap
    used = reservation.fast_day_minor if reservation.fast_day == today else 0
    amount = order.confirmation.amount_minor if order.confirmation is not None else 0
    if used + amount > cap_minor:
        left = max(cap_minor - used, 0)
        raise failed_precondition(
            Reason.FAST_REDEMPTION_LIMIT,
            f"fast redemption left today: {left} minor units"
            if cap_minor
            else "this fund has no fast redemption",
            left_minor=str(left),
        )
    return msgspec.structs.replace(
        reserved,
        fast_reserved_shares=reservation.fast_reserved_shares + order.shares,
        fast_day=today,
        fast_day_minor=used + amount,
    )


def _placed(nav_one: str, **fields: Any) -> Order:
    """A new order as accepted: a fast redemption is confirmed at once, at NAV 1 (`nav_one`, at the
    fund's scale), without a fee."""
    order = Order(**fields)
    if order.kind is not OrderKind.FAST_REDEMPTION:
        return order
    confirmation = Confirmation(RETURN_OK, "", nav_one, order.shares, order.shares, 0, "")
    return msgspec.structs.replace(order, status=OrderStatus.CONFIRMED, confirmation=confirmation)


def _reservation_condition(holder: str, row: Row | None) -> RowAbsent | RowMatches:
    if row is None:
        return RowAbsent((RESERVATION, holder))
    return RowMatches((RESERVATION, holder), {"version": row.as_int("version")})


def _check_order(fund: Fund, request: OrderRequest) -> None:
    """What an order must meet to be accepted: the fund's status takes it, and its amount is at least
    the fund's minimum."""
    if request.kind not in STATUS_TAKES[fund.status]:
        raise failed_precondition(
            Reason.FUND_SUSPENDED,
            f"fund {fund.fund_code} is {fund.status.value}: no {request.kind.value} orders",
            fund_code=fund.fund_code,
        )
    if request.kind is OrderKind.FAST_REDEMPTION and not fund.fast_redemption_cap_minor:
        raise failed_precondition(
            Reason.FAST_REDEMPTION_LIMIT, f"{fund.fund_code} has no fast redemption", left_minor="0"
        )
    selling = request.kind in (OrderKind.SUBSCRIPTION, OrderKind.PURCHASE)
    if selling and request.amount_minor < fund.minimum_purchase_minor:
        raise failed_precondition(
            Reason.BELOW_MINIMUM,
            f"the least amount is {fund.minimum_purchase_minor} minor units",
            minimum_minor=str(fund.minimum_purchase_minor),
        )


def _fund_of(row: Row | None) -> Fund:
    return decode(_row(row)["record"], Fund)


def _row(row: Row | None) -> Row:
    if row is None:
        raise ApiError(ErrorCode.ABORTED, Reason.CONCURRENT_MODIFICATION, "a row changed meanwhile; retry")
    return row


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _from(kind: str, start: str) -> Bound:
    return Bound((kind, start), inclusive=True) if start else Bound((kind,), inclusive=True)


def _to(kind: str, end: str) -> Bound:
    return Bound((kind, end), inclusive=True) if end else Bound((kind,), inclusive=True)


def _no_fund(code: str) -> ApiError:
    return not_found(Reason.FUND_NOT_FOUND, f"no fund {code}", fund_code=code)


def _contended(code: str) -> ApiError:
    return ApiError(
        ErrorCode.ABORTED,
        Reason.CONCURRENT_MODIFICATION,
        f"fund {code} changed {limits.fundta_write_attempts_max} times meanwhile; retry",
    )
