"""The ledger: routes commands to shard actors, claims request ids, materializes the journal and
delivers credits across shards. Implements `payments.api.LedgerApi`.

A transfer: (1) the request id is claimed in `payments_requests` (IF NOT EXISTS), so a reuse with another
body is refused even when it names another payer; (2) the payer's shard debits every leg and credits the
legs whose payee lives in the same shard, in one group commit, recording credits owed elsewhere in its
outbox; (3) each owed credit is applied once by the payee's shard (a credit marker makes it idempotent);
(4) the outbox entry is dropped. After a crash, a shard that is acquired again re-materializes its
records and re-delivers its outbox, so every debited transfer completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.errors import (
    ApiError,
    ErrorCode,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    unavailable,
)
from jubao_server.invariants import ensure
from jubao_server.payments.api import (
    AccountChange,
    AccountView,
    BalanceAt,
    EntryQuery,
    EscrowCommand,
    HoldCommand,
    Idempotency,
    OpenAccountCommand,
    TransferCommand,
)
from jubao_server.payments.commands import (
    Ahead,
    CaptureHold,
    CloseHold,
    Command,
    CreateHold,
    Credit,
    Debit,
    Delivered,
    DisputeEscrow,
    OpenAccount,
    Record,
    RefundLeg,
    Reject,
    RemoteCredit,
    SettleEscrow,
    TransferPlan,
    UpdateAccount,
    decode,
    encode,
    error_of,
    escrow_from_record,
    escrow_record,
    hold_from_record,
    new_transfer,
    shard_of,
    transfer_from_record,
    transfer_id_of_record,
    transfer_of,
)
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.events import (
    Event,
    EventFilter,
    decode_cursor,
    encode_cursor,
    last_seqs,
    read_events,
)
from jubao_server.payments.model import (
    AccountKind,
    Entry,
    EntryKind,
    Escrow,
    EscrowState,
    Hold,
    HoldState,
    Leg,
    Refund,
    Transfer,
    TransferState,
)
from jubao_server.payments.reconcile import ReconcileReport, reconcile
from jubao_server.payments.shard import Node, Records, ShardActor, ShardElsewhere, now_ms
from jubao_server.payments.state import AccountState, check_credit
from jubao_server.payments.sweep import derived_id
from jubao_server.payments.tables import ENTRIES, REQUESTS, SHARDS, TENANT_CONFIG, TRANSFERS
from jubao_server.storage.contract import (
    Batch,
    Bound,
    Put,
    Row,
    RowAbsent,
    RowQuery,
    StorageBackend,
    StorageError,
    Value,
    write_all,
)

log = structlog.get_logger("jubao.payments")

delivery_wait_s = 2.0
delivery_attempts_max = 6
delivery_backoff_s = 0.05
lease_waits_max = 3
# Polls for the markers of credits left in another process's inbox, `inbox_poll_ms` apart (its holder
# looks at its inbox about once a second, and every `inbox_poll_ms` while credits keep coming).
inbox_polls_max = 40
# Refusals a request keeps: a retry gets them again. Others (UNAVAILABLE, ...) leave the outcome open.
_FINAL_CODES = (ErrorCode.NOT_FOUND, ErrorCode.FAILED_PRECONDITION)


class Ledger:
    def __init__(self, backend: StorageBackend, settings: PaymentsSettings, node: Node | None = None) -> None:
        self._backend = backend
        self._settings = settings
        self.node = node or Node.local()
        self._stopping = False
        # Transfers whose credits a task of this process is delivering now.
        self._delivering: set[str] = set()
        self._actors: dict[tuple[str, int], ShardActor] = {}
        # Shards another process holds, until its lease as last seen runs out.
        self._elsewhere: dict[tuple[str, int], ShardElsewhere] = {}
        self._starting: dict[tuple[str, int], asyncio.Lock] = {}
        self._shard_counts: dict[str, int] = {}
        self._completions: dict[str, asyncio.Future[bool]] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Set (and dropped) on a tenant's next commit in this process: wakes its event watchers.
        self._commit_signals: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        """Nothing to load up front: shards are acquired on first use."""

    async def stop(self) -> None:
        """Stop every shard and give its lease up, so that another process takes over at once."""
        self._stopping = True
        for actor in list(self._actors.values()):
            await actor.stop(release=True)
        if self._background:
            await asyncio.wait(self._background, timeout=delivery_wait_s)

    # Accounts

    async def open_account(
        self, tenant_id: str, command: OpenAccountCommand, key: Idempotency
    ) -> AccountView:
        await self._claim(tenant_id, "open_account", key, command.account_id)
        actor = await self._actor(tenant_id, command.account_id)
        result = await actor.submit(OpenAccount(command, key.request_id))
        ensure(isinstance(result, AccountView), "open_account returns an account")
        return result  # type: ignore[return-value]

    async def get_account(self, tenant_id: str, account_id: str) -> AccountView:
        state = await self._account_state(tenant_id, account_id)
        return AccountView(state.account, state.balance)

    async def _account_state(self, tenant_id: str, account_id: str) -> AccountState:
        """The committed state of an account: from its shard's owner when that is this process, else as
        stored (every owner stores a commit before it answers)."""
        shard = shard_of(account_id, await self._shard_count(tenant_id))
        try:
            state = (await self._actor_of_shard(tenant_id, shard, wait=False)).accounts.get(account_id)
        except ShardElsewhere:
            row = await self._backend.read_row(SHARDS.partition(tenant_id, shard), ("account", account_id))
            state = AccountState.from_row(row) if row is not None else None
        if state is None:
            raise not_found(Reason.ACCOUNT_NOT_FOUND, f"no account {account_id}", account_id=account_id)
        return state

    async def list_accounts(
        self, tenant_id: str, after: str | None, limit: int
    ) -> tuple[list[AccountView], str | None]:
        """Accounts in (shard, id) order; the position is `"<shard>/<account id>"`."""
        shard, _, after_id = (after or "0/").partition("/")
        if not shard.isdigit():
            raise invalid("page_token", "is not a position of this list")
        views: list[AccountView] = []
        for index in range(int(shard), await self._shard_count(tenant_id)):
            first = after_id if index == int(shard) else ""
            states = await self._accounts_after(tenant_id, index, first, limit - len(views))
            views += [AccountView(state.account, state.balance) for state in states]
            if len(views) == limit:
                last = views[-1].account.account_id
                return views, f"{index}/{last}"
        return views, None

    async def _accounts_after(
        self, tenant_id: str, shard: int, after_id: str, limit: int
    ) -> list[AccountState]:
        """Up to `limit` accounts of a shard after `after_id`, in id order."""
        try:
            accounts = (await self._actor_of_shard(tenant_id, shard, wait=False)).accounts
            return [accounts[a] for a in sorted(a for a in accounts if a > after_id)[:limit]]
        except ShardElsewhere:
            query = RowQuery(
                SHARDS.partition(tenant_id, shard),
                lower=Bound(("account", after_id), inclusive=False),
                upper=Bound(("account",), inclusive=True),
                limit=limit,
            )
            return [AccountState.from_row(row) for row in (await self._backend.read_page(query)).rows]

    async def update_account(
        self, tenant_id: str, account_id: str, change: AccountChange, key: Idempotency
    ) -> AccountView:
        """A retry of a request the ledger applied changes nothing again (whatever changed since) and
        returns the account as it is now; a retry of one it did not apply (its first attempt failed
        after the claim) applies it."""
        fresh = await self._claim(tenant_id, "update_account", key, account_id)
        actor = await self._actor(tenant_id, account_id)
        applied = not fresh and await self._requested(actor, key.request_id)
        update = UpdateAccount(account_id, change, key.request_id, self._settings.request_ttl_s, applied)
        return _as(AccountView, await actor.submit(update))

    # Transfers

    async def create_transfer(self, tenant_id: str, command: TransferCommand, key: Idempotency) -> Transfer:
        ensure(bool(key.request_id), "transfers need a request id (checked by the service)")
        transfer_id = transfer_id_of(tenant_id, key.request_id)
        fresh = await self._claim(tenant_id, "transfer", key, transfer_id)
        transfer = new_transfer(transfer_id, key.request_id, command.currency, command.legs, command.memo)
        actor = await self._owner(tenant_id, command.legs[0].debit_account_id, transfer_id, fresh)
        if actor is None:
            return await self._completed(tenant_id, transfer_id)
        committed = await self._decide(actor, tenant_id, transfer, lambda plan: Debit(plan, key.body_sha256))
        return await self._completed(tenant_id, transfer_id, committed)

    async def _owner(self, tenant_id: str, payer_id: str, transfer_id: str, fresh: bool) -> ShardActor | None:
        """The payer's shard to submit a request's transfer to, or None when the request is a retry whose
        transfer is committed already. The journal is read once the shard is owned: what an earlier owner
        committed is materialized by then, what this owner commits it remembers, so a retry racing its
        first attempt is still applied once."""
        actor = await self._actor(tenant_id, payer_id)
        if fresh or await self._find_transfer(tenant_id, transfer_id) is None:
            return actor
        return None

    async def _submit(self, tenant_id: str, account_id: str, command: Command) -> object:
        return await (await self._actor(tenant_id, account_id)).submit(command)

    async def _decide(
        self,
        actor: ShardActor,
        tenant_id: str,
        transfer: Transfer,
        command_of: Callable[[TransferPlan], Command],
        *,
        escrow: Escrow | None = None,
        ahead: Ahead | None = None,
    ) -> object:
        """Plan a transfer and submit it to the payer's shard; the shard's answer. A refusal of the plan's
        checks is kept by that shard too (`Reject`), so every retry of the request gets one answer; the
        request's time (`ahead`) is checked first, by the shard."""
        try:
            plan = await self._plan(tenant_id, transfer, escrow)
        except ApiError as error:
            if error.code not in _FINAL_CODES:
                raise
            return await actor.submit(Reject(transfer, error, ahead))
        return await actor.submit(command_of(plan))

    async def _completed(self, tenant_id: str, transfer_id: str, committed: object = None) -> Transfer:
        """A committed transfer, once its cross-shard credits landed (or a bounded wait passed); the
        refusal again if the ledger refused it. `committed` is the payer shard's answer when this call
        committed the transfer: it is the answer once every credit landed, with no read."""
        if isinstance(committed, Transfer) and committed.state is TransferState.COMPLETED:
            return committed
        done = self._completions.get(transfer_id)
        if done is not None:
            await asyncio.wait([done], timeout=delivery_wait_s)
            if isinstance(committed, Transfer) and done.done() and done.result():
                return dataclasses.replace(committed, state=TransferState.COMPLETED)
        transfer = await self._find_transfer(tenant_id, transfer_id)
        ensure(transfer is not None, "a committed transfer is materialized before its caller returns")
        if transfer is not None and transfer.failure is not None:
            raise error_of(transfer.failure)
        return transfer  # type: ignore[return-value]

    async def _plan(self, tenant_id: str, transfer: Transfer, escrow: Escrow | None) -> TransferPlan:
        """Split a transfer by shard and check the payees of other shards (the payer's checks the rest)
        and, for the funding of an escrow, the escrow's parties."""
        if escrow is not None:
            await self._check_escrow_accounts(tenant_id, escrow)
        record = escrow_record(escrow) if escrow is not None else None
        plan = TransferPlan.of(transfer, await self._shard_count(tenant_id), record)
        for credit in plan.remote:
            await self._check_payee(tenant_id, credit.account_id, credit.amount_minor, transfer.currency)
        return plan

    # Holds

    async def create_hold(self, tenant_id: str, command: HoldCommand, key: Idempotency) -> Hold:
        hold_id = derived_id("hd_", tenant_id, key.request_id or uuid.uuid4().hex)
        await self._claim(tenant_id, "hold", key, hold_id)
        refused = await self._payee_refusal(
            tenant_id, command.payee_account_id, command.amount_minor, command.currency
        )
        hold = Hold(
            hold_id,
            key.request_id,
            command.account_id,
            command.payee_account_id,
            command.currency,
            command.amount_minor,
            0,
            HoldState.HELD,
            command.expire_time_ms,
            0,
        )
        return _as(Hold, await self._submit(tenant_id, command.account_id, CreateHold(hold, refused)))

    async def capture_hold(self, tenant_id: str, hold_id: str, amount_minor: int, key: Idempotency) -> Hold:
        fresh = await self._claim(tenant_id, "capture_hold", key, hold_id)
        hold = await self.get_hold(tenant_id, hold_id)
        transfer_id = derived_id("tr_", tenant_id, f"hold-capture\n{key.request_id or uuid.uuid4().hex}")
        leg = Leg(hold.account_id, hold.payee_account_id, amount_minor or hold.amount_minor)
        transfer = new_transfer(
            transfer_id, key.request_id, hold.currency, (leg,), f"capture of hold {hold_id}"
        )
        actor = await self._owner(tenant_id, hold.account_id, transfer_id, fresh)
        if actor is not None:
            await self._decide(actor, tenant_id, transfer, lambda plan: CaptureHold(hold_id, plan))
        await self._completed(tenant_id, transfer_id)
        return await self.get_hold(tenant_id, hold_id)

    async def void_hold(self, tenant_id: str, hold_id: str, key: Idempotency) -> Hold:
        """Voiding a voided hold returns it as it is: the command is idempotent, so retries are too."""
        await self._claim(tenant_id, "void_hold", key, hold_id)
        hold = await self.get_hold(tenant_id, hold_id)
        return _as(Hold, await self._submit(tenant_id, hold.account_id, CloseHold(hold_id)))

    async def get_hold(self, tenant_id: str, hold_id: str) -> Hold:
        record = await self._item(tenant_id, "hold", hold_id)
        if record is None:
            raise not_found(Reason.HOLD_NOT_FOUND, f"no hold {hold_id}", hold_id=hold_id)
        return hold_from_record(record)

    # Escrow

    async def create_escrow(self, tenant_id: str, command: EscrowCommand, key: Idempotency) -> Escrow:
        escrow_id = derived_id("es_", tenant_id, key.request_id or uuid.uuid4().hex)
        transfer_id = _funding_id(tenant_id, escrow_id)
        fresh = await self._claim(tenant_id, "escrow", key, escrow_id)
        escrow = Escrow(
            escrow_id,
            key.request_id,
            command.buyer_account_id,
            command.seller_account_id,
            command.escrow_account_id,
            command.fee_account_id,
            command.currency,
            command.amount_minor,
            command.fee_minor,
            0,
            EscrowState.HELD,
            command.release_time_ms,
            now_ms(),
        )
        leg = Leg(command.buyer_account_id, command.escrow_account_id, command.amount_minor)
        transfer = new_transfer(transfer_id, key.request_id, command.currency, (leg,), f"escrow {escrow_id}")
        ahead = Ahead("release_time", command.release_time_ms, limits.escrow_window_max_ms)
        actor = await self._owner(tenant_id, command.buyer_account_id, transfer_id, fresh)
        if actor is not None:

            def fund(plan: TransferPlan) -> Command:
                return Debit(plan, key.body_sha256, escrow_record(escrow), ahead)

            await self._decide(actor, tenant_id, transfer, fund, escrow=escrow, ahead=ahead)
        await self._completed(tenant_id, transfer_id)
        return await self._find_escrow(tenant_id, escrow_id) or escrow

    async def _check_escrow_accounts(self, tenant_id: str, escrow: Escrow) -> None:
        holder = await self._account_state(tenant_id, escrow.escrow_account_id)
        if holder.account.kind is not AccountKind.ESCROW:
            raise failed_precondition(
                Reason.INVALID_STATE, f"account {escrow.escrow_account_id} is not an escrow account"
            )
        await self._check_payee(tenant_id, escrow.seller_account_id, escrow.amount_minor, escrow.currency)
        if escrow.fee_minor:
            await self._check_payee(tenant_id, escrow.fee_account_id, escrow.fee_minor, escrow.currency)

    async def release_escrow(self, tenant_id: str, escrow_id: str, key: Idempotency) -> Escrow:
        return await self._settle(tenant_id, escrow_id, "release_escrow", 0, key)

    async def refund_escrow(
        self, tenant_id: str, escrow_id: str, amount_minor: int, key: Idempotency
    ) -> Escrow:
        return await self._settle(tenant_id, escrow_id, "refund_escrow", amount_minor, key)

    async def _settle(
        self, tenant_id: str, escrow_id: str, operation: str, amount_minor: int, key: Idempotency
    ) -> Escrow:
        """Release or refund an escrow; the escrow account's shard works out the legs when it applies."""
        fresh = await self._claim(tenant_id, operation, key, escrow_id)
        escrow = await self.get_escrow(tenant_id, escrow_id)
        request = key.request_id or uuid.uuid4().hex
        transfer_id = derived_id("tr_", tenant_id, f"{operation}\n{escrow_id}\n{request}")
        actor = await self._owner(tenant_id, escrow.escrow_account_id, transfer_id, fresh)
        if actor is not None:
            release = operation == "release_escrow"
            refused = None
            if not release:
                refund_minor = amount_minor or escrow.amount_minor
                refused = await self._payee_refusal(
                    tenant_id, escrow.buyer_account_id, refund_minor, escrow.currency
                )
            count = await self._shard_count(tenant_id)
            await actor.submit(
                SettleEscrow(escrow_id, transfer_id, key.request_id, amount_minor, release, count, refused)
            )
        await self._completed(tenant_id, transfer_id)
        return await self.get_escrow(tenant_id, escrow_id)

    async def dispute_escrow(self, tenant_id: str, escrow_id: str, key: Idempotency) -> Escrow:
        """A retry of a dispute the ledger applied answers the escrow as it is now (refunded since, say)."""
        fresh = await self._claim(tenant_id, "dispute_escrow", key, escrow_id)
        escrow = await self.get_escrow(tenant_id, escrow_id)
        actor = await self._actor(tenant_id, escrow.escrow_account_id)
        applied = not fresh and await self._requested(actor, key.request_id)
        dispute = DisputeEscrow(escrow_id, key.request_id, self._settings.request_ttl_s, applied)
        return _as(Escrow, await actor.submit(dispute))

    async def get_escrow(self, tenant_id: str, escrow_id: str) -> Escrow:
        """An escrow opens where its funding credit lands: while that credit is on its way (after a
        crash, say), the escrow is DELIVERY_PENDING (retry), not NOT_FOUND."""
        escrow = await self._find_escrow(tenant_id, escrow_id)
        if escrow is not None:
            return escrow
        funding = await self._find_transfer(tenant_id, _funding_id(tenant_id, escrow_id))
        if funding is None or funding.failure is not None:
            raise not_found(Reason.ESCROW_NOT_FOUND, f"no escrow {escrow_id}", escrow_id=escrow_id)
        await self._completed(tenant_id, funding.transfer_id)
        escrow = await self._find_escrow(tenant_id, escrow_id)
        if escrow is None:
            raise unavailable(Reason.DELIVERY_PENDING, f"escrow {escrow_id} is still being funded; retry")
        return escrow

    async def _find_escrow(self, tenant_id: str, escrow_id: str) -> Escrow | None:
        record = await self._item(tenant_id, "escrow", escrow_id)
        return escrow_from_record(record) if record is not None else None

    # Refunds of completed transfers

    async def create_refund(
        self, tenant_id: str, transfer_id: str, leg_index: int, amount_minor: int, key: Idempotency
    ) -> Refund:
        refund_transfer_id = derived_id("tr_", tenant_id, f"refund\n{key.request_id or uuid.uuid4().hex}")
        fresh = await self._claim(tenant_id, "refund", key, refund_transfer_id)

        def refund_of(moved: Transfer) -> Refund:
            refund_id = derived_id("rf_", tenant_id, refund_transfer_id)
            return Refund(
                refund_id,
                key.request_id,
                transfer_id,
                leg_index,
                amount_minor,
                refund_transfer_id,
                moved.create_time_ms,
            )

        if not fresh and await self._find_transfer(tenant_id, refund_transfer_id) is not None:
            return refund_of(await self._completed(tenant_id, refund_transfer_id))
        original = await self.get_transfer(tenant_id, transfer_id)
        if not 0 <= leg_index < len(original.legs):
            raise invalid("leg_index", f"transfer {transfer_id} has {len(original.legs)} legs")
        if original.state is not TransferState.COMPLETED:
            raise failed_precondition(Reason.INVALID_STATE, f"transfer {transfer_id} is not completed yet")
        leg = original.legs[leg_index]
        back = Leg(leg.credit_account_id, leg.debit_account_id, amount_minor)
        transfer = new_transfer(
            refund_transfer_id, key.request_id, original.currency, (back,), f"refund of {transfer_id}"
        )
        actor = await self._owner(tenant_id, back.debit_account_id, refund_transfer_id, fresh)
        if actor is not None:

            def refund(plan: TransferPlan) -> Command:
                window_end_ms = original.create_time_ms + self._settings.refund_window_s * 1000
                return RefundLeg(
                    transfer_id, leg_index, leg.amount_minor, plan, key.body_sha256, window_end_ms
                )

            await self._decide(actor, tenant_id, transfer, refund)
        return refund_of(await self._completed(tenant_id, refund_transfer_id))

    async def _item(self, tenant_id: str, kind: str, item_id: str) -> Record | None:
        """An item of the shard that owns it: a hold lives with its payer, found by scanning the shards."""
        for shard in range(await self._shard_count(tenant_id)):
            try:
                record = (await self._actor_of_shard(tenant_id, shard, wait=False)).items.get((kind, item_id))
            except ShardElsewhere:
                row = await self._backend.read_row(SHARDS.partition(tenant_id, shard), (kind, item_id))
                record = decode(row["record"]) if row is not None else None
            if record is not None:
                return record
        return None

    async def watch_events(
        self, tenant_id: str, cursor: str, from_oldest: bool, wanted: EventFilter
    ) -> AsyncIterator[tuple[list[Event], str]]:
        """Batches of events with the cursor after them, for `events_stream_max_s`. A batch comes when
        events match, or every `events_heartbeat_s` while others go by (so the cursor moves on). Commits
        of this process wake the watcher; those of others are seen within `events_poll_s`."""
        count = await self._shard_count(tenant_id)
        seqs = decode_cursor(cursor, count)
        if seqs is None:
            seqs = [0] * count if from_oldest else await last_seqs(self._backend, tenant_id, count)
        started_s = last_sent_s = time.monotonic()
        while time.monotonic() - started_s < limits.events_stream_max_s:
            signal = self._commit_signals.setdefault(tenant_id, asyncio.Event())
            events = await read_events(self._backend, tenant_id, seqs, limits.events_per_shard_max)
            matching = [event for event in events if wanted.matches(event)]
            if matching or (events and time.monotonic() - last_sent_s >= limits.events_heartbeat_s):
                last_sent_s = time.monotonic()
                yield matching, encode_cursor(seqs)
            elif not events:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), limits.events_poll_s)

    async def reconcile(self, tenant_id: str) -> ReconcileReport:
        return await reconcile(self._backend, tenant_id)

    async def get_transfer(self, tenant_id: str, transfer_id: str) -> Transfer:
        transfer = await self._find_transfer(tenant_id, transfer_id)
        if transfer is None:
            raise not_found(Reason.TRANSFER_NOT_FOUND, f"no transfer {transfer_id}", transfer_id=transfer_id)
        return transfer

    async def list_entries(self, tenant_id: str, query: EntryQuery) -> tuple[list[Entry], int | None]:
        state = await self._account_state(tenant_id, query.account_id)
        partition = ENTRIES.partition(tenant_id, query.account_id)
        first = query.after_entry_seq + 1 if query.after_entry_seq is not None else 1
        if query.start_time_ms is not None:
            start = await self._first_entry_at(
                tenant_id, query.account_id, query.start_time_ms, state.entry_seq
            )
            first = max(first, start)
        rows = RowQuery(partition, lower=Bound((first,), inclusive=True), limit=query.limit)
        page = await self._backend.read_page(rows)
        entries = [_entry(query.account_id, r) for r in page.rows]
        if query.end_time_ms is not None:
            entries = [e for e in entries if e.time_ms < query.end_time_ms]
            if len(entries) < len(page.rows):
                return entries, None
        return entries, entries[-1].entry_seq if page.next_after is not None and entries else None

    async def balance_at(self, tenant_id: str, account_id: str, time_ms: int) -> BalanceAt:
        state = await self._account_state(tenant_id, account_id)
        after = await self._first_entry_at(tenant_id, account_id, time_ms + 1, state.entry_seq)
        if after <= 1:
            return BalanceAt(account_id, time_ms, 0, 0)
        row = await self._backend.read_row(ENTRIES.partition(tenant_id, account_id), (after - 1,))
        ensure(row is not None, "journal entries before the newest are materialized")
        return BalanceAt(account_id, time_ms, row.as_int("balance_after_minor") if row else 0, after - 1)

    async def _first_entry_at(
        self, tenant_id: str, account_id: str, start_time_ms: int, last_seq: int
    ) -> int:
        """The first entry_seq at or after `start_time_ms` (entry times never decrease): a binary search."""
        partition = ENTRIES.partition(tenant_id, account_id)
        low, high = 1, last_seq + 1
        for _ in range(limits.binary_search_steps_max):
            if low >= high:
                return low
            middle = (low + high) // 2
            row = await self._backend.read_row(partition, (middle,))
            if row is not None and row.as_int("time_ms") < start_time_ms:
                low = middle + 1
            else:
                high = middle
        return low

    # Routing

    async def _shard_count(self, tenant_id: str) -> int:
        count = self._shard_counts.get(tenant_id)
        if count is not None:
            return count
        partition = TENANT_CONFIG.partition(tenant_id)
        wanted = self._settings.shard_count
        put = Put((), {"shard_count": wanted, "create_time_ms": now_ms()})
        outcome = await self._backend.write(Batch(partition, (put,), conditions=(RowAbsent(()),)))
        current = outcome.current_rows.get(())
        count = current.as_int("shard_count") if not outcome.applied and current is not None else wanted
        if count != wanted:
            log.warning("tenant keeps its ledger shard count", tenant_id=tenant_id, shard_count=count)
        log.info("ledger opened", tenant_id=tenant_id, shard_count=count)
        self._shard_counts[tenant_id] = count
        return count

    async def _actor(self, tenant_id: str, account_id: str) -> ShardActor:
        return await self._actor_of_shard(tenant_id, shard_of(account_id, await self._shard_count(tenant_id)))

    async def _actor_of_shard(self, tenant_id: str, shard: int, wait: bool = True) -> ShardActor:
        """This process's owner of the shard, acquired if need be. Raises ShardElsewhere while another
        process holds its lease, unless that process takes no forwarded calls and `wait` is set: then
        the lease is waited out (a reader does not wait: it reads what the holder stored)."""
        key = (tenant_id, shard)
        actor = self._actors.get(key)
        if actor is not None and actor.serving():
            return actor
        elsewhere = self._elsewhere.get(key)
        if elsewhere is not None and elsewhere.lease_until_ms > now_ms() and (elsewhere.address or not wait):
            raise elsewhere
        async with self._starting.setdefault(key, asyncio.Lock()):
            actor = self._actors.get(key)
            if actor is not None and not actor.lost and not actor.serving():
                await actor.renew()
            if actor is None or not actor.serving():
                if actor is not None:
                    await actor.stop()
                actor = await self._acquire(tenant_id, shard, wait)
        return actor

    async def _acquire(self, tenant_id: str, shard: int, wait: bool) -> ShardActor:
        """Take the shard over; a lease held elsewhere is waited out at most `lease_waits_max` times."""
        ensure(len(self._actors) < limits.ledger_actors_max, "more ledger shards than ledger_actors_max")
        if self._stopping:
            raise unavailable(Reason.DRAINING, "the ledger is stopping; retry on another server")
        count = await self._shard_count(tenant_id)
        actor = ShardActor(
            self._backend,
            tenant_id,
            shard,
            shard_count=count,
            settings=self._settings,
            listener=self,
            node=self.node,
        )
        for _ in range(lease_waits_max):
            try:
                recovered = await actor.acquire()
                break
            except ShardElsewhere as elsewhere:
                if elsewhere.address or not wait:
                    self._elsewhere[(tenant_id, shard)] = elsewhere
                    raise
                await asyncio.sleep(max(0, elsewhere.lease_until_ms - now_ms()) / 1000)
        else:
            raise unavailable(Reason.SHARD_MOVED, f"ledger shard {shard} is held by another process; retry")
        self._elsewhere.pop((tenant_id, shard), None)
        await write_all(self._backend, self.journal(actor, recovered))
        self._actors[(tenant_id, shard)] = actor
        actor.start()
        self.stalled(actor)
        return actor

    async def _check_payee(self, tenant_id: str, account_id: str, amount_minor: int, currency: str) -> None:
        check_credit(await self._account_state(tenant_id, account_id), amount_minor, currency)

    async def _payee_refusal(
        self, tenant_id: str, account_id: str, amount_minor: int, currency: str
    ) -> ApiError | None:
        """A payee check's refusal when it is final (the payer's shard keeps it for the retries)."""
        try:
            await self._check_payee(tenant_id, account_id, amount_minor, currency)
        except ApiError as error:
            if error.code not in _FINAL_CODES:
                raise
            return error
        return None

    # Idempotency

    async def _claim(self, tenant_id: str, operation: str, key: Idempotency, target_id: str) -> bool:
        """Claim a request id; False when this same request was claimed before (a retry)."""
        if not key.request_id:
            return True
        values: dict[str, Value] = {
            "operation": operation,
            "body_sha256": key.body_sha256,
            "target_id": target_id,
            "create_time_ms": now_ms(),
        }
        put = Put((), values, ttl_s=self._settings.request_ttl_s)
        partition = REQUESTS.partition(tenant_id, key.request_id)
        outcome = await self._backend.write(Batch(partition, (put,), conditions=(RowAbsent(()),)))
        if outcome.applied:
            return True
        current = outcome.current_rows.get(())
        if current is None or current["operation"] != operation or current["body_sha256"] != key.body_sha256:
            raise already_exists(
                Reason.REQUEST_ID_REUSED, f"request_id {key.request_id} was used for another request"
            )
        return False

    async def _requested(self, actor: ShardActor, request_id: str) -> bool:
        """Whether an earlier owner of the (owned) shard applied a request that is not a transfer: its
        marker is stored with the change. What this owner applies it remembers (`Stage.requested`). The
        answer is the command's, from the shard, which has applied every commit it stored."""
        return await self._backend.read_row(actor.partition, ("request", request_id)) is not None

    async def _find_transfer(self, tenant_id: str, transfer_id: str) -> Transfer | None:
        row = await self._backend.read_row(TRANSFERS.partition(tenant_id, transfer_id))
        return _transfer(transfer_id, row) if row is not None else None

    # After a commit: materialize records, deliver credits (the shards' CommitListener)

    def journal(self, actor: ShardActor, records: Records) -> list[Batch]:
        delivered = {r["transfer_id"] for _, r in records if r.get("type") == "delivered"}
        batches: list[Batch] = []
        for _, record in records:
            batches += _materialization(actor.tenant_id, record, delivered)
        return batches

    def committed(self, actor: ShardActor, records: Records) -> None:
        signal = self._commit_signals.pop(actor.tenant_id, None)
        if signal is not None:
            signal.set()
        for _, record in records:
            if record.get("type") == "delivered":
                self._stop_waiting(record["transfer_id"], delivered=True)
            transfer = transfer_of(record)
            if transfer is not None and transfer.transfer_id in actor.outbox:
                owed = actor.outbox[transfer.transfer_id]
                self._completions.setdefault(transfer.transfer_id, asyncio.get_running_loop().create_future())
                self._start_delivery(actor, transfer.transfer_id, owed)

    def _stop_waiting(self, transfer_id: str, delivered: bool) -> None:
        """Wake (and forget) the callers waiting for a transfer's credits to land; `delivered` tells them
        whether they did."""
        done = self._completions.pop(transfer_id, None)
        if done is not None and not done.done():
            done.set_result(delivered)

    def stalled(self, actor: ShardActor) -> None:
        for transfer_id, owed in actor.outbox.items():
            self._start_delivery(actor, transfer_id, owed)

    def _start_delivery(self, payer: ShardActor, transfer_id: str, owed: Record) -> None:
        """Deliver a transfer's credits, unless a task of this process is delivering them already."""
        if transfer_id not in self._delivering:
            self._delivering.add(transfer_id)
            self._spawn(self._deliver(payer, transfer_id, owed))

    async def _deliver(self, payer: ShardActor, transfer_id: str, owed: Record) -> None:
        """Apply each owed credit once, then drop the outbox entry. A failed attempt (a shard that moved,
        storage trouble) is retried with backoff; the owner's upkeep starts a delivery again while its
        outbox still owes. The credit marker is read once the payee's shard is owned: a credit an
        earlier owner applied is found there, one this owner applied it remembers, so a delivery that
        runs twice (the payer shard acquired again meanwhile) credits once. A payee shard that another
        process holds gets the credit in its inbox, and the delivery waits for its marker."""
        try:
            for attempt in range(delivery_attempts_max):
                try:
                    await self._credit_all(payer.tenant_id, transfer_id, owed)
                    owner = await self._actor_of_shard(payer.tenant_id, payer.shard)
                    await owner.submit(Delivered(transfer_id))
                    return
                except (ApiError, StorageError, ShardElsewhere) as error:
                    log.warning(
                        "credit delivery failed; retrying",
                        transfer_id=transfer_id,
                        attempt=attempt,
                        error=str(error),
                    )
                    await asyncio.sleep(delivery_backoff_s * 2**attempt)
            log.error("credit delivery gave up; the payer shard delivers again", transfer_id=transfer_id)
            self._stop_waiting(transfer_id, delivered=False)
        finally:
            self._delivering.discard(transfer_id)

    async def _credit_all(self, tenant_id: str, transfer_id: str, owed: Record) -> None:
        currency = owed["transfer"]["currency"]
        left: list[Credit] = []
        for item in owed["credits"]:
            credit = Credit(transfer_id, currency, RemoteCredit(**item), self._settings.wal_ttl_s)
            partition = SHARDS.partition(tenant_id, credit.credit.shard)
            try:
                payee = await self._actor_of_shard(tenant_id, credit.credit.shard)
            except ShardElsewhere:
                put = Put(("inbox", credit.marker_key), {"record": encode(credit.inbox_record())})
                await self._backend.write(Batch(partition, (put,)))
                left.append(credit)
                continue
            if not await self._credited(tenant_id, credit):
                await payee.submit(credit)
        for _ in range(inbox_polls_max):
            if not left:
                return
            await asyncio.sleep(self._settings.inbox_poll_ms / 1000)
            left = [credit for credit in left if not await self._credited(tenant_id, credit)]
        raise unavailable(Reason.DELIVERY_PENDING, f"credits of {transfer_id} wait in another shard's inbox")

    async def _credited(self, tenant_id: str, credit: Credit) -> bool:
        partition = SHARDS.partition(tenant_id, credit.credit.shard)
        return await self._backend.read_row(partition, ("credit", credit.marker_key)) is not None

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "ledger background work failed; the shard retries on its next acquire",
                exc_info=task.exception(),
            )


