"""Commands a shard applies in order. Each `apply` checks everything first and then changes the stage,
so a rejected command leaves no trace; it returns its result and the write-ahead record to commit.

Money moves through `post_transfer`: the payer's legs are debited here, legs whose payee lives in this
shard are credited here, and the others become outbox credits delivered to their shards.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from typing import Any

from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.errors import ApiError, ErrorCode, already_exists, failed_precondition, invalid, not_found
from jubao_server.invariants import ensure
from jubao_server.payments.api import AccountChange, AccountView, OpenAccountCommand
from jubao_server.payments.model import (
    Account,
    Escrow,
    EscrowState,
    Failure,
    Hold,
    HoldState,
    Leg,
    Transfer,
    TransferState,
)
from jubao_server.payments.state import (
    DAY_MS,
    AccountState,
    Posting,
    Stage,
    check_credit,
    check_debit,
    check_hold,
)
from jubao_server.storage.contract import Value

Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ShardRow:
    """A row of the shard partition other than an account or an item: an outbox entry or a credit marker."""

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


def shard_of(account_id: str, shard_count: int) -> int:
    return zlib.crc32(account_id.encode()) % shard_count


@dataclasses.dataclass(frozen=True)
class RemoteCredit:
    """A credit owed to an account of another shard; `escrow` opens an escrow there when it lands."""

    leg_index: int
    account_id: str
    amount_minor: int
    shard: int
    escrow: Record | None = None


@dataclasses.dataclass(frozen=True)
class TransferPlan:
    """A transfer and which of its credits land in the payer's shard."""

    transfer: Transfer
    local_credits: frozenset[int]
    remote: tuple[RemoteCredit, ...]

    @classmethod
    def of(cls, transfer: Transfer, shard_count: int, escrow: Record | None = None) -> TransferPlan:
        payer_shard = shard_of(transfer.legs[0].debit_account_id, shard_count)
        local: set[int] = set()
        remote: list[RemoteCredit] = []
        for index, leg in enumerate(transfer.legs):
            shard = shard_of(leg.credit_account_id, shard_count)
            if shard == payer_shard:
                local.add(index)
            else:
                opens = escrow if index == 0 else None
                remote.append(RemoteCredit(index, leg.credit_account_id, leg.amount_minor, shard, opens))
        return cls(transfer, frozenset(local), tuple(remote))

    @property
    def rows_max(self) -> int:
        return 2 * len(self.transfer.legs) + 4


@dataclasses.dataclass(frozen=True)
class Ahead:
    """A time a request sets that must lie ahead when the ledger first applies the request, by the
    ledger's clock: a hold's expire_time, an escrow's release_time. It is checked by the shard after it
    has looked for an earlier attempt of the request, so a retry of a request the ledger applied gets
    its answer whatever the time is now."""

    field: str
    at_ms: int
    ahead_max_ms: int

    def check(self, now_ms: int) -> None:
        if not now_ms < self.at_ms <= now_ms + self.ahead_max_ms:
            days = self.ahead_max_ms // DAY_MS
            raise invalid(self.field, f"required: in the future and at most {days} days ahead")


def new_transfer(
    transfer_id: str, request_id: str, currency: str, legs: tuple[Leg, ...], memo: str
) -> Transfer:
    return Transfer(transfer_id, request_id, currency, legs, memo, TransferState.DEBITED, 0)


