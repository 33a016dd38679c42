"""In-memory state of one payments shard and the rules a change must obey. Pure: no storage, no gRPC.

`Stage` is a copy-on-write overlay used while a group of commands is applied: a command either changes
the stage completely or raises `ApiError` having changed nothing (all checks run before any write).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from jubao.reasons import Reason

from jubao_server.errors import ApiError, failed_precondition, not_found
from jubao_server.invariants import ensure
from jubao_server.payments.model import (
    INT64_MAX,
    INT64_MIN,
    Account,
    Balance,
    EntryKind,
    Escrow,
    Hold,
    Transfer,
)
from jubao_server.payments.records import OutboxEntry, OwedTransfer, Posting, Record, RefundTally
from jubao_server.shards import stage as shards

DAY_MS = 86_400_000


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

    def copy(self) -> AccountState:
        """A copy to change (what `dataclasses.replace` makes, at a fraction of its cost per transfer)."""
        return AccountState(
            self.account,
            self.ledger_minor,
            self.held_minor,
            self.entry_seq,
            self.outflow_day,
            self.outflow_minor,
            self.open_request_id,
        )


@dataclasses.dataclass
class ShardState:
    """What the owner of a payments shard keeps in memory: its accounts, its open holds and escrows, the
    holds and escrows it closed lately and the refund tallies it used lately. The other closed (and
    refused) holds and escrows, and the other tallies, are in storage only: the owner reads the ones a
    command needs (`Found`)."""

    accounts: dict[str, AccountState]
    # Open holds (and any closed one stored before closed ones were kept apart), by id.
    holds: dict[str, Hold]
    # Open (held, disputed) escrows (and any closed one stored before), by id.
    escrows: dict[str, Escrow]
    # Refund tallies by "<transfer id>:<leg index>", newest last.
    tallies: dict[str, RefundTally]
    # Transfers committed by this owner (and those it recovered), newest last: retries of them are
    # answered, not applied again.
    transfers: dict[str, Transfer] = dataclasses.field(default_factory=dict)
    # Requests applied by this owner that are not transfers (account updates, disputes), newest last.
    requests: dict[str, None] = dataclasses.field(default_factory=dict)
    # Holds and escrows this owner closed (or refused), newest last: they never change again.
    closed_holds: dict[str, Hold] = dataclasses.field(default_factory=dict)
    closed_escrows: dict[str, Escrow] = dataclasses.field(default_factory=dict)

    def hold(self, hold_id: str) -> Hold | None:
        """An open hold, or one this owner closed lately."""
        return self.holds.get(hold_id) or self.closed_holds.get(hold_id)

    def escrow(self, escrow_id: str) -> Escrow | None:
        """An open escrow, or one this owner closed lately."""
        return self.escrows.get(escrow_id) or self.closed_escrows.get(escrow_id)


@dataclasses.dataclass(frozen=True)
class Found:
    """What the owner read from storage for one group's commands: items its memory does not hold."""

    holds: dict[str, Hold] = dataclasses.field(default_factory=dict)
    escrows: dict[str, Escrow] = dataclasses.field(default_factory=dict)
    tallies: dict[str, RefundTally] = dataclasses.field(default_factory=dict)


class Stage(shards.Stage[Record, OutboxEntry]):
    """What the commands of one group commit change, over the shard's committed state and what was
    read for them (`found`)."""

    def __init__(self, state: ShardState, now_ms: int, found: Found | None = None) -> None:
        super().__init__(now_ms)
        self._state = state
        self._found = found or Found()
        self._copies: dict[str, AccountState] = {}
        self.touched: dict[str, AccountState] = {}
        self.new_transfers: dict[str, Transfer] = {}
        self.holds: dict[str, Hold] = {}
        self.escrows: dict[str, Escrow] = {}
        self.tallies: dict[str, RefundTally] = {}
        self.new_requests: dict[str, None] = {}
        # While a command bundles (`one_entry`): the transfers it debited that owe other shards.
        self._bundle: list[OwedTransfer] | None = None

    def owe_transfer(self, owed: OwedTransfer) -> str:
        """A debited transfer owes other shards credits: an outbox entry of its own, keyed by its id,
        or a place in the entry of the command bundling them (`one_entry`). Returns the entry's key."""
        if self._bundle is None:
            self.owe(owed.transfer.transfer_id, OutboxEntry(transfers=(owed,), named=True))
            return owed.transfer.transfer_id
        self._bundle.append(owed)
        return self._bundle[0].transfer.transfer_id

    @contextlib.contextmanager
    def one_entry(self) -> Iterator[None]:
        """What the transfers debited inside owe other shards becomes one outbox entry, keyed by the
        first one's id: one message per receiving shard, one settling (the batch is the unit of work)."""
        ensure(self._bundle is None, "outbox entries are not nested")
        self._bundle = []
        yield
        bundle, self._bundle = self._bundle, None
        if bundle:
            self.owe(bundle[0].transfer.transfer_id, OutboxEntry(transfers=tuple(bundle), named=True))

    def requested(self, request_id: str) -> bool:
        """Whether this owner applied the (non-transfer) request `request_id`, earlier or in this group."""
        return bool(request_id) and (request_id in self.new_requests or request_id in self._state.requests)

    def hold(self, hold_id: str) -> Hold | None:
        return self.holds.get(hold_id) or self._state.hold(hold_id) or self._found.holds.get(hold_id)

    def held_before(self, hold_id: str) -> bool:
        """Whether the hold is stored among the open ones (a closed one moves out)."""
        return hold_id in self._state.holds

    def escrow(self, escrow_id: str) -> Escrow | None:
        return (
            self.escrows.get(escrow_id) or self._state.escrow(escrow_id) or self._found.escrows.get(escrow_id)
        )

    def escrowed_before(self, escrow_id: str) -> bool:
        """Whether the escrow is stored among the open ones (a closed one moves out)."""
        return escrow_id in self._state.escrows

    def tally(self, key: str) -> RefundTally | None:
        return self.tallies.get(key) or self._state.tallies.get(key) or self._found.tallies.get(key)

    def put_hold(self, hold: Hold) -> None:
        self.holds[hold.hold_id] = hold

    def put_escrow(self, escrow: Escrow) -> None:
        self.escrows[escrow.escrow_id] = escrow

    def transfer(self, transfer_id: str) -> Transfer | None:
        """A transfer this shard committed since it was acquired, or earlier in this group."""
        return self.new_transfers.get(transfer_id) or self._state.transfers.get(transfer_id)

    def find(self, account_id: str) -> AccountState | None:
        """The staged copy of an account (the same object on every call), or None."""
        staged = self._copies.get(account_id)
        if staged is None:
            current = self._state.accounts.get(account_id)
            if current is None:
                return None
            staged = self._copies[account_id] = current.copy()
        return staged

    def stored(self, account_id: str) -> AccountState | None:
        """An account as committed before this group (None: opened in it)."""
        return self._state.accounts.get(account_id)

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
        if time_ms != state.account.update_time_ms:
            state.account = state.account.updated_at(time_ms)
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