def _funding_id(tenant_id: str, escrow_id: str) -> str:
    return derived_id("tr_", tenant_id, f"escrow-fund\n{escrow_id}")


def transfer_id_of(tenant_id: str, request_id: str) -> str:
    """Transfer ids derive from the request id, so every retry of a request names the same transfer."""
    return derived_id("tr_", tenant_id, request_id)


T = TypeVar("T")


def _as(kind: type[T], result: object) -> T:
    ensure(isinstance(result, kind), f"a shard command returned {type(result).__name__}, not {kind.__name__}")
    return result  # type: ignore[return-value]


def _materialization(tenant_id: str, record: Record, delivered: set[str]) -> list[Batch]:
    """The idempotent journal writes of one record. A transfer delivered in the same set is written
    completed, so the writes of one set never race on a transfer's state."""
    batches = [_entry_batch(tenant_id, posting, record) for posting in record.get("postings", [])]
    transfer = transfer_of(record)
    if transfer is not None:
        state = TransferState.COMPLETED if transfer.transfer_id in delivered else transfer.state
        batches.append(_transfer_batch(tenant_id, transfer, record.get("body_sha256", ""), state))
    elif record.get("type") == "delivered":
        put = Put((), {"state": TransferState.COMPLETED.value})
        batches.append(Batch(TRANSFERS.partition(tenant_id, record["transfer_id"]), (put,)))
    return batches