def post_transfer(
    stage: Stage, plan: TransferPlan, released_minor: int = 0
) -> tuple[Transfer, Record, list[ShardRow]]:
    """Debit the payer (after releasing `released_minor` it held), credit local payees, owe the rest."""
    transfer = plan.transfer
    payer = stage.require(transfer.legs[0].debit_account_id)
    trial = dataclasses.replace(payer, held_minor=payer.held_minor - released_minor)
    check_debit(trial, sum(leg.amount_minor for leg in transfer.legs), transfer.currency, stage.now_ms)
    payees = {i: stage.require(transfer.legs[i].credit_account_id) for i in plan.local_credits}
    for index, payee in payees.items():
        check_credit(payee, transfer.legs[index].amount_minor, transfer.currency)
    payer.held_minor -= released_minor
    postings = [stage.post(payer, i, -leg.amount_minor) for i, leg in enumerate(transfer.legs)]
    postings += [stage.post(payees[i], i, transfer.legs[i].amount_minor) for i in sorted(payees)]
    state = TransferState.DEBITED if plan.remote else TransferState.COMPLETED
    completed = dataclasses.replace(transfer, state=state, create_time_ms=stage.now_ms)
    stage.new_transfers[transfer.transfer_id] = completed
    record = {"transfer": transfer_record(completed), "postings": [p.as_record() for p in postings]}
    rows = []
    if plan.remote:
        owed = {
            "transfer": transfer_record(completed),
            "credits": [dataclasses.asdict(c) for c in plan.remote],
        }
        rows.append(ShardRow("outbox", transfer.transfer_id, owed))
    return completed, record, rows


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
    """Change an account's policy or name. The request id is kept (`request_marker`) with the change, so a
    retry of the request changes nothing again, even after later changes by other requests: `applied`
    when the ledger found the marker an earlier owner stored, else the owner remembers it."""

    account_id: str
    change: AccountChange
    request_id: str
    marker_ttl_s: int
    applied: bool = False

    rows_max = 3

    def apply(self, stage: Stage) -> Applied:
        state = stage.require(self.account_id)
        account = state.account
        if self.applied or stage.requested(self.request_id):
            return Applied(AccountView(account, state.balance))
        marker = request_marker(stage, self.request_id, self.marker_ttl_s)
        updated = dataclasses.replace(
            account,
            policy=self.change.policy if self.change.policy is not None else account.policy,
            display_name=self.change.display_name
            if self.change.display_name is not None
            else account.display_name,
        )
        if updated == account:
            return Applied(AccountView(account, state.balance), rows=marker)
        state.account = dataclasses.replace(
            updated, version=account.version + 1, update_time_ms=max(stage.now_ms, account.update_time_ms)
        )
        stage.put(state)
        record = {"type": "update_account", "account_id": self.account_id, "version": state.account.version}
        return Applied(AccountView(state.account, state.balance), record, marker)


def request_marker(stage: Stage, request_id: str, ttl_s: int) -> list[ShardRow]:
    """The row that keeps a request id applied by a command that is not a transfer (`"request"` rows of
    the shard, never loaded: the ledger reads the one a retry needs), and its note in the stage."""
    if not request_id:
        return []
    stage.new_requests.add(request_id)
    return [ShardRow("request", request_id, {}, ttl_s)]


@dataclasses.dataclass(frozen=True)
class Debit:
    """A transfer from the payer's side; with `escrow`, its first leg opens that escrow where it lands."""

    plan: TransferPlan
    body_sha256: str
    escrow: Record | None = None
    ahead: Ahead | None = None

    @property
    def rows_max(self) -> int:
        return self.plan.rows_max

    def apply(self, stage: Stage) -> Applied:
        earlier = stage.transfer(self.plan.transfer.transfer_id)
        if earlier is not None:
            return replay(earlier)
        if self.ahead is not None:
            self.ahead.check(stage.now_ms)
        completed, record, rows = post_transfer(stage, self.plan)
        if self.escrow is not None and 0 in self.plan.local_credits:
            stage.put_item("escrow", self.escrow["escrow_id"], self.escrow)
            record["escrow"] = self.escrow
        return Applied(completed, {"type": "transfer", "body_sha256": self.body_sha256, **record}, rows)


@dataclasses.dataclass(frozen=True)
class Credit:
    """A payee side delivered from another shard; applied once per (transfer, leg). `from_inbox`: another
    process left it in this shard's inbox (under its marker key), and the row goes once it is applied."""

    transfer_id: str
    currency: str
    credit: RemoteCredit
    marker_ttl_s: int
    from_inbox: bool = False
    # The marker is stored already (an earlier owner applied it): only the inbox row goes.
    landed: bool = False

    rows_max = 5

    @property
    def marker_key(self) -> str:
        return f"{self.transfer_id}:{self.credit.leg_index}"

    def inbox_record(self) -> Record:
        """The inbox row another process writes for this credit."""
        return {
            "transfer_id": self.transfer_id,
            "currency": self.currency,
            "credit": dataclasses.asdict(self.credit),
        }

    @classmethod
    def from_inbox_record(cls, record: Record, marker_ttl_s: int) -> Credit:
        credit = RemoteCredit(**record["credit"])
        return cls(record["transfer_id"], record["currency"], credit, marker_ttl_s, from_inbox=True)

    def apply(self, stage: Stage) -> Applied:
        inbox = [("inbox", self.marker_key)] if self.from_inbox else []
        if self.landed or stage.credited(self.marker_key):
            return Applied(None, deleted=inbox)
        payee = stage.require(self.credit.account_id)
        ensure(payee.account.currency == self.currency, "credit currency was checked before the debit")
        posting: Posting = stage.post(payee, self.credit.leg_index, self.credit.amount_minor)
        stage.new_credits.add(self.marker_key)
        record: Record = {
            "type": "credit",
            "transfer_id": self.transfer_id,
            "postings": [posting.as_record()],
        }
        if self.credit.escrow is not None:
            stage.put_item("escrow", self.credit.escrow["escrow_id"], self.credit.escrow)
            record["escrow"] = self.credit.escrow
        marker = ShardRow("credit", self.marker_key, {"entry_seq": posting.entry_seq}, self.marker_ttl_s)
        return Applied(None, record, [marker], deleted=inbox)


