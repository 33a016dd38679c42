"""In-memory state of one ledger shard and the rules a change must obey.

`Stage` is a copy-on-write overlay used while a group of commands is applied: a command either changes
the stage completely or raises `ApiError` having changed nothing (all checks run before any write).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from jubao.reasons import Reason

from jubao_server.errors import ApiError, failed_precondition, not_found
from jubao_server.invariants import ensure
from jubao_server.payments.model import Account, AccountKind, AccountPolicy, Balance, EntryKind, Transfer
from jubao_server.storage.contract import INT64_MAX, INT64_MIN, Row, Value

DAY_MS = 86_400_000
# (row kind, row key) of a shard item: ("hold", id), ("escrow", id), ("refunded", "<transfer>:<leg>").
ItemKey = tuple[str, str]


@dataclasses.dataclass
class AccountState:
    account: Account
    ledger_minor: int = 0
    held_minor: int = 0
    entry_seq: int = 0
    outflow_day: int = 0
    outflow_minor: int = 0
    open_request_id: str = ""

    @property
    def balance(self) -> Balance:
        return Balance(self.ledger_minor, self.held_minor)

    def row_values(self) -> dict[str, Value]:
        account, policy = self.account, self.account.policy
        return {
            "currency": account.currency,
            "account_kind": account.kind.value,
            "display_name": account.display_name,
            "allow_negative": policy.allow_negative,
            "debits_frozen": policy.debits_frozen,
            "credits_frozen": policy.credits_frozen,
            "single_payment_limit_minor": policy.single_payment_limit_minor,
            "daily_outflow_limit_minor": policy.daily_outflow_limit_minor,
            "ledger_minor": self.ledger_minor,
            "held_minor": self.held_minor,
            "entry_seq": self.entry_seq,
            "outflow_day": self.outflow_day,
            "outflow_minor": self.outflow_minor,
            "create_time_ms": account.create_time_ms,
            "update_time_ms": account.update_time_ms,
            "version": account.version,
            "open_request_id": self.open_request_id,
        }

    @classmethod
    def from_row(cls, row: Row) -> AccountState:
        policy = AccountPolicy(
            allow_negative=bool(row["allow_negative"]),
            debits_frozen=bool(row["debits_frozen"]),
            credits_frozen=bool(row["credits_frozen"]),
            single_payment_limit_minor=row.as_int("single_payment_limit_minor"),
            daily_outflow_limit_minor=row.as_int("daily_outflow_limit_minor"),
        )
        account = Account(
            account_id=row.as_text("row_key"),
            currency=row.as_text("currency"),
            kind=AccountKind(row.as_text("account_kind")),
            policy=policy,
            display_name=row.as_text("display_name"),
            create_time_ms=row.as_int("create_time_ms"),
            update_time_ms=row.as_int("update_time_ms"),
            version=row.as_int("version"),
        )
        return cls(
            account,
            row.as_int("ledger_minor"),
            row.as_int("held_minor"),
            row.as_int("entry_seq"),
            row.as_int("outflow_day"),
            row.as_int("outflow_minor"),
            row.as_text("open_request_id"),
        )


@dataclasses.dataclass(frozen=True)
class Posting:
    """One side of a leg applied to an account: the journal entry it produces."""

    account_id: str
    entry_seq: int
    leg_index: int
    kind: EntryKind
    amount_minor: int
    balance_after_minor: int
    time_ms: int

    def as_record(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"kind": self.kind.value}


class Stage:
    """Accounts touched by the commands of one group commit, over the shard's committed state."""

    def __init__(
        self,
        committed: dict[str, AccountState],
        known_transfers: Mapping[str, Transfer],
        items: Mapping[ItemKey, dict[str, Any]],
        now_ms: int,
        *,
        known_credits: Collection[str] = (),
        known_requests: Collection[str] = (),
        outbox: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self._committed = committed
        self._copies: dict[str, AccountState] = {}
        self._known_transfers = known_transfers
        self._items = items
        self._known_credits = known_credits
        self._known_requests = known_requests
        self._outbox = outbox or {}
        self.now_ms = now_ms
        self.touched: dict[str, AccountState] = {}
        self.new_transfers: dict[str, Transfer] = {}
        self.touched_items: dict[ItemKey, dict[str, Any]] = {}
        self.new_credits: set[str] = set()
        self.new_requests: set[str] = set()
        self.dropped_outbox: set[str] = set()

    def credited(self, marker_key: str) -> bool:
        """Whether this owner applied the credit `marker_key` (earlier, or earlier in this group)."""
        return marker_key in self.new_credits or marker_key in self._known_credits

    def requested(self, request_id: str) -> bool:
        """Whether this owner applied the (non-transfer) request `request_id`, earlier or in this group."""
        return bool(request_id) and (request_id in self.new_requests or request_id in self._known_requests)

    def owed(self, transfer_id: str) -> dict[str, Any] | None:
        """The outbox entry of `transfer_id`, unless it is gone (or dropped earlier in this group)."""
        return None if transfer_id in self.dropped_outbox else self._outbox.get(transfer_id)

    def item(self, kind: str, key: str) -> dict[str, Any] | None:
        """A hold, escrow or refund tally of this shard (a copy: change it through `put_item`)."""
        staged = self.touched_items.get((kind, key))
        if staged is None:
            staged = self._items.get((kind, key))
        return dict(staged) if staged is not None else None

    def put_item(self, kind: str, key: str, record: dict[str, Any]) -> None:
        self.touched_items[(kind, key)] = record

    def transfer(self, transfer_id: str) -> Transfer | None:
        """A transfer this shard committed since it was acquired, or earlier in this group."""
        return self.new_transfers.get(transfer_id) or self._known_transfers.get(transfer_id)

    def find(self, account_id: str) -> AccountState | None:
        """The staged copy of an account (the same object on every call), or None."""
        staged = self._copies.get(account_id)
        if staged is None:
            current = self._committed.get(account_id)
            if current is None:
                return None
            staged = self._copies[account_id] = dataclasses.replace(current)
        return staged

    def require(self, account_id: str) -> AccountState:
        state = self.find(account_id)
        if state is None:
            raise not_found(Reason.ACCOUNT_NOT_FOUND, f"no account {account_id}", account_id=account_id)
        return state

    def put(self, state: AccountState) -> None:
        self._copies[state.account.account_id] = state
        self.touched[state.account.account_id] = state

    def post(self, state: AccountState, leg_index: int, amount_minor: int) -> Posting:
        """Apply a signed amount to a (checked) account and return its journal entry."""
        time_ms = max(self.now_ms, state.account.update_time_ms)
        new_balance = state.ledger_minor + amount_minor
        ensure(INT64_MIN <= new_balance <= INT64_MAX, "balance outside int64 after checks")
        state.ledger_minor = new_balance
        state.entry_seq += 1
        state.account = dataclasses.replace(state.account, update_time_ms=time_ms)
        if amount_minor < 0:
            day = time_ms // DAY_MS
            spent_minor = (state.outflow_minor if state.outflow_day == day else 0) - amount_minor
            # Only compared with a limit (at most INT64_MAX): an account without one saturates.
            state.outflow_minor = min(spent_minor, INT64_MAX)
            state.outflow_day = day
        self.put(state)
        kind = EntryKind.DEBIT if amount_minor < 0 else EntryKind.CREDIT
        return Posting(
            state.account.account_id, state.entry_seq, leg_index, kind, amount_minor, new_balance, time_ms
        )


def check_debit(state: AccountState, amount_minor: int, currency: str, now_ms: int) -> None:
    """Raise FAILED_PRECONDITION unless `state` may pay `amount_minor` now."""
    account, policy = state.account, state.account.policy
    _check_currency(account, currency)
    if policy.debits_frozen:
        raise failed_precondition(Reason.ACCOUNT_FROZEN, f"account {account.account_id} is frozen for debits")
    if policy.single_payment_limit_minor and amount_minor > policy.single_payment_limit_minor:
        raise failed_precondition(
            Reason.LIMIT_EXCEEDED,
            f"{amount_minor} is over the single payment limit of account {account.account_id}",
            limit="single_payment",
        )
    spent_today = state.outflow_minor if state.outflow_day == now_ms // DAY_MS else 0
    if policy.daily_outflow_limit_minor and spent_today + amount_minor > policy.daily_outflow_limit_minor:
        raise failed_precondition(
            Reason.LIMIT_EXCEEDED,
            f"account {account.account_id} would pass its daily outflow limit",
            limit="daily",
        )
    available_after_minor = state.ledger_minor - amount_minor - state.held_minor
    if not policy.allow_negative and available_after_minor < 0:
        raise failed_precondition(
            Reason.INSUFFICIENT_FUNDS,
            f"account {account.account_id} has {state.balance.available_minor} available, "
            f"needs {amount_minor}",
            account_id=account.account_id,
        )
    if available_after_minor < INT64_MIN:
        raise _overflow(account, "balance")


def check_hold(state: AccountState, amount_minor: int, currency: str, now_ms: int) -> None:
    """Raise FAILED_PRECONDITION unless `state` may reserve `amount_minor` now: as for a debit, and the
    held amount stays within int64."""
    check_debit(state, amount_minor, currency, now_ms)
    if state.held_minor + amount_minor > INT64_MAX:
        raise _overflow(state.account, "held amount")


def check_credit(state: AccountState, amount_minor: int, currency: str) -> None:
    account = state.account
    _check_currency(account, currency)
    if account.policy.credits_frozen:
        raise failed_precondition(
            Reason.ACCOUNT_FROZEN, f"account {account.account_id} is frozen for credits"
        )
    if state.ledger_minor + amount_minor > INT64_MAX:
        raise _overflow(account, "balance")


def _overflow(account: Account, what: str) -> ApiError:
    return failed_precondition(
        Reason.BALANCE_OVERFLOW,
        f"the {what} of account {account.account_id} would pass the int64 range",
        account_id=account.account_id,
    )


def _check_currency(account: Account, currency: str) -> None:
    if account.currency != currency:
        raise failed_precondition(
            Reason.CURRENCY_MISMATCH,
            f"account {account.account_id} holds {account.currency}, the transfer is in {currency}",
            account_id=account.account_id,
        )
