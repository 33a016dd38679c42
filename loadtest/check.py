"""The post-run check: the harness's tally held against what the ledger says, as a pure function.

`check(tally, readback)` passes only when Reconcile was clean, no request was left with an unknown outcome,
every acknowledged transfer the API named is in the journal with exactly its postings (not missing, not
posted twice, not another amount), the movements the API does not name (escrow funding, release, refund)
match the journal's other transfers one for one, and every account's ledger and held balances are what
the tally adds up to. A lost or duplicated payment breaks at least two of these.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable

from loadtest import bounds
from loadtest.tally import Movement, Tally

# (account, leg index, signed amount): one journal entry, without its transfer id.
Shape = tuple[tuple[str, int, int], ...]


@dataclasses.dataclass(frozen=True)
class Posting:
    """A journal entry as ListEntries returned it; `amount_minor` is negative for a debit."""

    account_id: str
    transfer_id: str
    leg_index: int
    amount_minor: int


@dataclasses.dataclass(frozen=True)
class Balance:
    account_id: str
    ledger_minor: int
    held_minor: int


@dataclasses.dataclass(frozen=True)
class Readback:
    """What the server said after the run: the accounts' balances, their journals, Reconcile's findings."""

    balances: tuple[Balance, ...]
    postings: tuple[Posting, ...]
    reconcile_problems: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CheckReport:
    problems: tuple[str, ...]
    problems_total: int
    movements_checked: int
    accounts_checked: int
    postings_read: int
    # Acknowledged movements not in the journal, journal transfers posted again, and the money misplaced:
    # the sum over accounts of how far the ledger and held balances are from the tally's.
    missing_total: int = 0
    duplicated_total: int = 0
    balances_off_minor: int = 0

    @property
    def passed(self) -> bool:
        return self.problems_total == 0

    def summary(self) -> str:
        counts = (
            f"{self.movements_checked:,} acknowledged movements, {self.accounts_checked:,} accounts, "
            f"{self.postings_read:,} journal entries"
        )
        if self.passed:
            return f"check PASSED: Reconcile clean; {counts} agree with the tally"
        listed = "\n  ".join(self.problems)
        return f"check FAILED: {self.problems_total} problems ({counts}):\n  {listed}"


def check(tally: Tally, readback: Readback) -> CheckReport:
    problems = [f"reconcile: {problem}" for problem in readback.reconcile_problems]
    problems += [
        f"unresolved: request {request} never got a definitive answer" for request in tally.unresolved
    ]
    by_transfer: dict[str, list[Posting]] = collections.defaultdict(list)
    for posting in readback.postings:
        by_transfer[posting.transfer_id].append(posting)
    named = _named(tally.movements)
    problems += _check_named(named, by_transfer)
    problems += _check_unnamed(
        tally.movements, {tid: p for tid, p in by_transfer.items() if tid not in named}
    )
    balance_problems, off_minor = _check_balances(tally, readback.balances)
    problems += balance_problems
    return CheckReport(
        problems=tuple(problems[: bounds.problems_listed_max]),
        problems_total=len(problems),
        movements_checked=len(tally.movements),
        accounts_checked=len(tally.accounts),
        postings_read=len(readback.postings),
        missing_total=sum(problem.startswith(("missing:", "lost:")) for problem in problems),
        duplicated_total=sum(problem.startswith("duplicated:") for problem in problems),
        balances_off_minor=off_minor,
    )


def postings_of(movement: Movement) -> Shape:
    entries = []
    for index, leg in enumerate(movement.legs):
        entries.append((leg.debit_account_id, index, -leg.amount_minor))
        entries.append((leg.credit_account_id, index, leg.amount_minor))
    return tuple(sorted(entries))


def _shape(postings: Iterable[Posting]) -> Shape:
    return tuple(sorted((p.account_id, p.leg_index, p.amount_minor) for p in postings))


def _named(movements: Iterable[Movement]) -> dict[str, list[Movement]]:
    named: dict[str, list[Movement]] = collections.defaultdict(list)
    for movement in movements:
        if movement.transfer_id:
            named[movement.transfer_id].append(movement)
    return named


def _check_named(named: dict[str, list[Movement]], by_transfer: dict[str, list[Posting]]) -> list[str]:
    problems = []
    for transfer_id, movements in named.items():
        sources = ", ".join(movement.source for movement in movements)
        if len(movements) > 1:
            problems.append(
                f"lost: {len(movements)} acknowledged payments ({sources}) were all answered with transfer "
                f"{transfer_id}"
            )
        expected = collections.Counter(postings_of(movements[0]))
        found = collections.Counter(_shape(by_transfer.get(transfer_id, ())))
        if expected == found:
            continue
        if not found:
            problems.append(f"missing: transfer {transfer_id} ({sources}) was acknowledged; it has no entry")
        elif not expected - found:
            extra = sorted((found - expected).elements())
            problems.append(f"duplicated: transfer {transfer_id} ({sources}) is posted again: {extra}")
        else:
            problems.append(
                f"wrong: transfer {transfer_id} ({sources}): expected {sorted(expected.elements())}, "
                f"the journal has {sorted(found.elements())}"
            )
    return problems


def _check_unnamed(movements: Iterable[Movement], others: dict[str, list[Posting]]) -> list[str]:
    """Movements without a transfer id against the journal's transfers that no acknowledgement named:
    the same shapes (accounts, legs, amounts), as many times each."""
    sources: dict[Shape, list[str]] = collections.defaultdict(list)
    for movement in movements:
        if not movement.transfer_id:
            sources[postings_of(movement)].append(movement.source)
    expected = collections.Counter({shape: len(found) for shape, found in sources.items()})
    transfers: dict[Shape, list[str]] = collections.defaultdict(list)
    for transfer_id, postings in sorted(others.items()):
        transfers[_shape(postings)].append(transfer_id)
    found = collections.Counter({shape: len(ids) for shape, ids in transfers.items()})
    problems = []
    for shape, count in (expected - found).items():
        requests = ", ".join(sources[shape][:count])
        problems.append(f"missing: {requests} acknowledged {list(shape)}; no transfer of the journal matches")
    for shape, count in (found - expected).items():
        ids = ", ".join(transfers[shape][-count:])
        problems.append(
            f"duplicated: transfer {ids} posted {list(shape)}, which no acknowledgement accounts for"
        )
    return problems


def _check_balances(tally: Tally, balances: Iterable[Balance]) -> tuple[list[str], int]:
    """The accounts whose balances are not the tally's, and by how much they are off in all (minor units,
    absolute values summed; an account not listed counts with what the tally gives it)."""
    ledger: collections.Counter[str] = collections.Counter()
    for movement in tally.movements:
        for account_id, _, amount_minor in postings_of(movement):
            ledger[account_id] += amount_minor
    held: collections.Counter[str] = collections.Counter()
    for hold in tally.open_holds:
        held[hold.account_id] += hold.amount_minor
    found = {balance.account_id: balance for balance in balances}
    problems = []
    off_minor = 0
    for account_id in tally.accounts:
        balance = found.get(account_id)
        if balance is None:
            problems.append(f"account {account_id} was opened but is not listed")
            off_minor += abs(ledger[account_id]) + abs(held[account_id])
            continue
        off_minor += abs(balance.ledger_minor - ledger[account_id]) + abs(
            balance.held_minor - held[account_id]
        )
        if balance.ledger_minor != ledger[account_id]:
            problems.append(
                f"account {account_id}: ledger balance {balance.ledger_minor}, the tally adds up to "
                f"{ledger[account_id]} (off by {balance.ledger_minor - ledger[account_id]})"
            )
        if balance.held_minor != held[account_id]:
            problems.append(
                f"account {account_id}: held {balance.held_minor}, the tally's open holds add up to "
                f"{held[account_id]}"
            )
    return problems, off_minor