@dataclasses.dataclass(frozen=True)
class Delivered:
    """Every credit of a transfer landed: drop its outbox entry."""

    transfer_id: str

    rows_max = 2

    def apply(self, stage: Stage) -> Applied:
        owed = stage.owed(self.transfer_id)
        if owed is None:
            return Applied(None)
        stage.dropped_outbox.add(self.transfer_id)
        record = {"type": "delivered", "transfer_id": self.transfer_id, "legs": owed["transfer"]["legs"]}
        return Applied(None, record, deleted=[("outbox", self.transfer_id)])


@dataclasses.dataclass(frozen=True)
class CreateHold:
    """Reserve funds on the payer. `refused`: a check made outside this shard (the payee's) refused the
    hold; it is kept as a REJECTED hold so that every retry of the request gets that answer."""

    hold: Hold
    refused: ApiError | None = None

    rows_max = 3

    def apply(self, stage: Stage) -> Applied:
        existing = stage.item("hold", self.hold.hold_id)
        if existing is not None:
            earlier = hold_from_record(existing)
            return Applied(error_of(earlier.failure) if earlier.failure else earlier)
        Ahead("expire_time", self.hold.expire_time_ms, limits.hold_expiry_max_ms).check(stage.now_ms)
        if self.refused is not None:
            raise self.refused
        hold = dataclasses.replace(self.hold, create_time_ms=stage.now_ms)
        payer = stage.require(hold.account_id)
        check_hold(payer, hold.amount_minor, hold.currency, stage.now_ms)
        payer.held_minor += hold.amount_minor
        stage.put(payer)
        stage.put_item("hold", hold.hold_id, hold_record(hold))
        return Applied(hold, {"type": "hold_created", "hold": hold_record(hold)})


@dataclasses.dataclass(frozen=True)
class CaptureHold:
    """Capture part or all of a hold as a transfer to its payee; what is not captured is released."""

    hold_id: str
    plan: TransferPlan

    @property
    def rows_max(self) -> int:
        return self.plan.rows_max + 1

    def apply(self, stage: Stage) -> Applied:
        hold = _hold(stage, self.hold_id)
        earlier = stage.transfer(self.plan.transfer.transfer_id)
        if earlier is not None or hold.capture_transfer_id == self.plan.transfer.transfer_id:
            return replay(earlier) if earlier is not None and earlier.failure else Applied(hold)
        _still_held(hold)
        amount_minor = sum(leg.amount_minor for leg in self.plan.transfer.legs)
        if amount_minor > hold.amount_minor:
            raise failed_precondition(
                Reason.AMOUNT_EXCEEDS_HOLD,
                f"hold {hold.hold_id} reserves {hold.amount_minor}, not {amount_minor}",
            )
        _, record, rows = post_transfer(stage, self.plan, released_minor=hold.amount_minor)
        captured = dataclasses.replace(
            hold,
            state=HoldState.CAPTURED,
            captured_minor=amount_minor,
            capture_transfer_id=self.plan.transfer.transfer_id,
        )
        stage.put_item("hold", hold.hold_id, hold_record(captured))
        return Applied(captured, {"type": "hold_captured", "hold": hold_record(captured), **record}, rows)


