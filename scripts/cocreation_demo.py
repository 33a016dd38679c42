"""Synthetic data of the shipping-return insurance case (运费险) for the co-creation walk-through, drawn by
`jubao.bulk.shipping` (seeded, column by column): the platform's orders (order id, category, the buyer's
past return rate, the seller's rating) and the insurer's policies on some of them (claimed or not), with a
known true relation between return behaviour and claims (the constants of `jubao.bulk.shipping`).

    python scripts/cocreation_demo.py --out var                                    # the full size
    python scripts/cocreation_demo.py --orders 200000 --policies 40000 --out var   # the README's
writes var/orders.csv (the platform's) and var/policies.csv (the insurer's), the same for the same seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.csv as pa_csv
from jubao.bulk.shipping import ORDERS_FULL, POLICIES_FULL, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=ORDERS_FULL)
    parser.add_argument("--policies", type=int, default=POLICIES_FULL)
    parser.add_argument("--out", type=Path, default=Path("var"))
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    case = generate(args.orders, args.policies, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    pa_csv.write_csv(case.orders, args.out / "orders.csv")
    pa_csv.write_csv(case.policies, args.out / "policies.csv")


if __name__ == "__main__":
    main()
