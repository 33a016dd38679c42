"""Decimal strings at the API's edge: shares (2 places), rates (at most 6), NAVs (the fund's scale).

Parsing is exact (`decimal.Decimal` of the text, never a float) and refuses more places than allowed;
formatting gives the fixed number of places.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

SHARE_PLACES: Final = 2
RATE_PLACES: Final = 6
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?$")


def parse(text: str, places: int) -> Decimal | None:
    """A non-negative decimal with at most `places` places, or None when `text` is not one."""
    match = _DECIMAL.match(text)
    if match is None or len(match.group(2) or ".") - 1 > places:
        return None
    return Decimal(text)


def parse_shares(text: str) -> int | None:
    """Shares in hundredths ("12.5" is 1250), or None."""
    value = parse(text, SHARE_PLACES)
    return None if value is None else int(value.scaleb(SHARE_PLACES))


def shares_text(hundredths: int) -> str:
    return str(Decimal(hundredths).scaleb(-SHARE_PLACES).quantize(Decimal(1).scaleb(-SHARE_PLACES)))


def fixed(value: Decimal, places: int) -> str:
    """`value` (already at most `places` places) with exactly `places` places."""
    return str(value.quantize(Decimal(1).scaleb(-places)))


def places(value: Decimal) -> int:
    """The decimal places `value` is written with."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0
