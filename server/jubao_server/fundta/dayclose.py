"""The day-close of a trade date T: a long-running operation (AIP-151) that confirms T's orders against
T's price and, for a money-market fund, distributes the income of the natural dates since the last
day-close. Its steps (the record `("close", T)` of the fund's partition keeps where it is):

1. **sealing**: each holder shard's static `sealed_date` becomes T (a conditional write); an order batch
   is conditioned on the seal it read, so no order joins T afterwards (a later one belongs to the next
   trade date, a cancellation of one of T's is CUTOFF_PASSED);
2. **planning**: the fund-wide figures are fixed from every shard's positions as the last day-close left
   them: each income date's 万份收益 over the shares of that point (`close.plan_incomes`), T's NAV; the
   plan is stored with the record (conditional on its version), so a restart after some shards committed
   uses the same plan;
3. **committing**: shard by shard (several at once), every holder's income is carried forward on the
   shard's columns (`segments.py`) and its orders of T confirmed (`close.py`); the confirmed orders go
   in batches of at most `fundta_close_batch_rows_max` rows, then every chunk of the shard's positions
   and its static `closed_date` = T in one batch conditioned on the `closed_date` read. A shard already
   closed at T is skipped, and one cut short before its chunks were written confirms its orders again
   from the same positions, so a day-close cut short and started again gives the same rows, bit for bit;
4. **done**: the result is read back from the shards (and checked: the holders' incomes are what the
   plan distributed, the shares registered are the shares before plus those confirmed), each
   distributor's totals are settled through the manager's payments ledger (`settlement.py`), the fund's
   shares and last closed date are updated, the record says SUCCEEDED.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TypeVar

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import failed_precondition, not_found
from jubao_server.fundta import calendar, close, segments, yields
from jubao_server.fundta.agency import (
    CLOSE,
    FUND,
    PRICE,
    Agency,
    empty_position,
    order_kind,
    scan,
)
from jubao_server.fundta.decimals import fixed
from jubao_server.fundta.model import (
    ClosePlan,
    CloseResult,
    DayClose,
    DayClosePhase,
    DayCloseState,
    DistributorTotals,
    Fund,
    FundKind,
    FundStatus,
    IncomeDay,
    LargeRedemptionRule,
    Order,
    OrderKind,
    OrderStatus,
    Position,
    Price,
    decode,
    encode,
)
from jubao_server.fundta.settlement import settle
from jubao_server.fundta.tables import FUNDS, HOLDERS
from jubao_server.invariants import ensure, unreachable
from jubao_server.payments.api import LedgerApi
from jubao_server.payments.currencies import MINOR_UNIT_EXPONENTS
from jubao_server.platform.operations import Operations
from jubao_server.storage.contract import (
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
)
from jubao_server.tenancy.model import Tenant

V = TypeVar("V")


def next_close_date(fund: Fund) -> datetime.date:
    """The trade date the fund's next day-close closes: the one after the last closed, or for the first,
    the trade date the fund was created in."""
    if fund.last_closed_date:
        return calendar.next_trade_date(fund.calendar, datetime.date.fromisoformat(fund.last_closed_date))
    return calendar.trade_date_of(fund.calendar, fund.create_time_ms)


def income_dates(fund: Fund, trade_date: datetime.date) -> list[str]:
    """The natural dates whose income the day-close of `trade_date` distributes (money-market funds):
    those after the last trade date closed, up to it; the first day-close distributes its own date's."""
    if not fund.last_closed_date:
        return [trade_date.isoformat()]
    last = datetime.date.fromisoformat(fund.last_closed_date)
    days = (trade_date - last).days
    return [(last + datetime.timedelta(days=d)).isoformat() for d in range(1, days + 1)]


