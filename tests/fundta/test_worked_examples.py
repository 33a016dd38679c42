"""Worked examples with hand-computed figures: trade dates by the calendar, 万份收益 and 七日年化."""

from __future__ import annotations

import datetime
from decimal import Decimal

from jubao_server.fundta import calendar, yields
from jubao_server.fundta.decimals import parse_shares, shares_text
from jubao_server.fundta.model import Calendar

from tests.fundta.support import shanghai_ms

# The default calendar with the National Day week of 2026 as holidays (Thursday 1 to Wednesday 7 October).
NATIONAL_DAY = Calendar("Asia/Shanghai", "15:00", tuple(f"2026-10-0{d}" for d in range(1, 8)))


def test_an_order_after_the_cut_off_or_on_a_closed_day_belongs_to_the_next_trade_date() -> None:
    cases = {
        "2026-09-30 14:59:59": "2026-09-30",  # Wednesday, before the cut-off
        "2026-09-30 15:00:00": "2026-10-08",  # at the cut-off: after the holiday week
        "2026-10-03 10:00:00": "2026-10-08",  # a Saturday inside the holidays
        "2026-10-08 15:00:01": "2026-10-09",  # Thursday after the cut-off: Friday
        "2026-10-09 15:00:01": "2026-10-12",  # Friday after the cut-off: Monday
        "2026-10-10 23:59:59": "2026-10-12",  # Saturday
    }
    for local, expected in cases.items():
        assert calendar.trade_date_of(NATIONAL_DAY, shanghai_ms(local)).isoformat() == expected, local
    # 15:00 in Shanghai is 07:00 UTC.
    assert calendar.cut_off_ms(NATIONAL_DAY, datetime.date(2026, 10, 8)) == shanghai_ms("2026-10-08 15:00:00")
    new_york = Calendar("America/New_York", "16:00", ())
    # 02:00 UTC on Saturday is still Friday 21:00 in New York: after its cut-off, so Monday.
    saturday_utc = int(datetime.datetime(2026, 10, 10, 2, tzinfo=datetime.UTC).timestamp() * 1000)
    assert calendar.trade_date_of(new_york, saturday_utc) == datetime.date(2026, 10, 12)


def test_income_per_10k_shares_is_truncated_to_4_places() -> None:
    # 1,234,567.89 yuan over 1,000,000,000.00 shares: 0.00123456789 per share, 12.3456789 per 10,000.
    assert yields.income_per_10k(123_456_789, 2, 1_000_000_000_00) == Decimal("12.3456")
    # 100.00 yuan over 300,000.00 shares: 3.3333... per 10,000, truncated (never rounded up).
    assert yields.income_per_10k(100_00, 2, 300_000_00) == Decimal("3.3333")
    # 0.02 yuan over 30,000.00 shares: 0.00666... per 10,000, truncated to 0.0066.
    assert yields.income_per_10k(2, 2, 30_000_00) == Decimal("0.0066")
    assert str(yields.income_per_10k(5, 2, 0)) == "0.0000"


def test_the_7_day_yield_over_a_week_with_a_weekend_and_a_holiday() -> None:
    # Thursday 0.6500, Friday 0.6500, Saturday, Sunday and the holiday Monday 0.6400 each (the weekend's and
    # the holiday's income is published too), Tuesday and Wednesday 0.6600.
    # By hand: ln of the product = sum of ln(1 + R/10,000) = 4.54e-4 - 2.945e-8 / 2 = 4.5398528e-4;
    # x 365/7 = 0.0236720896; exp of it = 1.0239545; less 1, as a percentage: 2.39545...%, so 2.395.
    week = [Decimal(r) for r in ("0.6500", "0.6500", "0.6400", "0.6400", "0.6400", "0.6600", "0.6600")]
    assert yields.seven_day_yield(week) == Decimal("2.395")
    # A flat 0.6000 a day: (1.00006)^365 - 1 = 2.21399...%, so 2.214.
    assert yields.seven_day_yield([Decimal("0.6000")] * 7) == Decimal("2.214")
    # Nothing earned: 0.000.
    assert str(yields.seven_day_yield([Decimal(0)] * 7)) == "0.000"
    # A fund of one share earning 100 yuan a day annualises past any precision: still a number.
    huge = yields.seven_day_yield([Decimal("1000000.0000")] * 7)
    assert huge > 10**200 and huge.as_tuple().exponent == -3


def test_shares_are_hundredths_parsed_exactly() -> None:
    assert parse_shares("1000.5") == 100050
    assert parse_shares("0.01") == 1
    for bad in ("1.001", "-1", "1e3", "", "01", " 1", "NaN"):
        assert parse_shares(bad) is None, bad
    assert shares_text(100050) == "1000.50"
    assert shares_text(0) == "0.00"
