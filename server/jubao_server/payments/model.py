"""The payments domain: accounts, transfers and journal entries. Amounts are int64 minor units of the
account's ISO 4217 currency; nothing here is ever a float."""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum

from jubao_server.storage.contract import INT64_MAX

ACCOUNT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
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


@dataclasses.dataclass(frozen=True)
class Balance:
    """Ledger balance (sum of posted entries), held amount, and what may be spent now."""

    ledger_minor: int
    held_minor: int

    @property
    def available_minor(self) -> int:
        return self.ledger_minor - self.held_minor


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


@dataclasses.dataclass(frozen=True)
class Transfer:
    transfer_id: str
    request_id: str
    currency: str
    legs: tuple[Leg, ...]
    memo: str
    state: TransferState
    create_time_ms: int


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
