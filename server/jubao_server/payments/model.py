"""The payments domain: accounts, transfers and journal entries. Amounts are int64 minor units of the
account's ISO 4217 currency; nothing here is ever a float."""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum

ACCOUNT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
# Amounts and balances are int64 (what every backend stores).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
AMOUNT_MAX_MINOR = INT64_MAX


class AccountKind(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"
    ESCROW = "escrow"
    FEES = "fees"
    SETTLEMENT = "settlement"


@dataclasses.dataclass(frozen=True)
class AccountPolicy:
    """What may happen to an account. Zero limits mean "no limit"."""

    allow_negative: bool = False
    debits_frozen: bool = False
    credits_frozen: bool = False
    single_payment_limit_minor: int = 0
    daily_outflow_limit_minor: int = 0


@dataclasses.dataclass(frozen=True)
class Account:
    account_id: str
    currency: str
    kind: AccountKind
    policy: AccountPolicy
    display_name: str = ""
    create_time_ms: int = 0
    update_time_ms: int = 0
    version: int = 0

    def updated_at(self, update_time_ms: int) -> Account:
        """The account as a posting at `update_time_ms` leaves it (`dataclasses.replace`, cheaper per
        posting)."""
        return Account(
            self.account_id,
            self.currency,
            self.kind,
            self.policy,
            self.display_name,
            self.create_time_ms,
            update_time_ms,
            self.version,
        )


@dataclasses.dataclass(frozen=True)
class Balance:
    """Ledger balance (sum of posted entries), held amount, and what may be spent now."""

    ledger_minor: int
    held_minor: int

    @property
    def available_minor(self) -> int:
        return self.ledger_minor - self.held_minor


@dataclasses.dataclass(frozen=True)
class AccountView:
    account: Account
    balance: Balance


@dataclasses.dataclass(frozen=True)
class OpenAccountCommand:
    account_id: str
    currency: str
    kind: AccountKind
    policy: AccountPolicy
    display_name: str


@dataclasses.dataclass(frozen=True)
class AccountChange:
    """Fields to change; None keeps the current value."""

    policy: AccountPolicy | None = None
    display_name: str | None = None


@dataclasses.dataclass(frozen=True)
class Leg:
    """Move `amount_minor` from `debit_account_id` to `credit_account_id`."""

    debit_account_id: str
    credit_account_id: str
    amount_minor: int


class TransferState(StrEnum):
    # Debited at the payer; credits to payees in other shards are being delivered.
    DEBITED = "debited"
    COMPLETED = "completed"
    # Refused (see `failure`); nothing moved.
    REJECTED = "rejected"


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why the ledger refused a request. It is kept, so a retry of the request is refused the same way
    even if it would pass now: a request has one outcome."""

    code: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Transfer:
    transfer_id: str
    request_id: str
    currency: str
    legs: tuple[Leg, ...]
    memo: str
    state: TransferState
    create_time_ms: int
    failure: Failure | None = None

    def with_state(self, state: TransferState, create_time_ms: int) -> Transfer:
        """The transfer as committed: its state and time (`dataclasses.replace`, cheaper per transfer)."""
        return Transfer(
            self.transfer_id,
            self.request_id,
            self.currency,
            self.legs,
            self.memo,
            state,
            create_time_ms,
            self.failure,
        )


class EntryKind(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One immutable journal line of an account: `amount_minor` is signed (debits negative)."""

    account_id: str
    entry_seq: int
    transfer_id: str
    leg_index: int
    kind: EntryKind
    amount_minor: int
    balance_after_minor: int
    time_ms: int


class HoldState(StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"
    # Refused (see `failure`); nothing is reserved.
    REJECTED = "rejected"


@dataclasses.dataclass(frozen=True)
class Hold:
    """Funds reserved on `account_id` for a later capture to `payee_account_id` (two-phase payment).
    Held funds stay in the ledger balance but not in the available balance."""

    hold_id: str
    request_id: str
    account_id: str
    payee_account_id: str
    currency: str
    amount_minor: int
    captured_minor: int
    state: HoldState
    expire_time_ms: int
    create_time_ms: int
    capture_transfer_id: str = ""
    failure: Failure | None = None


class EscrowState(StrEnum):
    # The buyer paid into the escrow account; waiting for confirmation.
    HELD = "held"
    DISPUTED = "disputed"
    RELEASED = "released"
    REFUNDED = "refunded"


@dataclasses.dataclass(frozen=True)
class Escrow:
    """A guaranteed transaction (担保交易): the buyer's payment waits in `escrow_account_id` until the
    buyer confirms (release to the seller, minus `fee_minor` to `fee_account_id`), it is refunded, or
    `release_time_ms` passes without a dispute (automatic release)."""

    escrow_id: str
    request_id: str
    buyer_account_id: str
    seller_account_id: str
    escrow_account_id: str
    fee_account_id: str
    currency: str
    amount_minor: int
    fee_minor: int
    refunded_minor: int
    state: EscrowState
    release_time_ms: int
    create_time_ms: int
    release_transfer_id: str = ""


@dataclasses.dataclass(frozen=True)
class Refund:
    """Money sent back for one leg of a completed transfer; refunds of a leg never add up to more than it."""

    refund_id: str
    request_id: str
    transfer_id: str
    leg_index: int
    amount_minor: int
    refund_transfer_id: str
    create_time_ms: int