@dataclasses.dataclass(frozen=True)
class CloseHold:
    """Void a hold, or expire it (`expired`); the reserved amount becomes available again."""

    hold_id: str
    expired: bool = False

    rows_max = 3

    def apply(self, stage: Stage) -> Applied:
        hold = _hold(stage, self.hold_id)
        final = HoldState.EXPIRED if self.expired else HoldState.VOIDED
        if hold.state is final:
            return Applied(hold)
        _still_held(hold)
        payer = stage.require(hold.account_id)
        payer.held_minor -= hold.amount_minor
        stage.put(payer)
        closed = dataclasses.replace(hold, state=final)
        stage.put_item("hold", hold.hold_id, hold_record(closed))
        return Applied(closed, {"type": f"hold_{final.value}", "hold": hold_record(closed)})


def _hold(stage: Stage, hold_id: str) -> Hold:
    record = stage.item("hold", hold_id)
    if record is None:
        raise not_found(Reason.HOLD_NOT_FOUND, f"no hold {hold_id}", hold_id=hold_id)
    return hold_from_record(record)


def _still_held(hold: Hold) -> None:
    if hold.state is not HoldState.HELD:
        raise failed_precondition(Reason.INVALID_STATE, f"hold {hold.hold_id} is {hold.state.value}")


@dataclasses.dataclass(frozen=True)
class SettleEscrow:
    """Pay an escrow out: what is left of it to the seller (minus the fee) on release, `amount_minor`
    (0: all that is left) back to the buyer on refund. The legs are worked out here, from the escrow as
    it is when the command applies, so a refund and a release racing each other never overpay. A refusal
    is kept as a REJECTED transfer (`refused`: a check outside this shard, the buyer's, refused it)."""

    escrow_id: str
    transfer_id: str
    request_id: str
    amount_minor: int
    release: bool
    shard_count: int
    refused: ApiError | None = None

    rows_max = 2 * 2 + 5

    def apply(self, stage: Stage) -> Applied:
        escrow = _escrow(stage, self.escrow_id)
        earlier = stage.transfer(self.transfer_id)
        if earlier is not None and earlier.failure is not None:
            return replay(earlier)
        if escrow.release_transfer_id == self.transfer_id or earlier is not None:
            return Applied(escrow)
        if self.refused is not None:
            raise self.refused
        allowed = (EscrowState.HELD,) if self.release else (EscrowState.HELD, EscrowState.DISPUTED)
        if escrow.state not in allowed:
            raise failed_precondition(
                Reason.INVALID_STATE, f"escrow {escrow.escrow_id} is {escrow.state.value}"
            )
        remaining_minor = escrow.amount_minor - escrow.refunded_minor
        amount_minor = self._payout_minor(escrow)
        if amount_minor > remaining_minor:
            raise failed_precondition(
                Reason.REFUND_EXCEEDS_ORIGINAL,
                f"escrow {escrow.escrow_id} holds {remaining_minor}, not {amount_minor}",
            )
        plan = TransferPlan.of(self._transfer(escrow, amount_minor), self.shard_count)
        _, record, rows = post_transfer(stage, plan)
        settled = self._settled(escrow, amount_minor)
        stage.put_item("escrow", escrow.escrow_id, escrow_record(settled))
        kind = "escrow_released" if self.release else "escrow_refunded"
        return Applied(settled, {"type": kind, "escrow": escrow_record(settled), **record}, rows)

    def refused_transfer(self, stage: Stage) -> Transfer | None:
        """The payout this command asked for, to keep as refused (None when the escrow is unknown)."""
        record = stage.item("escrow", self.escrow_id)
        if record is None:
            return None
        escrow = escrow_from_record(record)
        return self._transfer(escrow, self._payout_minor(escrow))

    def _payout_minor(self, escrow: Escrow) -> int:
        """All that is left on release; the asked amount (0: all that is left) on refund."""
        remaining_minor = escrow.amount_minor - escrow.refunded_minor
        return remaining_minor if self.release else self.amount_minor or remaining_minor

    def _transfer(self, escrow: Escrow, amount_minor: int) -> Transfer:
        if self.release:
            fee_minor = min(escrow.fee_minor, amount_minor)
            legs = [
                Leg(escrow.escrow_account_id, escrow.seller_account_id, amount_minor - fee_minor),
                Leg(escrow.escrow_account_id, escrow.fee_account_id, fee_minor),
            ]
            memo = f"release of escrow {escrow.escrow_id}"
        else:
            legs = [Leg(escrow.escrow_account_id, escrow.buyer_account_id, amount_minor)]
            memo = f"refund of escrow {escrow.escrow_id}"
        paid = tuple(leg for leg in legs if leg.amount_minor > 0)
        return new_transfer(self.transfer_id, self.request_id, escrow.currency, paid, memo)

    def _settled(self, escrow: Escrow, amount_minor: int) -> Escrow:
        if self.release:
            return dataclasses.replace(
                escrow, state=EscrowState.RELEASED, release_transfer_id=self.transfer_id
            )
        refunded_minor = escrow.refunded_minor + amount_minor
        state = EscrowState.REFUNDED if refunded_minor == escrow.amount_minor else escrow.state
        return dataclasses.replace(escrow, refunded_minor=refunded_minor, state=state)


