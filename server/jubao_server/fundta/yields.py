"""Money-market yields, exactly (Decimal with fixed scales and explicit rounding, never floats).

* 万份收益 (income per 10,000 shares) = income / total shares x 10,000, in the fund's currency, truncated to
  4 places: the holders' incomes, each shares x 万份收益 / 10,000, never add up to more than the income.
* 七日年化 (7-day annualised yield) = ((1 + R1/10,000) x ... x (1 + R7/10,000))^(365/7) - 1, as a
  percentage rounded half to even to 3 places, R the 万份收益 of 7 consecutive natural dates.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from jubao_server import limits
from jubao_server.fundta.decimals import SHARE_PLACES
from jubao_server.invariants import ensure

PER_10K_PLACES: Final = 4
YIELD_PLACES: Final = 3
# Working precision: far past what the fixed scales keep.
_PRECISION: Final = 60


def income_per_10k(income_minor: int, currency_exponent: int, total_shares: int) -> Decimal:
    """万份收益 of `income_minor` over `total_shares` (hundredths of a share); 0 when there are none."""
    ensure(income_minor >= 0 and total_shares >= 0, "income and shares are not negative")
    if total_shares == 0:
        return Decimal(0).quantize(Decimal(1).scaleb(-PER_10K_PLACES))
    with decimal.localcontext() as context:
        context.prec = _PRECISION
        income = Decimal(income_minor).scaleb(-currency_exponent)
        shares = Decimal(total_shares).scaleb(-SHARE_PLACES)
        exact = income / shares * 10_000
        return exact.quantize(Decimal(1).scaleb(-PER_10K_PLACES), rounding=decimal.ROUND_DOWN)


def seven_day_yield(per_10k: Sequence[Decimal]) -> Decimal:
    """七日年化 (a percentage) of the 万份收益 of 7 consecutive natural dates."""
    ensure(len(per_10k) == limits.fundta_yield_days, "七日年化 needs 7 dates")
    with decimal.localcontext() as context:
        context.prec = _PRECISION
        product = Decimal(1)
        for value in per_10k:
            product *= 1 + value / 10_000
        percent = (product ** (Decimal(365) / Decimal(limits.fundta_yield_days)) - 1) * 100
        # A tiny fund with a large income can annualise past the working precision: keep every digit.
        context.prec = max(_PRECISION, percent.adjusted() + YIELD_PLACES + 1)
        return percent.quantize(Decimal(1).scaleb(-YIELD_PLACES), rounding=decimal.ROUND_HALF_EVEN)