class DayCloses:
    """Starts, resumes and reads day-closes; each runs as a task of this process."""

    def __init__(self, agency: Agency, backend: StorageBackend, clock: Clock, ledger: LedgerApi) -> None:
        self._agency = agency
        self._backend = backend
        self._clock = clock
        self._ledger = ledger
        self._runs = Operations("day-close")

    async def stop(self) -> None:
        await self._runs.stop()

    async def start(self, tenant: Tenant, code: str, trade_date: datetime.date) -> DayClose:
        """Start the day-close of `trade_date`, or resume it (an earlier start was cut short), or answer it
        (it is done)."""
        fund, _ = await self._agency.managed_fund(tenant, code)
        day = trade_date.isoformat()
        partition = FUNDS.partition(fund.manager_id, code)
        row = await self._backend.read_row(partition, (CLOSE, day))
        if row is None:
            await self._check_start(fund, trade_date)
            now_ms = self._clock.wall_ms()
            record = DayClose(
                code,
                day,
                DayCloseState.RUNNING,
                DayClosePhase.SEALING,
                fund.holder_shard_count,
                0,
                now_ms,
                now_ms,
            )
            put = Put((CLOSE, day), {"record": encode(record), "version": 1})
            outcome = await self._backend.write(
                Batch(partition, (put,), conditions=(RowAbsent((CLOSE, day)),))
            )
            row = outcome.current_rows.get((CLOSE, day)) if not outcome.applied else None
            if outcome.applied:
                self._launch(fund.manager_id, code, day)
                return record
        record = decode(_row(row)["record"], DayClose)
        if record.state is DayCloseState.RUNNING:
            self._launch(fund.manager_id, code, day)
        return record

    async def get(self, tenant: Tenant, code: str, trade_date: datetime.date) -> DayClose:
        fund, _ = await self._agency.managed_fund(tenant, code)
        row = await self._backend.read_row(
            FUNDS.partition(fund.manager_id, code), (CLOSE, trade_date.isoformat())
        )
        if row is None:
            raise not_found(
                Reason.DAY_CLOSE_NOT_FOUND,
                f"no day-close of {code} on {trade_date.isoformat()}",
                fund_code=code,
                trade_date=trade_date.isoformat(),
            )
        return decode(row["record"], DayClose)

    async def _check_start(self, fund: Fund, trade_date: datetime.date) -> None:
        expected = next_close_date(fund)
        if trade_date != expected:
            raise failed_precondition(
                Reason.CLOSE_ORDER,
                f"the next trade date {fund.fund_code} closes is {expected.isoformat()}",
                next_close_date=expected.isoformat(),
            )
        current = calendar.trade_date_of(fund.calendar, self._clock.wall_ms())
        if trade_date > current:
            raise failed_precondition(
                Reason.CLOSE_ORDER,
                f"{trade_date.isoformat()} is after the current trade date {current.isoformat()}",
                next_close_date=expected.isoformat(),
            )
        for day in self._price_dates(fund, trade_date):
            if await self._price(fund, day) is None:
                raise failed_precondition(
                    Reason.PRICE_MISSING,
                    f"the price of {fund.fund_code} on {day} is not published",
                    price_date=day,
                )

    def _price_dates(self, fund: Fund, trade_date: datetime.date) -> list[str]:
        if fund.kind is FundKind.MONEY_MARKET:
            return income_dates(fund, trade_date)
        if fund.status is FundStatus.ISSUING:
            return []
        return [trade_date.isoformat()]

    def _launch(self, manager_id: str, code: str, day: str) -> None:
        # The record stays RUNNING where a run stopped: StartDayClose again resumes it.
        self._runs.launch((manager_id, code, day), lambda: self.run(manager_id, code, day))

    async def run(self, manager_id: str, code: str, day: str) -> DayClose:
        """Run a day-close from where its record says it is, to the end. Each phase's end is a write of
        the record conditioned on its version: another runner that got there first wins, and this one
        goes on from what it stored."""
        partition = FUNDS.partition(manager_id, code)
        for _ in range(limits.fundta_close_steps_max):
            row = await self._backend.read_row(partition, (CLOSE, day))
            record, version = decode(_row(row)["record"], DayClose), _row(row).as_int("version")
            if record.state is DayCloseState.SUCCEEDED:
                return record
            fund = decode(_row(await self._backend.read_row(partition, FUND))["record"], Fund)
            advanced = await self._step(fund, record)
            put = Put((CLOSE, day), {"record": encode(advanced), "version": version + 1})
            condition = RowMatches((CLOSE, day), {"version": version})
            await self._backend.write(Batch(partition, (put,), conditions=(condition,)))
        unreachable(f"a day-close did not end within {limits.fundta_close_steps_max} steps")

    async def _step(self, fund: Fund, record: DayClose) -> DayClose:
        """The record after the next phase ran."""
        day = record.trade_date
        now_ms = self._clock.wall_ms()
        match record.phase:
            case DayClosePhase.SEALING:
                await _each_shard(fund, lambda shard: self._seal(self._shard(fund, shard), day))
                return msgspec.structs.replace(record, phase=DayClosePhase.PLANNING, update_time_ms=now_ms)
            case DayClosePhase.PLANNING:
                plan = await self._plan(fund, datetime.date.fromisoformat(day))
                return msgspec.structs.replace(
                    record, phase=DayClosePhase.COMMITTING, plan=plan, update_time_ms=now_ms
                )
            case DayClosePhase.COMMITTING:
                plan = _present(record.plan, "plan to commit")
                await self._publish_incomes(fund, plan)
                await _each_shard(fund, lambda shard: self._commit_shard(fund, plan, day, shard))
                result = await self._result(fund, plan, day)
                await settle(self._ledger, fund, day, result.distributors)
                await self._close_fund(fund, day, result)
                return msgspec.structs.replace(
                    record,
                    state=DayCloseState.SUCCEEDED,
                    phase=DayClosePhase.DONE,
                    shards_committed=fund.holder_shard_count,
                    result=result,
                    update_time_ms=now_ms,
                )
            case DayClosePhase.DONE:
                return msgspec.structs.replace(record, state=DayCloseState.SUCCEEDED)

    # Phases

    def _shard(self, fund: Fund, shard: int) -> PartitionRef:
        return HOLDERS.partition(fund.manager_id, fund.fund_code, shard)

    async def _seal(self, partition: PartitionRef, day: str) -> None:
        """Seal the shard at `day` (conditioned on the seal read, as the orders are)."""
        for _ in range(limits.fundta_write_attempts_max):
            static = await self._backend.read_static(partition)
            sealed = static["sealed_date"] if static is not None else None
            if isinstance(sealed, str) and sealed >= day:
                return
            batch = Batch(
                partition,
                static_values={"sealed_date": day},
                conditions=(StaticMatches({"sealed_date": sealed}),),
            )
            if (await self._backend.write(batch)).applied:
                return
        raise _busy(partition)

    async def _plan(self, fund: Fund, trade_date: datetime.date) -> ClosePlan:
        """T's NAV, and the income of each date distributed over every position as the last day-close
        left it (every shard is sealed and none committed T yet)."""
        nav = Decimal(1)
        if fund.kind is not FundKind.MONEY_MARKET and fund.status is not FundStatus.ISSUING:
            nav = Decimal(_present(await self._price(fund, trade_date.isoformat()), "NAV").nav)
        incomes: tuple[IncomeDay, ...] = ()
        if fund.kind is FundKind.MONEY_MARKET:
            shares: list[pa.Array] = []

            async def read(shard: int) -> None:
                positions = await segments.read_shard(self._backend, self._shard(fund, shard))
                for table in positions.chunks:
                    closed = pc.max(table["closed_date"]).as_py() if table.num_rows else None
                    ensure(
                        closed is None or closed < trade_date.isoformat(), "a position closed before its plan"
                    )
                    shares.append(table["shares"].combine_chunks())

            await _each_shard(fund, read)
            column = pa.concat_arrays(shares) if shares else pa.array([], pa.int64())
            days = []
            for day in income_dates(fund, trade_date):
                days.append((day, _present(await self._price(fund, day), "income").income_minor))
            incomes = close.plan_incomes(column, days)
            ensure(
                close.sum_of(column) == fund.total_shares, "the positions do not add up to the fund's shares"
            )
        next_date = calendar.next_trade_date(fund.calendar, trade_date).isoformat()
        ratio = Decimal(1)
        if fund.large_redemption_rule is LargeRedemptionRule.PRO_RATA:
            pricing = close.Pricing(nav, fund.nav_scale, MINOR_UNIT_EXPONENTS[fund.currency])
            ratio = await self._redemption_ratio(fund, pricing, trade_date.isoformat())
        return ClosePlan(fixed(nav, fund.nav_scale), incomes, str(ratio), next_date)

    async def _redemption_ratio(self, fund: Fund, pricing: close.Pricing, day: str) -> Decimal:
        """The share of each of the day's redemptions confirmed: below 1 when its net redemptions pass 10 %
        of the fund's shares (`close.redemption_ratio`)."""
        redeemed = purchased = 0
        for shard in range(fund.holder_shard_count):
            async for row in self._rows(self._shard(fund, shard), (order_kind(day),)):
                order = decode(row["record"], Order)
                if order.status is not OrderStatus.ACCEPTED:
                    continue
                if order.kind is OrderKind.REDEMPTION:
                    redeemed += order.shares
                else:
                    purchased += close.purchase_shares(fund, pricing, order)
        return close.redemption_ratio(fund.total_shares, redeemed, purchased)

    async def _publish_incomes(self, fund: Fund, plan: ClosePlan) -> None:
        """Each distributed date's price gets its 万份收益, the shares and residual, and its 七日年化 when the
        6 dates before it were distributed too (rewritten with the same values by a restart)."""
        partition = FUNDS.partition(fund.manager_id, fund.fund_code)
        for day in plan.incomes:
            price = _present(await self._price(fund, day.date), "price of a distributed date")
            per_10k = Decimal(day.per_10k).scaleb(-yields.PER_10K_PLACES)
            before = []
            date = datetime.date.fromisoformat(day.date)
            for back in range(limits.fundta_yield_days - 1, 0, -1):
                earlier = await self._price(fund, (date - datetime.timedelta(days=back)).isoformat())
                if earlier is not None and earlier.income_per_10k_shares:
                    before.append(Decimal(earlier.income_per_10k_shares))
            seven = ""
            if len(before) == limits.fundta_yield_days - 1:
                seven = str(yields.seven_day_yield([*before, per_10k]))
            distributed = msgspec.structs.replace(
                price,
                income_per_10k_shares=fixed(per_10k, yields.PER_10K_PLACES),
                seven_day_yield_percent=seven,
                total_shares=day.total_shares,
                residual_minor=day.residual_minor,
            )
            put = Put((PRICE, day.date), {"record": encode(distributed), "version": 1})
            await self._backend.write(Batch(partition, (put,)))

    async def _commit_shard(self, fund: Fund, plan: ClosePlan, day: str, shard: int) -> None:
        """Carry the income forward and confirm T's orders of one holder shard, chunk by chunk on whole
        columns: the orders with their confirmations are written first (unconditionally: until the shard
        is committed they are rewritten from the same positions, with the same bytes), then every chunk
        of positions and the shard's `closed_date` in one batch conditioned on the `closed_date` read."""
        partition = self._shard(fund, shard)
        static = await self._backend.read_static(partition)
        closed = static["closed_date"] if static is not None else None
        if closed == day:
            return
        positions = await segments.read_shard(self._backend, partition)
        orders: list[dict[str, list[Order]]] = [{} for _ in positions.chunks]
        async for row in self._rows(partition, (order_kind(day),)):
            order = _as_accepted(decode(row["record"], Order))
            holder = f"{order.distributor_id}/{order.trading_account_id}"
            orders[segments.chunk_of(holder)].setdefault(holder, []).append(order)
        pricing = close.Pricing(
            Decimal(plan.nav),
            fund.nav_scale,
            MINOR_UNIT_EXPONENTS[fund.currency],
            Decimal(plan.redemption_ratio),
            plan.next_trade_date,
        )
        # The income and the closing date on the whole shard at once (Arrow's cost is per call), then
        # the chunks again as the same slices of it.
        carried = segments.carry_incomes(pa.concat_tables(positions.chunks), plan.incomes)
        closed_dates = pa.repeat(pa.scalar(day, pa.string()), carried.num_rows)
        carried = carried.set_column(
            segments.SCHEMA.get_field_index("closed_date"), "closed_date", closed_dates
        )
        lengths = [table.num_rows for table in positions.chunks]
        starts = list(itertools.accumulate(lengths, initial=0))[:-1]
        chunks: list[pa.Table] = []
        confirmed: list[Order] = []
        for start, length, mine in zip(starts, lengths, orders, strict=True):
            table = carried.slice(start, length)
            if mine:
                table, done = _confirm_chunk(fund, pricing, day, table, mine)
                confirmed += done
            chunks.append(table)
        await self._write_confirmed(partition, day, confirmed)
        commit = Batch(
            partition,
            tuple(segments.chunk_puts(chunks)),
            static_values={"closed_date": day},
            conditions=(StaticMatches({"closed_date": closed}),),
        )
        outcome = await self._backend.write(commit)
        current = outcome.current_static
        if not outcome.applied and (current is None or current["closed_date"] != day):
            raise _busy(partition)
        await segments.delete_legacy(self._backend, partition, positions.legacy_keys)

    async def _write_confirmed(self, partition: PartitionRef, day: str, confirmed: Sequence[Order]) -> None:
        """T's orders with their confirmations, in batches of at most `fundta_close_batch_rows_max` rows; a
        deferred rest of a redemption (an order of the next trade date) only if an earlier run of this
        day-close did not write it already (its distributor may have cancelled it since)."""
        puts = []
        for order in confirmed:
            key = (order_kind(order.trade_date), order.order_id)
            if order.trade_date != day and await self._backend.read_row(partition, key) is not None:
                continue
            puts.append(Put(key, {"record": encode(order), "version": 2}))
        step = limits.fundta_close_batch_rows_max
        for start in range(0, len(puts), step):
            await self._backend.write(Batch(partition, tuple(puts[start : start + step])))

    async def _result(self, fund: Fund, plan: ClosePlan, day: str) -> CloseResult:
        """What the day-close did, read back from the shards, and checked against the plan."""
        counts: Counter[str] = Counter()
        distributors: dict[str, list[int]] = {}

        async def tally(shard: int) -> None:
            partition = self._shard(fund, shard)
            for table in (await segments.read_shard(self._backend, partition)).chunks:
                shares = table["shares"]
                counts["holders"] += pc.count(pc.filter(shares, pc.greater(shares, 0))).as_py()
                counts["total"] += close.sum_of(shares)
                if plan.incomes:
                    same = pc.equal(table["closed_date"], day)
                    counts["income"] += close.sum_of(pc.filter(table["last_income_minor"], same))
            async for row in self._rows(partition, (order_kind(day),)):
                order = decode(row["record"], Order)
                if order.confirmation is None:
                    continue
                sums = distributors.setdefault(order.distributor_id, [0, 0, 0, 0])
                if order.status is OrderStatus.FAILED:
                    counts["failed"] += 1
                    continue
                counts["confirmed"] += 1
                counts["prorated"] += 1 if order.status is OrderStatus.PARTIALLY_CONFIRMED else 0
                fee = order.confirmation.fee_minor
                if order.kind in (OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION):
                    counts["sold"] += order.confirmation.shares
                    sums[2] += order.confirmation.amount_minor
                    sums[3] += fee
                else:
                    counts["bought"] += order.confirmation.shares
                    sums[0] += order.confirmation.amount_minor
                    sums[1] += fee

        await _each_shard(fund, tally)
        holders, total, income = counts["holders"], counts["total"], counts["income"]
        bought, sold = counts["bought"], counts["sold"]
        distributed = sum(d.distributed_minor for d in plan.incomes)
        ensure(income == distributed, "the holders' incomes are not what the plan distributed")
        ensure(total == fund.total_shares + distributed + bought - sold, "the shares do not add up")
        return CloseResult(
            holders=holders,
            orders_confirmed=counts["confirmed"],
            orders_failed=counts["failed"],
            total_shares=total,
            income_minor=sum(d.income_minor for d in plan.incomes),
            residual_minor=sum(d.residual_minor for d in plan.incomes),
            distributors=tuple(DistributorTotals(d, *sums) for d, sums in sorted(distributors.items())),
            redemption_ratio=plan.redemption_ratio,
            orders_prorated=counts["prorated"],
        )

    async def _close_fund(self, fund: Fund, day: str, result: CloseResult) -> None:
        partition = FUNDS.partition(fund.manager_id, fund.fund_code)
        for _ in range(limits.fundta_write_attempts_max):
            row = _row(await self._backend.read_row(partition, FUND))
            current = decode(row["record"], Fund)
            if current.last_closed_date >= day:
                return
            closed = msgspec.structs.replace(current, total_shares=result.total_shares, last_closed_date=day)
            version = row.as_int("version")
            put = Put(FUND, {"record": encode(closed), "version": version + 1})
            batch = Batch(partition, (put,), conditions=(RowMatches(FUND, {"version": version}),))
            if (await self._backend.write(batch)).applied:
                return
        raise _busy(partition)

    async def _price(self, fund: Fund, day: str) -> Price | None:
        row = await self._backend.read_row(FUNDS.partition(fund.manager_id, fund.fund_code), (PRICE, day))
        return decode(row["record"], Price) if row is not None else None

    def _rows(self, partition: PartitionRef, kind: tuple[str]) -> AsyncIterator[Row]:
        """Every row of one kind of a shard, page by page."""
        query = RowQuery(partition, Bound(kind, True), Bound(kind, True), limit=limits.storage_page_rows_max)
        return scan(self._backend, query, "a holder shard")


