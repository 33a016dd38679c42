"""The post-run check as a pure function: a ledger that agrees with the tally passes; a lost payment, a
duplicated one, a wrong amount or balance, an unresolved request or a dirty Reconcile fails it."""

from __future__ import annotations

import collections
import dataclasses
import itertools

from loadtest.check import Balance, Posting, Readback, check
from loadtest.tally import Leg, Movement, OpenHold, Tally

ACCOUNTS = ("bank", "alice", "bob", "shop", "escrow", "fees")
TALLY = Tally(
    accounts=ACCOUNTS,
    movements=(
        Movement("tr_fund_a", (Leg("bank", "alice", 10_000),), "fund alice"),
        Movement("tr_fund_b", (Leg("bank", "bob", 10_000),), "fund bob"),
        Movement("tr_pay", (Leg("alice", "shop", 1_250),), "transfer r-1"),
        Movement("tr_split", (Leg("bob", "shop", 700), Leg("bob", "fees", 30)), "transfer r-2"),
        Movement("tr_capture", (Leg("alice", "shop", 400),), "capture r-3"),
        Movement("", (Leg("bob", "escrow", 900),), "escrow r-4"),
        Movement("", (Leg("escrow", "shop", 800), Leg("escrow", "fees", 100)), "release r-5"),
        Movement("", (Leg("alice", "escrow", 300),), "escrow r-6"),
        Movement("", (Leg("escrow", "alice", 300),), "refund r-7"),
    ),
    open_holds=(OpenHold("hd_1", "alice", "shop", 222),),
)


def postings(transfer_id: str, legs: tuple[Leg, ...]) -> list[Posting]:
    found = []
    for index, leg in enumerate(legs):
        found.append(Posting(leg.debit_account_id, transfer_id, index, -leg.amount_minor))
        found.append(Posting(leg.credit_account_id, transfer_id, index, leg.amount_minor))
    return found


def ledger(movements: tuple[Movement, ...], tally: Tally = TALLY) -> Readback:
    """The journal and balances a server holding exactly `movements` would show; the escrow movements
    get transfer ids the tally never saw."""
    server_ids = (f"tr_server_{n}" for n in itertools.count())
    journal = [p for m in movements for p in postings(m.transfer_id or next(server_ids), m.legs)]
    sums: collections.Counter[str] = collections.Counter()
    for posting in journal:
        sums[posting.account_id] += posting.amount_minor
    held = collections.Counter({hold.account_id: hold.amount_minor for hold in tally.open_holds})
    balances = tuple(Balance(account, sums[account], held[account]) for account in tally.accounts)
    return Readback(balances, tuple(journal))


def without(transfer_id: str) -> tuple[Movement, ...]:
    return tuple(m for m in TALLY.movements if m.transfer_id != transfer_id)


def test_a_ledger_that_agrees_with_the_tally_passes() -> None:
    report = check(TALLY, ledger(TALLY.movements))
    assert report.passed, report.summary()
    assert (report.movements_checked, report.accounts_checked, report.postings_read) == (9, 6, 22)
    assert (report.missing_total, report.duplicated_total, report.balances_off_minor) == (0, 0, 0)
    assert report.summary().startswith("check PASSED")


def test_a_missing_payment_fails_the_check() -> None:
    report = check(TALLY, ledger(without("tr_pay")))
    assert not report.passed
    assert "missing: transfer tr_pay (transfer r-1) was acknowledged; it has no entry" in report.problems
    assert any(p.startswith("account alice: ledger balance") and "off by 1250" in p for p in report.problems)
    assert any(p.startswith("account shop: ledger balance") for p in report.problems)
    assert report.summary().startswith("check FAILED: 3 problems")
    # Alice kept the 1,250 she paid, the shop lacks it: 2,500 misplaced in all.
    assert (report.missing_total, report.duplicated_total, report.balances_off_minor) == (1, 0, 2_500)


def test_a_missing_escrow_movement_fails_the_check() -> None:
    lost = tuple(m for m in TALLY.movements if m.source != "release r-5")
    report = check(TALLY, ledger(lost))
    assert not report.passed
    assert any(p.startswith("missing: release r-5 acknowledged") for p in report.problems)


def test_a_duplicated_payment_fails_the_check() -> None:
    again = Movement("tr_pay_again", (Leg("alice", "shop", 1_250),), "")
    report = check(TALLY, ledger((*TALLY.movements, again)))
    assert not report.passed
    assert any(p.startswith("duplicated: transfer tr_pay_again posted") for p in report.problems)
    assert any(p.startswith("account alice:") and "off by -1250" in p for p in report.problems)
    assert (report.missing_total, report.duplicated_total, report.balances_off_minor) == (0, 1, 2_500)


def test_a_duplicated_escrow_settlement_fails_the_check() -> None:
    refund = next(m for m in TALLY.movements if m.source == "refund r-7")
    report = check(TALLY, ledger((*TALLY.movements, dataclasses.replace(refund, transfer_id=""))))
    assert not report.passed
    assert any(p.startswith("duplicated: transfer tr_server_") for p in report.problems)


def test_a_transfer_posted_twice_fails_the_check() -> None:
    readback = ledger(TALLY.movements)
    twice = dataclasses.replace(
        readback, postings=readback.postings + tuple(postings("tr_pay", TALLY.movements[2].legs))
    )
    report = check(TALLY, twice)
    assert not report.passed
    assert any(
        p.startswith("duplicated: transfer tr_pay (transfer r-1) is posted again") for p in report.problems
    )


def test_two_payments_answered_with_one_transfer_fail_the_check() -> None:
    same = Movement("tr_pay", (Leg("alice", "shop", 1_250),), "transfer r-9")
    tally = dataclasses.replace(TALLY, movements=(*TALLY.movements, same))
    report = check(tally, ledger(TALLY.movements))
    assert not report.passed
    assert any(
        p.startswith("lost: 2 acknowledged payments (transfer r-1, transfer r-9)") for p in report.problems
    )


def test_a_wrong_amount_fails_the_check() -> None:
    moved = tuple(
        dataclasses.replace(m, legs=(Leg("alice", "shop", 1_205),)) if m.transfer_id == "tr_pay" else m
        for m in TALLY.movements
    )
    report = check(TALLY, ledger(moved))
    assert any(p.startswith("wrong: transfer tr_pay (transfer r-1)") for p in report.problems)


def test_held_amounts_unresolved_requests_and_reconcile_count_too() -> None:
    readback = ledger(TALLY.movements)
    no_hold = dataclasses.replace(
        readback, balances=tuple(dataclasses.replace(b, held_minor=0) for b in readback.balances)
    )
    assert "account alice: held 0, the tally's open holds add up to 222" in check(TALLY, no_hold).problems
    unresolved = dataclasses.replace(TALLY, unresolved=("transfer r-8",))
    assert check(unresolved, readback).problems == (
        "unresolved: request transfer r-8 never got a definitive answer",
    )
    dirty = dataclasses.replace(readback, reconcile_problems=("DISCREPANCY_KIND_JOURNAL_SUM alice: ...",))
    assert check(TALLY, dirty).problems == ("reconcile: DISCREPANCY_KIND_JOURNAL_SUM alice: ...",)
    missing_account = dataclasses.replace(readback, balances=readback.balances[1:])
    assert check(TALLY, missing_account).problems == ("account bank was opened but is not listed",)