@dataclasses.dataclass(frozen=True)
class DisputeEscrow:
    """Block an escrow's release. The request id is kept with the dispute (as by `UpdateAccount`), so a
    retry of the request answers the escrow even once it was refunded since."""

    escrow_id: str
    request_id: str
    marker_ttl_s: int
    applied: bool = False

    rows_max = 3

    def apply(self, stage: Stage) -> Applied:
        escrow = _escrow(stage, self.escrow_id)
        if escrow.state is EscrowState.DISPUTED or self.applied or stage.requested(self.request_id):
            return Applied(escrow)
        if escrow.state is not EscrowState.HELD:
            raise failed_precondition(
                Reason.INVALID_STATE, f"escrow {escrow.escrow_id} is {escrow.state.value}"
            )
        disputed = dataclasses.replace(escrow, state=EscrowState.DISPUTED)
        stage.put_item("escrow", escrow.escrow_id, escrow_record(disputed))
        record = {"type": "escrow_disputed", "escrow": escrow_record(disputed)}
        return Applied(disputed, record, request_marker(stage, self.request_id, self.marker_ttl_s))


def _escrow(stage: Stage, escrow_id: str) -> Escrow:
    record = stage.item("escrow", escrow_id)
    if record is None:
        raise not_found(Reason.ESCROW_NOT_FOUND, f"no escrow {escrow_id}", escrow_id=escrow_id)
    return escrow_from_record(record)


@dataclasses.dataclass(frozen=True)
class RefundLeg:
    """Send back part of one leg of a completed transfer: the payee pays the payer, and the refunds of
    a leg never add up to more than the leg."""

    transfer_id: str
    leg_index: int
    leg_amount_minor: int
    plan: TransferPlan
    body_sha256: str
    # The end of the original transfer's refund window; its tally expires then.
    window_end_ms: int

    @property
    def rows_max(self) -> int:
        return self.plan.rows_max + 1

    def apply(self, stage: Stage) -> Applied:
        earlier = stage.transfer(self.plan.transfer.transfer_id)
        if earlier is not None:
            return replay(earlier)
        if stage.now_ms > self.window_end_ms:
            raise failed_precondition(
                Reason.REFUND_WINDOW_CLOSED, f"the refund window of {self.transfer_id} has closed"
            )
        key = f"{self.transfer_id}:{self.leg_index}"
        tally = stage.item("refunded", key) or {"refunded_minor": 0}
        amount_minor = self.plan.transfer.legs[0].amount_minor
        if tally["refunded_minor"] + amount_minor > self.leg_amount_minor:
            raise failed_precondition(
                Reason.REFUND_EXCEEDS_ORIGINAL,
                f"leg {self.leg_index} of {self.transfer_id} was {self.leg_amount_minor}, "
                f"{tally['refunded_minor']} is refunded already",
            )
        completed, record, rows = post_transfer(stage, self.plan)
        refunded_minor = tally["refunded_minor"] + amount_minor
        stage.put_item(
            "refunded", key, {"refunded_minor": refunded_minor, "expire_time_ms": self.window_end_ms}
        )
        refund = {"transfer_id": self.transfer_id, "leg_index": self.leg_index, "amount_minor": amount_minor}
        return Applied(
            completed, {"type": "refund", "body_sha256": self.body_sha256, "refund": refund, **record}, rows
        )


