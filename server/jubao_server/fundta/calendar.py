"""A fund's trading calendar: which dates are trade dates, and the trade date of an order.

Weekends are never trade dates, nor the calendar's holidays. An order placed before the cut-off (local
time in the calendar's zone) of a trade date belongs to that date; any other order to the next trade date
(15:00:01 on a Friday belongs to Monday, or later after a holiday).
"""

from __future__ import annotations

import datetime
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jubao_server import limits
from jubao_server.fundta.model import Calendar
from jubao_server.invariants import ensure, unreachable

DEFAULT_TIME_ZONE = "Asia/Shanghai"
DEFAULT_CUT_OFF = "15:00"
_ONE_DAY = datetime.timedelta(days=1)


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone `name`, or None when there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def cut_off_time(text: str) -> datetime.time | None:
    """A local "HH:MM", or None."""
    try:
        parsed = datetime.time.fromisoformat(text)
    except ValueError:
        return None
    return parsed if len(text) == 5 else None


def parse_date(text: str) -> datetime.date | None:
    """A "YYYY-MM-DD" date, or None."""
    try:
        parsed = datetime.date.fromisoformat(text)
    except ValueError:
        return None
    return parsed if len(text) == 10 else None


def is_trade_date(calendar: Calendar, date: datetime.date) -> bool:
    return date.weekday() < 5 and date.isoformat() not in _holidays(calendar)


def next_trade_date(calendar: Calendar, after: datetime.date) -> datetime.date:
    """The first trade date after `after`."""
    date = after + _ONE_DAY
    for _ in range(limits.fundta_calendar_scan_days_max):
        if is_trade_date(calendar, date):
            return date
        date += _ONE_DAY
    unreachable(f"no trade date within {limits.fundta_calendar_scan_days_max} days of {after}")


def trade_date_of(calendar: Calendar, at_ms: int) -> datetime.date:
    """The trade date of an order placed at `at_ms` (epoch milliseconds)."""
    local = datetime.datetime.fromtimestamp(at_ms / 1000, _zone(calendar))
    date = local.date()
    if is_trade_date(calendar, date) and local.time() < _cut_off(calendar):
        return date
    return next_trade_date(calendar, date)


def cut_off_ms(calendar: Calendar, date: datetime.date) -> int:
    """The cut-off instant of `date` (epoch milliseconds)."""
    local = datetime.datetime.combine(date, _cut_off(calendar), tzinfo=_zone(calendar))
    return int(local.timestamp() * 1000)


def today(calendar: Calendar, at_ms: int) -> datetime.date:
    """The local date at `at_ms`."""
    return datetime.datetime.fromtimestamp(at_ms / 1000, _zone(calendar)).date()


def _zone(calendar: Calendar) -> ZoneInfo:
    found = zone(calendar.time_zone)
    ensure(found is not None, f"a stored calendar names an unknown zone {calendar.time_zone}")
    return found  # type: ignore[return-value]


def _cut_off(calendar: Calendar) -> datetime.time:
    parsed = cut_off_time(calendar.cut_off)
    ensure(parsed is not None, f"a stored calendar has a bad cut-off {calendar.cut_off}")
    return parsed  # type: ignore[return-value]


@functools.lru_cache(maxsize=256)
def _holidays_of(holidays: tuple[str, ...]) -> frozenset[str]:
    return frozenset(holidays)


def _holidays(calendar: Calendar) -> frozenset[str]:
    return _holidays_of(calendar.holidays)
