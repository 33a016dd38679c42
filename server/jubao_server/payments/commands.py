"""Commands a shard applies in order. Each `apply` checks everything first and then changes the stage,
so a rejected command leaves no trace; it returns its result and the write-ahead record to commit."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from jubao.errors import Reason

from jubao_server.errors import already_exists
from jubao_server.invariants import ensure
from jubao_server.payments.api import AccountChange, AccountView, OpenAccountCommand
from jubao_server.payments.model import Account, Leg, Transfer, TransferState
from jubao_server.payments.state import AccountState, Posting, Stage, check_credit, check_debit
from jubao_server.storage.contract import Value

Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ShardRow:
    """A row of the shard partition other than an account: an outbox entry or a credit marker."""

    kind: str
    key: str
    record: Record
    ttl_s: int | None = None

    def values(self) -> dict[str, Value]:
        return {"record": encode(self.record)}


@dataclasses.dataclass
class Applied:
    result: object
    record: Record | None = None
    rows: list[ShardRow] = dataclasses.field(default_factory=list)
    deleted: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def encode(record: Record) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def decode(blob: object) -> Record:
    loaded: Record = json.loads(blob) if isinstance(blob, bytes) else {}
    return loaded


@dataclasses.dataclass(frozen=True)
class OpenAccount:
    command: OpenAccountCommand
    request_id: str

    rows_max = 2

    def apply(self, stage: Stage) -> Applied:
        existing = stage.find(self.command.account_id)
        if existing is not None:
            if self.request_id and existing.open_request_id == self.request_id:
                return Applied(AccountView(existing.account, existing.balance))
            raise already_exists(Reason.ACCOUNT_EXISTS, f"account {self.command.account_id} exists")
        command = self.command
        account = Account(
            command.account_id,
            command.currency,
            command.kind,
            command.policy,
            command.display_name,
            stage.now_ms,
            stage.now_ms,
            1,
        )
        state = AccountState(account, open_request_id=self.request_id)
        stage.put(state)
        return Applied(
            AccountView(account, state.balance), {"type": "open_account", "account_id": account.account_id}
        )


@dataclasses.dataclass(frozen=True)
class UpdateAccount:
    account_id: str
    change: AccountChange

    rows_max = 2

    def apply(self, stage: Stage) -> Applied:
        state = stage.require(self.account_id)
        account = state.account
        updated = dataclasses.replace(
            account,
            policy=self.change.policy if self.change.policy is not None else account.policy,
            display_name=self.change.display_name
            if self.change.display_name is not None
            else account.display_name,
        )
        if updated == account:
            return Applied(AccountView(account, state.balance))
        state.account = dataclasses.replace(
            updated, version=account.version + 1, update_time_ms=max(stage.now_ms, account.update_time_ms)
        )
        stage.put(state)
        record = {"type": "update_account", "account_id": self.account_id, "version": state.account.version}
        return Applied(AccountView(state.account, state.balance), record)


@dataclasses.dataclass(frozen=True)
class RemoteCredit:
    """A credit owed to an account of another shard."""

    leg_index: int
    account_id: str
    amount_minor: int
    shard: int


@dataclasses.dataclass(frozen=True)
class Debit:
    """The payer side of a transfer: debit every leg, credit the legs whose payee is in this shard, and
    record in the outbox the credits owed to other shards."""

    transfer: Transfer
    body_sha256: str
    local_credits: frozenset[int]
    remote: tuple[RemoteCredit, ...]

    @property
    def rows_max(self) -> int:
        return 2 * len(self.transfer.legs) + 3

    def apply(self, stage: Stage) -> Applied:
        transfer = self.transfer
        earlier = stage.transfer(transfer.transfer_id)
        if earlier is not None:
            return Applied(earlier)
        payer = stage.require(transfer.legs[0].debit_account_id)
        check_debit(payer, sum(leg.amount_minor for leg in transfer.legs), transfer.currency, stage.now_ms)
        payees = {i: stage.require(transfer.legs[i].credit_account_id) for i in self.local_credits}
        for index, payee in payees.items():
            check_credit(payee, transfer.legs[index].amount_minor, transfer.currency)
        postings = [stage.post(payer, i, -leg.amount_minor) for i, leg in enumerate(transfer.legs)]
        for index in sorted(payees):
            postings.append(stage.post(payees[index], index, transfer.legs[index].amount_minor))
        state = TransferState.DEBITED if self.remote else TransferState.COMPLETED
        completed = dataclasses.replace(transfer, state=state, create_time_ms=stage.now_ms)
        stage.new_transfers[transfer.transfer_id] = completed
        record = {
            "type": "transfer",
            "transfer": transfer_record(completed),
            "body_sha256": self.body_sha256,
            "postings": [p.as_record() for p in postings],
        }
        rows = []
        if self.remote:
            owed = {
                "transfer": transfer_record(completed),
                "credits": [dataclasses.asdict(c) for c in self.remote],
            }
            rows.append(ShardRow("outbox", transfer.transfer_id, owed))
        return Applied(completed, record, rows)


@dataclasses.dataclass(frozen=True)
class Credit:
    """A payee side delivered from another shard; applied once per (transfer, leg)."""

    transfer_id: str
    currency: str
    credit: RemoteCredit
    marker_ttl_s: int

    rows_max = 3

    @property
    def marker_key(self) -> str:
        return f"{self.transfer_id}:{self.credit.leg_index}"

    def apply(self, stage: Stage) -> Applied:
        payee = stage.require(self.credit.account_id)
        ensure(payee.account.currency == self.currency, "credit currency was checked before the debit")
        posting: Posting = stage.post(payee, self.credit.leg_index, self.credit.amount_minor)
        record = {"type": "credit", "transfer_id": self.transfer_id, "postings": [posting.as_record()]}
        marker = ShardRow("credit", self.marker_key, {"entry_seq": posting.entry_seq}, self.marker_ttl_s)
        return Applied(None, record, [marker])


@dataclasses.dataclass(frozen=True)
class Delivered:
    """Every credit of a transfer landed: drop its outbox entry."""

    transfer_id: str

    rows_max = 2

    def apply(self, stage: Stage) -> Applied:
        record = {"type": "delivered", "transfer_id": self.transfer_id}
        return Applied(None, record, deleted=[("outbox", self.transfer_id)])


Command = OpenAccount | UpdateAccount | Debit | Credit | Delivered


def transfer_record(transfer: Transfer) -> Record:
    return {
        "transfer_id": transfer.transfer_id,
        "request_id": transfer.request_id,
        "currency": transfer.currency,
        "legs": [[leg.debit_account_id, leg.credit_account_id, leg.amount_minor] for leg in transfer.legs],
        "memo": transfer.memo,
        "state": transfer.state.value,
        "create_time_ms": transfer.create_time_ms,
    }


def transfer_from_record(record: Record) -> Transfer:
    return Transfer(
        transfer_id=record["transfer_id"],
        request_id=record["request_id"],
        currency=record["currency"],
        legs=tuple(Leg(debit, credit, int(amount)) for debit, credit, amount in record["legs"]),
        memo=record["memo"],
        state=TransferState(record["state"]),
        create_time_ms=int(record["create_time_ms"]),
    )


def transfer_of(record: Record) -> Transfer | None:
    """The transfer a write-ahead record committed, if it is a transfer record."""
    return transfer_from_record(record["transfer"]) if record.get("type") == "transfer" else None