@dataclasses.dataclass(frozen=True)
class Reject:
    """Keep the refusal of a transfer that a check outside the payer's shard refused (a payee of another
    shard), unless a retry racing this request committed the transfer first."""

    transfer: Transfer
    error: ApiError
    ahead: Ahead | None = None

    rows_max = 2

    def apply(self, stage: Stage) -> Applied:
        earlier = stage.transfer(self.transfer.transfer_id)
        if earlier is not None:
            return replay(earlier)
        if self.ahead is not None:
            self.ahead.check(stage.now_ms)
        return _refuse_transfer(stage, self.transfer, self.error)


def replay(earlier: Transfer) -> Applied:
    """The answer to a retry of a transfer this shard decided: the transfer, or its refusal again."""
    return Applied(error_of(earlier.failure) if earlier.failure else earlier)


def refusal(stage: Stage, command: Command, error: ApiError) -> Applied | ApiError:
    """What a rejected command leaves: a refused transfer or hold, kept for the retries of its request
    (which could pass later, when the payer has the money), or nothing. A request that is invalid
    (INVALID_ARGUMENT: a time no longer ahead) leaves nothing."""
    if error.code is ErrorCode.INVALID_ARGUMENT:
        return error
    if isinstance(command, (Debit, CaptureHold, RefundLeg)):
        return _refuse_transfer(stage, command.plan.transfer, error)
    if isinstance(command, SettleEscrow):
        payout = command.refused_transfer(stage)
        return _refuse_transfer(stage, payout, error) if payout is not None else error
    if isinstance(command, CreateHold):
        refused = dataclasses.replace(
            command.hold, state=HoldState.REJECTED, create_time_ms=stage.now_ms, failure=failure_of(error)
        )
        stage.put_item("hold", refused.hold_id, hold_record(refused))
        return Applied(error, {"type": "hold_rejected", "hold": hold_record(refused)})
    return error


def _refuse_transfer(stage: Stage, transfer: Transfer, error: ApiError) -> Applied:
    refused = dataclasses.replace(
        transfer, state=TransferState.REJECTED, create_time_ms=stage.now_ms, failure=failure_of(error)
    )
    stage.new_transfers[transfer.transfer_id] = refused
    return Applied(error, {"type": "rejected", "transfer": transfer_record(refused)})


def failure_of(error: ApiError) -> Failure:
    return Failure(error.code.name, str(error.reason), error.message)


def error_of(failure: Failure) -> ApiError:
    return ApiError(ErrorCode[failure.code], Reason(failure.reason), failure.message)


Command = (
    Reject
    | OpenAccount
    | UpdateAccount
    | Debit
    | Credit
    | Delivered
    | CreateHold
    | CaptureHold
    | CloseHold
    | SettleEscrow
    | DisputeEscrow
    | RefundLeg
)


def transfer_record(transfer: Transfer) -> Record:
    return {
        "transfer_id": transfer.transfer_id,
        "request_id": transfer.request_id,
        "currency": transfer.currency,
        "legs": [[leg.debit_account_id, leg.credit_account_id, leg.amount_minor] for leg in transfer.legs],
        "memo": transfer.memo,
        "state": transfer.state.value,
        "create_time_ms": transfer.create_time_ms,
        "failure": dataclasses.asdict(transfer.failure) if transfer.failure else None,
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
        failure=_failure(record.get("failure")),
    )


def _failure(record: Record | None) -> Failure | None:
    return Failure(**record) if record else None


def transfer_id_of_record(record: Record) -> str:
    """The transfer a write-ahead record is about: the one it committed, or the one it credits or closes."""
    return str(record["transfer"]["transfer_id"] if "transfer" in record else record.get("transfer_id", ""))


def transfer_of(record: Record) -> Transfer | None:
    """The transfer a write-ahead record committed, if it moved money."""
    return transfer_from_record(record["transfer"]) if "transfer" in record else None


def hold_record(hold: Hold) -> Record:
    return dataclasses.asdict(hold) | {"state": hold.state.value}


def hold_from_record(record: Record) -> Hold:
    return Hold(
        **(record | {"state": HoldState(record["state"]), "failure": _failure(record.get("failure"))})
    )


def escrow_record(escrow: Escrow) -> Record:
    return dataclasses.asdict(escrow) | {"state": escrow.state.value}


def escrow_from_record(record: Record) -> Escrow:
    return Escrow(**(record | {"state": EscrowState(record["state"])}))
