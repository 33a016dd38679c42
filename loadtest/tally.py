"""The harness's own account of what the server acknowledged: every money movement it was told happened
(with the transfer id when the API names one), the holds still open, and the requests whose outcome never
became known. The post-run check (`loadtest/check.py`) holds the ledger against it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True, order=True)
class Leg:
    debit_account_id: str
    credit_account_id: str
    amount_minor: int


@dataclasses.dataclass(frozen=True)
class Movement:
    """An acknowledged movement of money. `transfer_id` is empty where the API does not name the transfer
    (the funding, release and refund of an escrow); `source` says which request it answers."""

    transfer_id: str
    legs: tuple[Leg, ...]
    source: str


@dataclasses.dataclass(frozen=True)
class OpenHold:
    hold_id: str
    account_id: str
    payee_account_id: str
    amount_minor: int


@dataclasses.dataclass(frozen=True)
class OpenEscrow:
    escrow_id: str
    buyer_account_id: str
    seller_account_id: str
    escrow_account_id: str
    fee_account_id: str
    amount_minor: int
    fee_minor: int


@dataclasses.dataclass(frozen=True)
class Tally:
    accounts: tuple[str, ...] = ()
    movements: tuple[Movement, ...] = ()
    open_holds: tuple[OpenHold, ...] = ()
    refused: int = 0
    resolved: int = 0
    unresolved: tuple[str, ...] = ()

    @staticmethod
    def merge(parts: Iterable[Tally]) -> Tally:
        parts = list(parts)
        return Tally(
            accounts=tuple(account for part in parts for account in part.accounts),
            movements=tuple(movement for part in parts for movement in part.movements),
            open_holds=tuple(hold for part in parts for hold in part.open_holds),
            refused=sum(part.refused for part in parts),
            resolved=sum(part.resolved for part in parts),
            unresolved=tuple(request for part in parts for request in part.unresolved),
        )


class TallyBuilder:
    """A worker's tally while it runs."""

    def __init__(self) -> None:
        self.movements: list[Movement] = []
        self.open_holds: dict[str, OpenHold] = {}
        self.refused = 0
        self.resolved = 0
        self.unresolved: list[str] = []

    def moved(self, transfer_id: str, legs: Iterable[Leg], source: str) -> None:
        paid = tuple(leg for leg in legs if leg.amount_minor > 0)
        if paid:
            self.movements.append(Movement(transfer_id, paid, source))

    def build(self) -> Tally:
        return Tally(
            movements=tuple(self.movements),
            open_holds=tuple(self.open_holds.values()),
            refused=self.refused,
            resolved=self.resolved,
            unresolved=tuple(self.unresolved),
        )
