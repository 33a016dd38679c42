"""Commands a payments shard applies in order. Each `apply` checks everything first and then changes the
stage, so a rejected command leaves no trace; it returns its typed result and records what it committed
(`Stage.record`: one write-ahead record). Pure: no storage.

Money moves through `post_transfer`: the payer's legs are debited here, legs whose payee lives in this
shard are credited here, and the others become an outbox entry whose credits the runtime delivers to
their shards (`machine.PaymentsMachine.receive` applies a shard's credits there once, together). A
command owes one entry: a unary transfer's, or every transfer of a batch's `Each`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.errors import ApiError, ErrorCode, already_exists, failed_precondition, invalid, not_found
from jubao_server.invariants import ensure
from jubao_server.payments.model import (
    Account,
    AccountChange,
    AccountView,
    Escrow,
    EscrowState,
    Failure,
    Hold,
    HoldState,
    Leg,
    OpenAccountCommand,
    Transfer,
    TransferState,
)
from jubao_server.payments.records import (
    Credit,
    OutboxEntry,
    OwedTransfer,
    Posting,
    Record,
    RecordType,
    RefundRecord,
    RefundTally,
    RemoteCredit,
    TransferRecord,
)
from jubao_server.payments.state import (
    DAY_MS,
    AccountState,
    Stage,
    check_credit,
    check_debit,
    check_hold,
)
from jubao_server.shards.stage import Command, ShardRow, shard_of

# What a request marker row holds (its key is the request id).
MARKER_RECORD = b"{}"


@dataclasses.dataclass(frozen=True)
class TransferPlan:
    """A transfer and which of its credits land in the payer's shard."""

    transfer: Transfer
    local_credits: frozenset[int]
    remote: tuple[RemoteCredit, ...]

    @classmethod
    def of(cls, transfer: Transfer, shard_count: int, escrow: Escrow | None = None) -> TransferPlan:
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
) -> tuple[Transfer, tuple[Posting, ...], str]:
    """Debit the payer (after releasing `released_minor` it held), credit local payees, owe the rest:
    the transfer, its postings and the outbox entry owing the rest ("" when nothing is owed), which its
    record names (`Record.owed_entry`)."""
    transfer = plan.transfer
    payer = stage.require(transfer.legs[0].debit_account_id)
    trial = payer
    if released_minor:
        trial = payer.copy()
        trial.held_minor -= released_minor
    check_debit(trial, sum(leg.amount_minor for leg in transfer.legs), transfer.currency, stage.now_ms)
    payees = {i: stage.require(transfer.legs[i].credit_account_id) for i in plan.local_credits}
    for index, payee in payees.items():
        check_credit(payee, transfer.legs[index].amount_minor, transfer.currency)
    payer.held_minor -= released_minor
    postings = [stage.post(payer, i, -leg.amount_minor) for i, leg in enumerate(transfer.legs)]
    postings += [stage.post(payees[i], i, transfer.legs[i].amount_minor) for i in sorted(payees)]
    state = TransferState.DEBITED if plan.remote else TransferState.COMPLETED
    completed = transfer.with_state(state, stage.now_ms)
    stage.new_transfers[transfer.transfer_id] = completed
    owed_entry = ""
    if plan.remote:
        owed_entry = stage.owe_transfer(OwedTransfer(TransferRecord.of(completed), plan.remote))
    return completed, tuple(postings), owed_entry


@dataclasses.dataclass(frozen=True)
class OpenAccount(Command[Stage, AccountView]):
    command: OpenAccountCommand
    request_id: str

    def rows_max(self) -> int:
        return 2

    def apply(self, stage: Stage) -> AccountView:
        existing = stage.find(self.command.account_id)
        if existing is not None:
            if self.request_id and existing.open_request_id == self.request_id:
                return AccountView(existing.account, existing.balance)
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
        stage.record(
            Record(type=RecordType.OPEN_ACCOUNT, time_ms=stage.now_ms, account_id=account.account_id)
        )
        return AccountView(account, state.balance)


