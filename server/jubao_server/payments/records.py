"""What the payments state machine stores as records: write-ahead records, outbox entries, the credits
delivered to other shards, refund tallies. Typed (msgspec Structs; holds and escrows are the model's own
dataclasses), encoded as JSON with the field names the ledger has always stored, so records written by
earlier versions decode (`tests/payments/test_stored_data.py`)."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from jubao_server.payments.model import (
    EntryKind,
    Escrow,
    Failure,
    Hold,
    Leg,
    Transfer,
    TransferState,
)

# A leg as stored: [debit account, credit account, amount].
LegRecord = tuple[str, str, int]


class RecordType(StrEnum):
    OPEN_ACCOUNT = "open_account"
    UPDATE_ACCOUNT = "update_account"
    TRANSFER = "transfer"
    CREDIT = "credit"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    REFUND = "refund"
    HOLD_CREATED = "hold_created"
    HOLD_CAPTURED = "hold_captured"
    HOLD_VOIDED = "hold_voided"
    HOLD_EXPIRED = "hold_expired"
    HOLD_REJECTED = "hold_rejected"
    ESCROW_RELEASED = "escrow_released"
    ESCROW_REFUNDED = "escrow_refunded"
    ESCROW_DISPUTED = "escrow_disputed"


class TransferRecord(msgspec.Struct, frozen=True):
    transfer_id: str
    request_id: str
    currency: str
    legs: tuple[LegRecord, ...]
    memo: str
    state: TransferState
    create_time_ms: int
    failure: Failure | None = None

    @classmethod
    def of(cls, transfer: Transfer) -> TransferRecord:
        legs = tuple((leg.debit_account_id, leg.credit_account_id, leg.amount_minor) for leg in transfer.legs)
        return cls(
            transfer.transfer_id,
            transfer.request_id,
            transfer.currency,
            legs,
            transfer.memo,
            transfer.state,
            transfer.create_time_ms,
            transfer.failure,
        )

    def transfer(self) -> Transfer:
        return Transfer(
            self.transfer_id,
            self.request_id,
            self.currency,
            legs_of(self.legs),
            self.memo,
            self.state,
            self.create_time_ms,
            self.failure,
        )


def legs_of(records: tuple[LegRecord, ...]) -> tuple[Leg, ...]:
    return tuple(Leg(debit, credit, amount) for debit, credit, amount in records)


class Posting(msgspec.Struct, frozen=True):
    """One side of a leg applied to an account: the journal entry it produces."""

    account_id: str
    entry_seq: int
    leg_index: int
    kind: EntryKind
    amount_minor: int
    balance_after_minor: int
    time_ms: int


class RefundRecord(msgspec.Struct, frozen=True):
    transfer_id: str
    leg_index: int
    amount_minor: int


class Record(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One write-ahead record: what one command committed (`type` says which fields it has)."""

    type: RecordType
    time_ms: int = 0
    account_id: str = ""
    version: int = 0
    # The transfer a record credits or settles (`transfer` when it committed one).
    transfer_id: str = ""
    body_sha256: str = ""
    transfer: TransferRecord | None = None
    postings: tuple[Posting, ...] = ()
    hold: Hold | None = None
    escrow: Escrow | None = None
    # The legs of a settled (delivered) transfer.
    legs: tuple[LegRecord, ...] = ()
    refund: RefundRecord | None = None

    @property
    def about_transfer_id(self) -> str:
        """The transfer the record is about: the one it committed, or the one it credits or settles."""
        return self.transfer.transfer_id if self.transfer is not None else self.transfer_id


class RemoteCredit(msgspec.Struct, frozen=True):
    """A credit owed to an account of another shard; `escrow` opens an escrow there when it lands."""

    leg_index: int
    account_id: str
    amount_minor: int
    shard: int
    escrow: Escrow | None = None


class OutboxEntry(msgspec.Struct, frozen=True):
    """The credits a transfer owes other shards (the outbox row of its payer's shard)."""

    transfer: TransferRecord
    credits: tuple[RemoteCredit, ...]


class CreditMessage(msgspec.Struct, frozen=True):
    """One owed credit on its way to its shard (and in its inbox when another process holds it)."""

    transfer_id: str
    currency: str
    credit: RemoteCredit

    @property
    def shard(self) -> int:
        return self.credit.shard

    @property
    def marker_key(self) -> str:
        return f"{self.transfer_id}:{self.credit.leg_index}"


class RefundTally(msgspec.Struct, frozen=True):
    """What the refunds of one transfer leg add up to, until its refund window ends."""

    refunded_minor: int
    expire_time_ms: int


ENCODER = msgspec.json.Encoder()
HOLDS = msgspec.json.Decoder(Hold)
ESCROWS = msgspec.json.Decoder(Escrow)
TALLIES = msgspec.json.Decoder(RefundTally)
OUTBOX = msgspec.json.Decoder(OutboxEntry)
RECORDS = msgspec.json.Decoder(Record)
