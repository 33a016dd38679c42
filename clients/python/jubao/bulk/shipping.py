"""Synthetic data of the shipping-return insurance case (运费险), the demo of data co-creation: the
platform's orders and an insurer's policies on some of them, with a known true relation between return
behaviour and claims, so that a model trained on their join can be checked against it.

Orders: `order_id` (the join key, tokenized before upload), `category`, `buyer_return_rate_bp` (the
buyer's past return rate in basis points) and `seller_rating` (the seller's rating in tenths of a star,
10 to 50). Policies: `order_id`, `premium_minor`, `claimed` (1 if a claim was filed) and `claim_minor`.
A policy is written on a random `policies` of the orders; its claim is filed with the probability

    1 / (1 + exp(-(INTERCEPT + CATEGORY_EFFECTS[category]
                   + RETURN_RATE_PER_BP * buyer_return_rate_bp + SELLER_RATING_PER_TENTH * seller_rating)))

Everything is drawn from one seeded generator, column by column (numpy and pyarrow, no loop per row):
the same seed gives the same tables."""

from __future__ import annotations

import dataclasses
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ORDERS_FULL: Final = 1_000_000
POLICIES_FULL: Final = 200_000
# The true relation (log-odds of a claim).
INTERCEPT: Final = -1.0
RETURN_RATE_PER_BP: Final = 0.0004
SELLER_RATING_PER_TENTH: Final = -0.04
CATEGORY_EFFECTS: Final = {
    "apparel": 0.6,
    "shoes": 0.4,
    "beauty": 0.0,
    "home": -0.2,
    "electronics": -0.4,
    "books": -0.8,
}
_CATEGORY_SHARES: Final = (0.3, 0.15, 0.15, 0.15, 0.15, 0.1)
_PREMIUM_MINOR: Final = (25, 60, 120)  # fen, by the order's price band
_CLAIM_MINOR: Final = 1200  # the refund of a return's shipping, in fen


@dataclasses.dataclass(frozen=True)
class ShippingCase:
    orders: pa.Table
    policies: pa.Table


def generate(orders: int = ORDERS_FULL, policies: int = POLICIES_FULL, seed: int = 16) -> ShippingCase:
    """`orders` orders and `policies` policies on distinct orders among them (at most one each)."""
    if not 0 < policies <= orders:
        raise ValueError("0 < policies <= orders")
    rng = np.random.default_rng(seed)
    names = list(CATEGORY_EFFECTS)
    category_index = rng.choice(len(names), size=orders, p=_CATEGORY_SHARES)
    return_rate_bp = np.rint(rng.beta(2.0, 10.0, size=orders) * 10_000).astype(np.int64)
    seller_rating = np.clip(np.rint(rng.normal(44.0, 4.0, size=orders)), 10, 50).astype(np.int64)
    order_ids = pc.binary_join_element_wise(
        "o", pc.utf8_lpad(pa.array(np.arange(orders)).cast(pa.string()), width=8, padding="0"), ""
    )
    categories = pa.DictionaryArray.from_arrays(pa.array(category_index), pa.array(names)).cast(pa.string())
    order_table = pa.table(
        {
            "order_id": order_ids,
            "category": categories,
            "buyer_return_rate_bp": return_rate_bp,
            "seller_rating": seller_rating,
        }
    )
    insured = np.sort(rng.choice(orders, size=policies, replace=False))
    effects = np.array([CATEGORY_EFFECTS[name] for name in names])
    log_odds = (
        INTERCEPT
        + effects[category_index[insured]]
        + RETURN_RATE_PER_BP * return_rate_bp[insured]
        + SELLER_RATING_PER_TENTH * seller_rating[insured]
    )
    claimed = (rng.random(policies) < 1.0 / (1.0 + np.exp(-log_odds))).astype(np.int64)
    premium = np.array(_PREMIUM_MINOR, dtype=np.int64)[rng.integers(0, len(_PREMIUM_MINOR), size=policies)]
    policy_table = pa.table(
        {
            "order_id": order_ids.take(pa.array(insured)),
            "premium_minor": premium,
            "claimed": claimed,
            "claim_minor": claimed * _CLAIM_MINOR,
        }
    )
    return ShippingCase(order_table, policy_table)