@dataclasses.dataclass(frozen=True)
class UpdateAccount(Command[Stage, AccountView]):
    """Change an account's policy or name. The request id is kept (`request_marker`) with the change, so a
    retry of the request changes nothing again, even after later changes by other requests: `applied`
    when the ledger found the marker an earlier owner stored, else the owner remembers it."""

    account_id: str
    change: AccountChange
    request_id: str
    marker_ttl_s: int
    applied: bool = False

    def rows_max(self) -> int:
        return 3

    def apply(self, stage: Stage) -> AccountView:
        state = stage.require(self.account_id)
        account = state.account
        if self.applied or stage.requested(self.request_id):
            return AccountView(account, state.balance)
        request_marker(stage, self.request_id, self.marker_ttl_s)
        updated = dataclasses.replace(
            account,
            policy=self.change.policy if self.change.policy is not None else account.policy,
            display_name=self.change.display_name
            if self.change.display_name is not None
            else account.display_name,
        )
        if updated == account:
            return AccountView(account, state.balance)
        state.account = dataclasses.replace(
            updated, version=account.version + 1, update_time_ms=max(stage.now_ms, account.update_time_ms)
        )
        stage.put(state)
        stage.record(
            Record(
                type=RecordType.UPDATE_ACCOUNT,
                time_ms=stage.now_ms,
                account_id=self.account_id,
                version=state.account.version,
            )
        )
        return AccountView(state.account, state.balance)


def request_marker(stage: Stage, request_id: str, ttl_s: int) -> None:
    """Keep a request id applied by a command that is not a transfer (`"request"` rows of the shard,
    never loaded: the ledger reads the one a retry needs), and note it in the stage."""
    if request_id:
        stage.new_requests[request_id] = None
        stage.rows.append(ShardRow("request", request_id, MARKER_RECORD, ttl_s))


@dataclasses.dataclass(frozen=True)
class Debit(Command[Stage, Transfer]):
    """A transfer from the payer's side; with `escrow`, its first leg opens that escrow where it lands."""

    plan: TransferPlan
    body_sha256: str
    escrow: Escrow | None = None
    ahead: Ahead | None = None

    def rows_max(self) -> int:
        return self.plan.rows_max()

    def apply(self, stage: Stage) -> Transfer:
        earlier = stage.transfer(self.plan.transfer.transfer_id)
        if earlier is not None:
            return replay(earlier)
        if self.ahead is not None:
            self.ahead.check(stage.now_ms)
        completed, postings, owed_entry = post_transfer(stage, self.plan)
        opened = self.escrow if 0 in self.plan.local_credits else None
        if opened is not None:
            stage.put_escrow(opened)
        record = Record(
            type=RecordType.TRANSFER,
            time_ms=stage.now_ms,
            body_sha256=self.body_sha256,
            transfer=TransferRecord.of(completed),
            postings=postings,
            owed_entry=owed_entry,
            escrow=opened,
        )
        stage.record(record)
        return completed


def receive_credits(stage: Stage, credits: Sequence[Credit]) -> None:
    """Payee sides delivered from another shard in one message (the runtime applies it once): every
    payee is looked up before any is credited, so a message applies whole or not at all. One record
    per credit, as when each came alone."""
    payees = [stage.require(part.credit.account_id) for part in credits]
    for payee, part in zip(payees, credits, strict=True):
        ensure(payee.account.currency == part.currency, "credit currency was checked before the debit")
    for payee, part in zip(payees, credits, strict=True):
        credit = part.credit
        posting = stage.post(payee, credit.leg_index, credit.amount_minor)
        if credit.escrow is not None:
            stage.put_escrow(credit.escrow)
        stage.record(
            Record(
                type=RecordType.CREDIT,
                time_ms=stage.now_ms,
                transfer_id=part.transfer_id,
                postings=(posting,),
                escrow=credit.escrow,
            )
        )


def settle_transfers(stage: Stage, key: str, entry: OutboxEntry) -> None:
    """Every credit of the outbox entry `key` landed (the runtime drops it): each of its transfers is
    delivered. Their rows name the entry when it says so (`named`): then its records name it too."""
    owed_entry = key if entry.named else ""
    for owed in entry.owed():
        transfer = owed.transfer
        stage.record(
            Record(
                type=RecordType.DELIVERED,
                time_ms=stage.now_ms,
                transfer_id=transfer.transfer_id,
                legs=transfer.legs,
                owed_entry=owed_entry,
            )
        )