async def _each_shard(fund: Fund, work: Callable[[int], Awaitable[None]]) -> None:
    """`work` on every holder shard of `fund`, at most `fundta_close_shards_in_flight_max` at once (the
    shards are independent; what the phases add up does not depend on their order). The first failure
    cancels the others of its group and is raised."""
    step = limits.fundta_close_shards_in_flight_max
    for start in range(0, fund.holder_shard_count, step):
        tasks = [
            asyncio.ensure_future(work(shard))
            for shard in range(start, min(start + step, fund.holder_shard_count))
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def _confirm_chunk(
    fund: Fund, pricing: close.Pricing, day: str, table: pa.Table, orders: dict[str, list[Order]]
) -> tuple[pa.Table, list[Order]]:
    """A chunk's positions after its holders' orders of `day` (each holder's with `close.confirm`, in
    holder order) and the orders with their confirmations. A holder without a position whose orders
    confirmed nothing (all cancelled) gets none."""
    holders = sorted(orders)
    found = pc.index_in(pa.array(holders, pa.string()), value_set=segments.holder_keys(table)).to_pylist()
    rows = [i for i in found if i is not None]
    before = dict(
        zip(
            [h for h, i in zip(holders, found, strict=True) if i is not None],
            segments.positions_of(table.take(pa.array(rows, pa.int64()))),
            strict=True,
        )
    )
    changed: list[Position] = []
    new: list[Position] = []
    confirmed: list[Order] = []
    for holder in holders:
        mine = orders[holder]
        position = before.get(holder)
        after, done = close.confirm(fund, pricing, day, position or _first_position(mine), mine)
        if position is not None:
            changed.append(after)
        elif done:
            new.append(after)
        confirmed += done
    # The changed rows (in the order of `rows`) take the places of the rows they replace, so the chunk
    # stays sorted; only new holders need a sort.
    places = list(range(table.num_rows))
    for j, i in enumerate(rows):
        places[i] = table.num_rows + j
    table = pa.concat_tables([table, segments.table_of(changed)]).take(pa.array(places, pa.int64()))
    if new:
        table = segments.sorted_holders(pa.concat_tables([table, segments.table_of(new)]))
    return table, confirmed


def _as_accepted(order: Order) -> Order:
    """An order of T as it was before this day-close: one an earlier run confirmed (its shard not
    committed yet) is confirmed again from the same positions. Fast redemptions were confirmed when
    accepted."""
    if order.kind is OrderKind.FAST_REDEMPTION or order.confirmation is None:
        return order
    return msgspec.structs.replace(order, status=OrderStatus.ACCEPTED, confirmation=None)


def _first_position(orders: Sequence[Order]) -> Position:
    """The empty position of a holder whose first orders these are."""
    first = orders[0]
    return empty_position(first.distributor_id, first.trading_account_id, first.fund_account_id)


def _present(value: V | None, what: str) -> V:
    """`value`, which the day-close's earlier steps wrote."""
    if value is None:
        unreachable(f"a day-close finds no {what}")
    return value


def _row(row: Row | None) -> Row:
    return _present(row, "row it wrote")


def _busy(partition: PartitionRef) -> Exception:
    from jubao_server.errors import unavailable  # noqa: PLC0415

    return unavailable(
        Reason.STORAGE_UNAVAILABLE, f"{partition.table.name} kept changing; the day-close resumes"
    )
