"""Synthetic data of the shipping-return insurance case (运费险) for the co-creation walk-through.

The platform knows its buyers (a phone number, the category they buy most, how many orders they returned
last year); the insurer knows the policies it sold (the same phone numbers, for two buyers in three, plus
people the platform never saw) and which of them filed a claim. The true relation the two can find only
together: a buyer's chance to claim is 2 % plus 4 % per return last year (capped at four returns).

    python scripts/cocreation_demo.py --buyers 20000 --out var
writes var/buyers.csv (the platform's) and var/policies.csv (the insurer's), the same for the same seed.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path
from typing import Final

CATEGORIES: Final = ("apparel", "shoes", "electronics", "home", "books")
RETURNS_MAX: Final = 4
CLAIM_BASE: Final = 0.02
CLAIM_PER_RETURN: Final = 0.04
CLAIM_MINOR: Final = 1_200  # fen: the shipping refunded


def claim_chance(returns: int) -> float:
    return CLAIM_BASE + CLAIM_PER_RETURN * min(returns, RETURNS_MAX)


def write(buyers: int, out: Path, seed: int) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    with (
        (out / "buyers.csv").open("w", newline="") as platform,
        (out / "policies.csv").open("w", newline="") as insurer,
    ):
        buyers_csv, policies_csv = csv.writer(platform), csv.writer(insurer)
        buyers_csv.writerow(["buyer", "category", "return_band"])
        policies_csv.writerow(["buyer", "claimed", "claim_minor"])
        for number in range(buyers):
            phone = f"138{number:08d}"
            returns = min(int(rng.expovariate(0.8)), RETURNS_MAX)
            buyers_csv.writerow([phone, rng.choice(CATEGORIES), str(returns)])
            if rng.random() < 2 / 3:
                claimed = int(rng.random() < claim_chance(returns))
                policies_csv.writerow([phone, claimed, claimed * CLAIM_MINOR])
        for number in range(buyers // 10):
            policies_csv.writerow([f"139{number:08d}", 0, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buyers", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("var"))
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    write(args.buyers, args.out, args.seed)


if __name__ == "__main__":
    main()