@dataclasses.dataclass(frozen=True)
class CreateHold(Command[Stage, Hold]):
    """Reserve funds on the payer. `refused`: a check made outside this shard (the payee's) refused the
    hold; it is kept as a REJECTED hold so that every retry of the request gets that answer. `retry`:
    the request was claimed before, so its hold may exist, closed (and in storage only) by now."""

    hold: Hold
    refused: ApiError | None = None
    retry: bool = True

    def rows_max(self) -> int:
        return 3

    def apply(self, stage: Stage) -> Hold:
        earlier = stage.hold(self.hold.hold_id)
        if earlier is not None:
            if earlier.failure is not None:
                raise error_of(earlier.failure)
            return earlier
        Ahead("expire_time", self.hold.expire_time_ms, limits.hold_expiry_max_ms).check(stage.now_ms)
        if self.refused is not None:
            raise self.refused
        hold = dataclasses.replace(self.hold, create_time_ms=stage.now_ms)
        payer = stage.require(hold.account_id)
        check_hold(payer, hold.amount_minor, hold.currency, stage.now_ms)
        payer.held_minor += hold.amount_minor
        stage.put(payer)
        stage.put_hold(hold)
        stage.record(Record(type=RecordType.HOLD_CREATED, time_ms=stage.now_ms, hold=hold))
        return hold


@dataclasses.dataclass(frozen=True)
class CaptureHold(Command[Stage, Hold]):
    """Capture part or all of a hold as a transfer to its payee; what is not captured is released."""

    hold_id: str
    plan: TransferPlan

    def rows_max(self) -> int:
        return self.plan.rows_max() + 2

    def apply(self, stage: Stage) -> Hold:
        hold = _hold(stage, self.hold_id)
        earlier = stage.transfer(self.plan.transfer.transfer_id)
        if earlier is not None or hold.capture_transfer_id == self.plan.transfer.transfer_id:
            if earlier is not None and earlier.failure is not None:
                raise error_of(earlier.failure)
            return hold
        _still_held(hold)
        amount_minor = sum(leg.amount_minor for leg in self.plan.transfer.legs)
        if amount_minor > hold.amount_minor:
            raise failed_precondition(
                Reason.AMOUNT_EXCEEDS_HOLD,
                f"hold {hold.hold_id} reserves {hold.amount_minor}, not {amount_minor}",
            )
        completed, postings, owed_entry = post_transfer(stage, self.plan, released_minor=hold.amount_minor)
        captured = dataclasses.replace(
            hold,
            state=HoldState.CAPTURED,
            captured_minor=amount_minor,
            capture_transfer_id=self.plan.transfer.transfer_id,
        )
        stage.put_hold(captured)
        stage.record(
            Record(
                type=RecordType.HOLD_CAPTURED,
                time_ms=stage.now_ms,
                hold=captured,
                transfer=TransferRecord.of(completed),
                owed_entry=owed_entry,
                postings=postings,
            )
        )
        return captured


@dataclasses.dataclass(frozen=True)
class CloseHold(Command[Stage, Hold]):
    """Void a hold, or expire it (`expired`); the reserved amount becomes available again."""

    hold_id: str
    expired: bool = False

    def rows_max(self) -> int:
        return 4

    def apply(self, stage: Stage) -> Hold:
        hold = _hold(stage, self.hold_id)
        final = HoldState.EXPIRED if self.expired else HoldState.VOIDED
        if hold.state is final:
            return hold
        _still_held(hold)
        payer = stage.require(hold.account_id)
        payer.held_minor -= hold.amount_minor
        stage.put(payer)
        closed = dataclasses.replace(hold, state=final)
        stage.put_hold(closed)
        kind = RecordType.HOLD_EXPIRED if self.expired else RecordType.HOLD_VOIDED
        stage.record(Record(type=kind, time_ms=stage.now_ms, hold=closed))
        return closed


def _hold(stage: Stage, hold_id: str) -> Hold:
    hold = stage.hold(hold_id)
    if hold is None:
        raise not_found(Reason.HOLD_NOT_FOUND, f"no hold {hold_id}", hold_id=hold_id)
    return hold


def _still_held(hold: Hold) -> None:
    if hold.state is not HoldState.HELD:
        raise failed_precondition(Reason.INVALID_STATE, f"hold {hold.hold_id} is {hold.state.value}")


