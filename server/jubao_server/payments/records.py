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
    # The outbox entry of the payer's shard that owes a committed transfer's credits to other shards (on
    # its TRANSFER record), or that settled (on a DELIVERED record): its transfer row names the entry,
    # and reads of the row see the transfer completed once the entry is gone (`journal.find_transfer`),
    # so settling writes no row. Empty on the records of earlier versions, whose rows name no entry.
    owed_entry: str = ""

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


class OwedTransfer(msgspec.Struct, frozen=True):
    """A debited transfer and the credits it owes other shards."""

    transfer: TransferRecord
    credits: tuple[RemoteCredit, ...]


class OutboxEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """What one command owes other shards (an outbox row of its payer's shard, keyed by the id of its
    first transfer): the transfers it debited with their credits for other shards (`transfers`; one
    for a unary transfer, a whole `Each` for the batch path). Entries written by earlier versions held
    one transfer (`transfer`, `credits`), delivered one credit per message (`messages`)."""

    transfers: tuple[OwedTransfer, ...] = ()
    transfer: TransferRecord | None = None
    credits: tuple[RemoteCredit, ...] = ()
    # Its transfers' rows name it (`Record.owed_entry`); False in entries stored by earlier versions,
    # whose transfers' rows are written completed when it settles.
    named: bool = False

    def owed(self) -> tuple[OwedTransfer, ...]:
        """The entry's transfers, whichever version stored it."""
        if self.transfer is None:
            return self.transfers
        return (OwedTransfer(self.transfer, self.credits),)


class Credit(msgspec.Struct, frozen=True):
    """One owed credit: a leg of a transfer for an account of another shard."""

    transfer_id: str
    currency: str
    credit: RemoteCredit


class CreditMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """The credits an outbox entry (`entry`, its key) owes one shard (`to_shard`), applied there in one
    command under one apply-once marker `<entry>@<shard>` (and left in its inbox when another process
    holds it). A message written by an earlier version (an inbox row, or the messages of an outbox
    entry it stored) holds one credit (`transfer_id`, `currency`, `credit`) under the marker
    `<transfer id>:<leg index>`, so what such a delivery landed before is found."""

    entry: str = ""
    to_shard: int = 0
    credits: tuple[Credit, ...] = ()
    transfer_id: str = ""
    currency: str = ""
    credit: RemoteCredit | None = None

    def parts(self) -> tuple[Credit, ...]:
        """The credits it carries, whichever version wrote it."""
        if self.credit is None:
            return self.credits
        return (Credit(self.transfer_id, self.currency, self.credit),)

    @property
    def shard(self) -> int:
        return self.to_shard if self.credit is None else self.credit.shard

    @property
    def marker_key(self) -> str:
        if self.credit is None:
            return f"{self.entry}@{self.to_shard}"
        return f"{self.transfer_id}:{self.credit.leg_index}"

    def rows_max(self) -> int:
        """Per credit its account, its write-ahead record and an escrow it opens; the marker."""
        return 3 * len(self.parts()) + 1


def messages_of(key: str, entry: OutboxEntry) -> list[CreditMessage]:
    """What an outbox entry owes, as messages: one per receiving shard with all its credits; an entry
    stored by an earlier version, one per credit (its deliveries' markers were per credit)."""
    if entry.transfer is not None:
        currency = entry.transfer.currency
        return [CreditMessage(transfer_id=key, currency=currency, credit=c) for c in entry.credits]
    by_shard: dict[int, list[Credit]] = {}
    for owed in entry.transfers:
        transfer = owed.transfer
        for credit in owed.credits:
            by_shard.setdefault(credit.shard, []).append(
                Credit(transfer.transfer_id, transfer.currency, credit)
            )
    return [CreditMessage(key, shard, tuple(credits)) for shard, credits in by_shard.items()]


class RefundTally(msgspec.Struct, frozen=True):
    """What the refunds of one transfer leg add up to, until its refund window ends."""

    refunded_minor: int
    expire_time_ms: int


ENCODER = msgspec.json.Encoder()
HOLDS = msgspec.json.Decoder(Hold)
ESCROWS = msgspec.json.Decoder(Escrow)
TALLIES = msgspec.json.Decoder(RefundTally)
OUTBOX = msgspec.json.Decoder(OutboxEntry)