def _entry_batch(tenant_id: str, posting: Record, record: Record) -> Batch:
    values: dict[str, Value] = {
        "transfer_id": transfer_id_of_record(record),
        "leg_index": posting["leg_index"],
        "entry_kind": posting["kind"],
        "amount_minor": posting["amount_minor"],
        "balance_after_minor": posting["balance_after_minor"],
        "time_ms": posting["time_ms"],
    }
    partition = ENTRIES.partition(tenant_id, posting["account_id"])
    return Batch(partition, (Put((posting["entry_seq"],), values),))


def _transfer_batch(tenant_id: str, transfer: Transfer, body_sha256: str, state: TransferState) -> Batch:
    legs = [[leg.debit_account_id, leg.credit_account_id, leg.amount_minor] for leg in transfer.legs]
    values: dict[str, Value] = {
        "request_id": transfer.request_id,
        "body_sha256": body_sha256,
        "currency": transfer.currency,
        "legs": json.dumps(legs, separators=(",", ":")),
        "memo": transfer.memo,
        "state": state.value,
        "create_time_ms": transfer.create_time_ms,
        "failure": json.dumps(dataclasses.asdict(transfer.failure)) if transfer.failure else None,
    }
    return Batch(TRANSFERS.partition(tenant_id, transfer.transfer_id), (Put((), values),))


def _transfer(transfer_id: str, row: Row) -> Transfer:
    record = {
        "transfer_id": transfer_id,
        "request_id": row.as_text("request_id"),
        "currency": row.as_text("currency"),
        "legs": json.loads(row.as_text("legs")),
        "memo": row.as_text("memo"),
        "state": row.as_text("state"),
        "create_time_ms": row.as_int("create_time_ms"),
        "failure": json.loads(row["failure"]) if isinstance(row["failure"], str) else None,
    }
    return transfer_from_record(record)


def _entry(account_id: str, row: Row) -> Entry:
    return Entry(
        account_id=account_id,
        entry_seq=row.as_int("entry_seq"),
        transfer_id=row.as_text("transfer_id"),
        leg_index=row.as_int("leg_index"),
        kind=EntryKind(row.as_text("entry_kind")),
        amount_minor=row.as_int("amount_minor"),
        balance_after_minor=row.as_int("balance_after_minor"),
        time_ms=row.as_int("time_ms"),
    )