@dataclasses.dataclass(frozen=True)
class SettleEscrow(Command[Stage, Escrow]):
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

    def rows_max(self) -> int:
        return 2 * 2 + 6

    def apply(self, stage: Stage) -> Escrow:
        escrow = _escrow(stage, self.escrow_id)
        earlier = stage.transfer(self.transfer_id)
        if earlier is not None and earlier.failure is not None:
            raise error_of(earlier.failure)
        if escrow.release_transfer_id == self.transfer_id or earlier is not None:
            return escrow
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
        completed, postings, owed_entry = post_transfer(stage, plan)
        settled = self._settled(escrow, amount_minor)
        stage.put_escrow(settled)
        kind = RecordType.ESCROW_RELEASED if self.release else RecordType.ESCROW_REFUNDED
        stage.record(
            Record(
                type=kind,
                time_ms=stage.now_ms,
                escrow=settled,
                transfer=TransferRecord.of(completed),
                owed_entry=owed_entry,
                postings=postings,
            )
        )
        return settled

    def refused_transfer(self, stage: Stage) -> Transfer | None:
        """The payout this command asked for, to keep as refused (None when the escrow is unknown)."""
        escrow = stage.escrow(self.escrow_id)
        if escrow is None:
            return None
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
class DisputeEscrow(Command[Stage, Escrow]):
    """Block an escrow's release. The request id is kept with the dispute (as by `UpdateAccount`), so a
    retry of the request answers the escrow even once it was refunded since."""

    escrow_id: str
    request_id: str
    marker_ttl_s: int
    applied: bool = False

    def rows_max(self) -> int:
        return 3

    def apply(self, stage: Stage) -> Escrow:
        escrow = _escrow(stage, self.escrow_id)
        if self.applied or stage.requested(self.request_id):
            return escrow
        if escrow.state is EscrowState.DISPUTED:
            # Disputed by another request: this one is answered so too, and its retries after a refund.
            request_marker(stage, self.request_id, self.marker_ttl_s)
            return escrow
        if escrow.state is not EscrowState.HELD:
            raise failed_precondition(
                Reason.INVALID_STATE, f"escrow {escrow.escrow_id} is {escrow.state.value}"
            )
        disputed = dataclasses.replace(escrow, state=EscrowState.DISPUTED)
        stage.put_escrow(disputed)
        request_marker(stage, self.request_id, self.marker_ttl_s)
        stage.record(Record(type=RecordType.ESCROW_DISPUTED, time_ms=stage.now_ms, escrow=disputed))
        return disputed


def _escrow(stage: Stage, escrow_id: str) -> Escrow:
    escrow = stage.escrow(escrow_id)
    if escrow is None:
        raise not_found(Reason.ESCROW_NOT_FOUND, f"no escrow {escrow_id}", escrow_id=escrow_id)
    return escrow


@dataclasses.dataclass(frozen=True)
class RefundLeg(Command[Stage, Transfer]):
    """Send back part of one leg of a completed transfer: the payee pays the payer, and the refunds of
    a leg never add up to more than the leg."""

    transfer_id: str
    leg_index: int
    leg_amount_minor: int
    plan: TransferPlan
    body_sha256: str
    # The end of the original transfer's refund window; its tally expires then.
    window_end_ms: int

    def rows_max(self) -> int:
        return self.plan.rows_max() + 1

    @property
    def tally_key(self) -> str:
        """The key of the leg's refund tally."""
        return f"{self.transfer_id}:{self.leg_index}"

    def apply(self, stage: Stage) -> Transfer:
        earlier = stage.transfer(self.plan.transfer.transfer_id)
        if earlier is not None:
            return replay(earlier)
        if stage.now_ms > self.window_end_ms:
            raise failed_precondition(
                Reason.REFUND_WINDOW_CLOSED, f"the refund window of {self.transfer_id} has closed"
            )
        key = self.tally_key
        tally = stage.tally(key) or RefundTally(0, self.window_end_ms)
        amount_minor = self.plan.transfer.legs[0].amount_minor
        if tally.refunded_minor + amount_minor > self.leg_amount_minor:
            raise failed_precondition(
                Reason.REFUND_EXCEEDS_ORIGINAL,
                f"leg {self.leg_index} of {self.transfer_id} was {self.leg_amount_minor}, "
                f"{tally.refunded_minor} is refunded already",
            )
        completed, postings, owed_entry = post_transfer(stage, self.plan)
        stage.tallies[key] = RefundTally(tally.refunded_minor + amount_minor, self.window_end_ms)
        stage.record(
            Record(
                type=RecordType.REFUND,
                time_ms=stage.now_ms,
                body_sha256=self.body_sha256,
                refund=RefundRecord(self.transfer_id, self.leg_index, amount_minor),
                transfer=TransferRecord.of(completed),
                owed_entry=owed_entry,
                postings=postings,
            )
        )
        return completed


@dataclasses.dataclass(frozen=True)
class Reject(Command[Stage, Transfer]):
    """Keep the refusal of a transfer that a check outside the payer's shard refused (a payee of another
    shard), unless a retry racing this request committed the transfer first."""

    transfer: Transfer
    error: ApiError
    ahead: Ahead | None = None

    def rows_max(self) -> int:
        return 2

    def apply(self, stage: Stage) -> Transfer:
        earlier = stage.transfer(self.transfer.transfer_id)
        if earlier is not None:
            return replay(earlier)
        if self.ahead is not None:
            self.ahead.check(stage.now_ms)
        raise self.error


