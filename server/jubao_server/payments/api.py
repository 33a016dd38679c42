"""The ledger as the payments service sees it. `jubao_server.payments.ledger.Ledger` implements it.

Every method takes the tenant from the caller (never from the request). Mutations take the request id
(AIP-155) and the SHA-256 of the request body without its request id: the same id and body return the
first result, the same id with another body raises ALREADY_EXISTS (REQUEST_ID_REUSED). Rejections raise
`jubao_server.errors.ApiError` with the reasons of `jubao.errors.Reason` and change nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from jubao_server.errors import ApiError, HeldElsewhere
from jubao_server.payments.model import (
    AccountChange,
    AccountView,
    Entry,
    Escrow,
    Hold,
    Leg,
    OpenAccountCommand,
    Refund,
    Transfer,
)

if TYPE_CHECKING:
    from jubao_server.payments.events import Event, EventFilter
    from jubao_server.payments.reconcile import ReconcileReport


@dataclasses.dataclass(frozen=True)
class TransferCommand:
    """All legs share one debit account and one currency; they commit together or not at all."""

    currency: str
    legs: tuple[Leg, ...]
    memo: str


@dataclasses.dataclass(frozen=True)
class Idempotency:
    request_id: str
    body_sha256: str


@dataclasses.dataclass(frozen=True)
class EntryQuery:
    account_id: str
    start_time_ms: int | None
    end_time_ms: int | None
    after_entry_seq: int | None
    limit: int


@dataclasses.dataclass(frozen=True)
class HoldCommand:
    account_id: str
    payee_account_id: str
    currency: str
    amount_minor: int
    expire_time_ms: int


@dataclasses.dataclass(frozen=True)
class EscrowCommand:
    buyer_account_id: str
    seller_account_id: str
    escrow_account_id: str
    currency: str
    amount_minor: int
    # Optional platform fee taken at release; 0 and "" for none.
    fee_account_id: str
    fee_minor: int
    # Released automatically at this time unless disputed, refunded or released before.
    release_time_ms: int


@dataclasses.dataclass(frozen=True)
class BalanceAt:
    account_id: str
    time_ms: int
    ledger_minor: int
    # The last entry at or before `time_ms` (0 when the account had none yet).
    entry_seq: int


class LedgerApi(Protocol):
    async def open_account(
        self, tenant_id: str, command: OpenAccountCommand, key: Idempotency
    ) -> AccountView: ...

    async def get_account(self, tenant_id: str, account_id: str) -> AccountView: ...

    async def list_accounts(
        self, tenant_id: str, after: str | None, limit: int
    ) -> tuple[list[AccountView], str | None]: ...

    async def update_account(
        self, tenant_id: str, account_id: str, change: AccountChange, key: Idempotency
    ) -> AccountView: ...

    async def create_transfer(
        self, tenant_id: str, command: TransferCommand, key: Idempotency
    ) -> Transfer: ...

    async def create_transfers(
        self, tenant_id: str, items: Sequence[tuple[TransferCommand, Idempotency]]
    ) -> list[Transfer | ApiError | HeldElsewhere]:
        """Each item's transfer, refusal, or the server holding its payer's shard, in order."""
        ...

    async def get_transfer(self, tenant_id: str, transfer_id: str) -> Transfer: ...

    async def list_entries(self, tenant_id: str, query: EntryQuery) -> tuple[list[Entry], int | None]: ...

    async def balance_at(self, tenant_id: str, account_id: str, time_ms: int) -> BalanceAt: ...

    async def create_hold(self, tenant_id: str, command: HoldCommand, key: Idempotency) -> Hold: ...

    async def capture_hold(self, tenant_id: str, hold_id: str, amount_minor: int, key: Idempotency) -> Hold:
        """Capture `amount_minor` (0: all) to the hold's payee; the rest is released."""
        ...

    async def void_hold(self, tenant_id: str, hold_id: str, key: Idempotency) -> Hold: ...

    async def get_hold(self, tenant_id: str, hold_id: str) -> Hold: ...

    async def create_escrow(self, tenant_id: str, command: EscrowCommand, key: Idempotency) -> Escrow: ...

    async def release_escrow(self, tenant_id: str, escrow_id: str, key: Idempotency) -> Escrow: ...

    async def refund_escrow(
        self, tenant_id: str, escrow_id: str, amount_minor: int, key: Idempotency
    ) -> Escrow:
        """Refund `amount_minor` (0: all that is left) to the buyer; allowed while held or disputed."""
        ...

    async def dispute_escrow(self, tenant_id: str, escrow_id: str, key: Idempotency) -> Escrow:
        """Block release (manual and automatic) until the escrow is refunded."""
        ...

    async def get_escrow(self, tenant_id: str, escrow_id: str) -> Escrow: ...

    async def create_refund(
        self, tenant_id: str, transfer_id: str, leg_index: int, amount_minor: int, key: Idempotency
    ) -> Refund: ...

    async def reconcile(self, tenant_id: str) -> ReconcileReport:
        """Audit the tenant's ledger (reads only): see `payments.reconcile`."""

    def watch_events(
        self, tenant_id: str, cursor: str, from_oldest: bool, wanted: EventFilter
    ) -> AsyncIterator[tuple[list[Event], str]]:
        """The tenant's money events in batches, each with the cursor to resume after it."""