@dataclasses.dataclass(frozen=True)
class Each(Command[Stage, tuple[Any, ...]]):
    """A batch's transfers of one payer shard as one command (`Debit`s and `Reject`s): each applies or is
    refused on its own, in order, exactly as if each were queued alone in one group, and its result is
    the transfer or the refusal (kept like any other). What its transfers owe other shards is one
    outbox entry (`Stage.one_entry`): one message per receiving shard, one settling. The group takes
    it whole, so its rows stay under `shard_batch_rows_max` (`Ledger.create_transfers` cuts a shard's
    items to fit)."""

    commands: tuple[Debit | Reject, ...]

    def rows_max(self) -> int:
        return sum(command.rows_max() for command in self.commands)

    def apply(self, stage: Stage) -> tuple[Transfer | ApiError, ...]:
        results: list[Transfer | ApiError] = []
        with stage.one_entry():
            for command in self.commands:
                try:
                    results.append(command.apply(stage))
                except ApiError as error:
                    results.append(refused(stage, command, error))
        return tuple(results)


def replay(earlier: Transfer) -> Transfer:
    """The answer to a retry of a transfer this shard decided: the transfer, or its refusal again."""
    if earlier.failure is not None:
        raise error_of(earlier.failure)
    return earlier


@dataclasses.dataclass(frozen=True)
class Needs:
    """The holds, escrows (by id) and refund tallies (by key) a command reads."""

    holds: tuple[str, ...] = ()
    escrows: tuple[str, ...] = ()
    tallies: tuple[str, ...] = ()


def needs(command: Command[Stage, Any]) -> Needs:
    """What a command reads besides accounts (which the shard keeps in memory): the owner fetches the
    items it keeps in storage only (closed holds and escrows, tallies) before the command applies. A
    hold created by a request claimed for the first time cannot exist yet."""
    if isinstance(command, CaptureHold | CloseHold) or (isinstance(command, CreateHold) and command.retry):
        hold_id = command.hold.hold_id if isinstance(command, CreateHold) else command.hold_id
        return Needs(holds=(hold_id,))
    if isinstance(command, SettleEscrow | DisputeEscrow):
        return Needs(escrows=(command.escrow_id,))
    if isinstance(command, RefundLeg):
        return Needs(tallies=(command.tally_key,))
    return Needs()


def refused(stage: Stage, command: Command[Stage, Any], error: ApiError) -> ApiError:
    """What a rejected command leaves: a refused transfer or hold, kept for the retries of its request
    (which could pass later, when the payer has the money), or nothing; and the error its caller gets.
    A request that is invalid (INVALID_ARGUMENT: a time no longer ahead) leaves nothing, nor does the
    replay of a refusal kept before."""
    if error.code is ErrorCode.INVALID_ARGUMENT:
        return error
    if isinstance(command, (Debit, CaptureHold, RefundLeg)):
        _refuse_transfer(stage, command.plan.transfer, error)
    elif isinstance(command, Reject):
        _refuse_transfer(stage, command.transfer, error)
    elif isinstance(command, SettleEscrow):
        payout = command.refused_transfer(stage)
        if payout is not None:
            _refuse_transfer(stage, payout, error)
    elif isinstance(command, CreateHold) and stage.hold(command.hold.hold_id) is None:
        rejected = dataclasses.replace(
            command.hold, state=HoldState.REJECTED, create_time_ms=stage.now_ms, failure=failure_of(error)
        )
        stage.put_hold(rejected)
        stage.record(Record(type=RecordType.HOLD_REJECTED, time_ms=stage.now_ms, hold=rejected))
    return error


def _refuse_transfer(stage: Stage, transfer: Transfer, error: ApiError) -> None:
    if stage.transfer(transfer.transfer_id) is not None:
        return
    rejected = dataclasses.replace(
        transfer, state=TransferState.REJECTED, create_time_ms=stage.now_ms, failure=failure_of(error)
    )
    stage.new_transfers[transfer.transfer_id] = rejected
    stage.record(Record(type=RecordType.REJECTED, time_ms=stage.now_ms, transfer=TransferRecord.of(rejected)))


def failure_of(error: ApiError) -> Failure:
    return Failure(error.code.name, str(error.reason), error.message)


def error_of(failure: Failure) -> ApiError:
    return ApiError(ErrorCode[failure.code], Reason(failure.reason), failure.message)
