"""The ledger: payments' orchestration on the shard runtime. Implements `payments.api.LedgerApi`.

A request flows service → here → runtime → state machine → storage. A transfer: (1) the request id is
claimed (`platform.idempotency.RequestClaims` on `payments_claims`), so a reuse with another body is
refused even when it names another payer (on SQLite a single transfer's claim rides the payer shard's
commit as its guard, and the claim comes first only when the guard fails); (2) the payee checks that need
other shards run here, then the payer's shard (`shards.ShardActor`) applies the command (`commands.py`) in
one group commit: it debits every leg and credits the legs whose payee lives in the same shard, recording
the credits owed elsewhere in its outbox; (3) the runtime delivers each owed credit once to its shard
(`shards.delivery`), the call is answered, then the outbox entry is settled. After a crash, a shard that is
acquired again re-materializes its records and re-delivers its outbox, so every debited transfer completes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import msgspec
import structlog
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import SYSTEM_CLOCK, Clock
from jubao_server.errors import (
    ApiError,
    ErrorCode,
    HeldElsewhere,
    failed_precondition,
    invalid,
    not_found,
    refusal_of,
    unavailable,
)
from jubao_server.invariants import ensure
from jubao_server.payments import events, journal, statements
from jubao_server.payments.api import (
    BalanceAt,
    EntryQuery,
    EscrowCommand,
    HoldCommand,
    Idempotency,
    TransferCommand,
)
from jubao_server.payments.commands import (
    Ahead,
    CaptureHold,
    CloseHold,
    CreateHold,
    Debit,
    DisputeEscrow,
    Each,
    OpenAccount,
    RefundLeg,
    Reject,
    SettleEscrow,
    TransferPlan,
    UpdateAccount,
    error_of,
    new_transfer,
)
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.events import Event, EventFilter
from jubao_server.payments.machine import (
    ACCOUNT,
    CLOSED_ESCROW,
    CLOSED_HOLD,
    ESCROW,
    HOLD,
    PaymentsMachine,
    account_of_row,
    shard_settings,
)
from jubao_server.payments.model import (
    AccountChange,
    AccountKind,
    AccountView,
    Entry,
    Escrow,
    EscrowState,
    Hold,
    HoldState,
    Leg,
    OpenAccountCommand,
    Refund,
    Transfer,
    TransferState,
)
from jubao_server.payments.reconcile import ReconcileReport, reconcile
from jubao_server.payments.records import ESCROWS, HOLDS, CreditMessage, OutboxEntry, Record
from jubao_server.payments.state import AccountState, ShardState, Stage, check_credit
from jubao_server.payments.sweep import derived_id
from jubao_server.payments.tables import CLAIM_BUCKETS_PER_SHARD, CLAIMS, CLAIMS_MOVED, REQUESTS, SHARDS
from jubao_server.platform.idempotency import (
    Claim,
    ClaimRequest,
    ClaimTable,
    EarlierClaims,
    RequestClaims,
)
from jubao_server.shards.actor import GuardFailed, ShardActor
from jubao_server.shards.node import RANDOM_IDS, IdSource, Node, ShardElsewhere
from jubao_server.shards.runtime import ShardRuntime
from jubao_server.shards.stage import Command, shard_of
from jubao_server.shards.wal import record_blob
from jubao_server.storage.contract import Batch, Bound, RowQuery, StorageBackend, StorageError

log = structlog.get_logger("jubao.payments")

# Refusals a request keeps: a retry gets them again. Others (UNAVAILABLE, ...) leave the outcome open.
_FINAL_CODES = (ErrorCode.NOT_FOUND, ErrorCode.FAILED_PRECONDITION)
PAYMENTS_CLAIMS = ClaimTable(CLAIMS, operation_column="operation", bucketed=True)
# Where the ledger kept its claims before `payments_claims` (without attempts, only read now).
EARLIER_CLAIMS = ClaimTable(REQUESTS, operation_column="operation", attempts=False)

T = TypeVar("T")
Shards = ShardRuntime[ShardState, Stage, Record, OutboxEntry, CreditMessage]
Shard = ShardActor[ShardState, Stage, Record, OutboxEntry, CreditMessage]


class Ledger:
    def __init__(
        self,
        backend: StorageBackend,
        settings: PaymentsSettings,
        node: Node | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        ids: IdSource = RANDOM_IDS,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self.clock = clock
        self._ids = ids
        self.shards: Shards = ShardRuntime(
            backend, PaymentsMachine(settings), shard_settings(settings), clock, node or Node.local(ids=ids)
        )
        self._claims = RequestClaims(
            backend,
            PAYMENTS_CLAIMS,
            clock,
            settings.request_ttl_s,
            buckets=self._claim_buckets,
            earlier=EarlierClaims(EARLIER_CLAIMS, self._earlier_claims_until_ms),
        )
        self._opened: set[str] = set()
        # Per tenant: until when its claims of `payments_requests` may live (0: it never had any).
        self._earlier_until_ms: dict[str, int] = {}

    @property
    def node(self) -> Node:
        return self.shards.node

    @node.setter
    def node(self, node: Node) -> None:
        self.shards.node = node

    async def start(self) -> None:
        """Nothing to load up front: shards are acquired on first use."""

    async def stop(self) -> None:
        """Stop every shard and give its lease up, so that another process takes over at once."""
        await self.shards.stop()

    # Accounts

    async def open_account(
        self, tenant_id: str, command: OpenAccountCommand, key: Idempotency
    ) -> AccountView:
        await self._claim(tenant_id, "open_account", key, command.account_id)
        shard = await self._shard(tenant_id, command.account_id)
        return await shard.submit(OpenAccount(command, key.request_id))

    async def get_account(self, tenant_id: str, account_id: str) -> AccountView:
        state = await self._account_state(tenant_id, account_id)
        return AccountView(state.account, state.balance)

    async def _account_state(self, tenant_id: str, account_id: str) -> AccountState:
        """The committed state of an account: from its shard's owner when that is this process, else as
        stored (every owner stores a commit before it answers)."""
        shard = shard_of(account_id, await self._shard_count(tenant_id))
        state = (await self._accounts_of_shard(tenant_id, shard, (account_id,)))[account_id]
        if state is None:
            raise _no_account(account_id)
        return state

    async def _accounts_of_shard(
        self, tenant_id: str, shard: int, account_ids: Iterable[str]
    ) -> dict[str, AccountState | None]:
        """The committed state of accounts of one shard (None: no such account), as `_account_state`."""
        try:
            accounts = (await self._current(tenant_id, shard)).accounts
            return {account_id: accounts.get(account_id) for account_id in account_ids}
        except ShardElsewhere:
            partition = SHARDS.partition(tenant_id, shard)
            found: dict[str, AccountState | None] = {}
            for account_id in account_ids:
                row = await self._backend.read_row(partition, (ACCOUNT, account_id))
                found[account_id] = account_of_row(row) if row is not None else None
            return found

    async def _payees(
        self, tenant_id: str, plans: Iterable[TransferPlan]
    ) -> dict[str, AccountState | ApiError | None]:
        """The payees of the plans' credits to other shards, read once per shard and all shards at once
        (a shard that cannot be read leaves its error for each of its payees)."""
        by_shard: dict[int, set[str]] = {}
        for plan in plans:
            for credit in plan.remote:
                by_shard.setdefault(credit.shard, set()).add(credit.account_id)
        payees: dict[str, AccountState | ApiError | None] = {}

        async def read(shard: int, account_ids: set[str]) -> None:
            try:
                payees.update(await self._accounts_of_shard(tenant_id, shard, account_ids))
            except (ApiError, StorageError) as error:
                payees.update(dict.fromkeys(account_ids, refusal_of(error)))

        if len(by_shard) == 1:
            await read(*next(iter(by_shard.items())))
            return payees
        async with asyncio.TaskGroup() as group:
            for shard, account_ids in by_shard.items():
                group.create_task(read(shard, account_ids))
        return payees

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
            accounts = (await self._current(tenant_id, shard)).accounts
            return [accounts[a] for a in sorted(a for a in accounts if a > after_id)[:limit]]
        except ShardElsewhere:
            query = RowQuery(
                SHARDS.partition(tenant_id, shard),
                lower=Bound((ACCOUNT, after_id), inclusive=False),
                upper=Bound((ACCOUNT,), inclusive=True),
                limit=limit,
            )
            return [account_of_row(row) for row in (await self._backend.read_page(query)).rows]

    async def update_account(
        self, tenant_id: str, account_id: str, change: AccountChange, key: Idempotency
    ) -> AccountView:
        """A retry of a request the ledger applied changes nothing again (whatever changed since) and
        returns the account as it is now; a retry of one it did not apply (its first attempt failed
        after the claim) applies it."""
        fresh = await self._claim(tenant_id, "update_account", key, account_id)
        shard = await self._shard(tenant_id, account_id)
        applied = not fresh and await self._requested(shard, key.request_id)
        return await shard.submit(
            UpdateAccount(account_id, change, key.request_id, self._settings.request_ttl_s, applied)
        )

    # Transfers

    async def create_transfer(self, tenant_id: str, command: TransferCommand, key: Idempotency) -> Transfer:
        ensure(bool(key.request_id), "transfers need a request id (checked by the service)")
        transfer_id = transfer_id_of(tenant_id, key.request_id)
        transfer = new_transfer(transfer_id, key.request_id, command.currency, command.legs, command.memo)
        payer_id = command.legs[0].debit_account_id
        if await self._claims.guarding(tenant_id):
            # The claim rides the payer shard's commit; claimed before, the request is a retry or a
            # reuse, told apart below as if its claim came first.
            request: ClaimRequest = (key.request_id, key.body_sha256, {"target_id": transfer_id})
            guards = await self._claims.guards(tenant_id, "transfer", [request])
            payer = await self._shard(tenant_id, payer_id)
            with contextlib.suppress(GuardFailed):
                debit = await self._decide(
                    payer, tenant_id, transfer, lambda plan: Debit(plan, key.body_sha256), guards=guards
                )
                return await self._completed(tenant_id, transfer_id, debit)
        fresh = await self._claim(tenant_id, "transfer", key, transfer_id)
        shard = await self._owner(tenant_id, payer_id, transfer_id, fresh)
        if shard is None:
            return await self._completed(tenant_id, transfer_id)
        committed = await self._decide(shard, tenant_id, transfer, lambda plan: Debit(plan, key.body_sha256))
        return await self._completed(tenant_id, transfer_id, committed)

    async def create_transfers(
        self, tenant_id: str, items: Sequence[tuple[TransferCommand, Idempotency]]
    ) -> list[Transfer | ApiError | HeldElsewhere]:
        """The batch path (BatchCreateTransfers, bulk uploads): each item gets what `create_transfer`
        would answer it (the transfer, its refusal, or the server holding its payer's shard), with the
        work done per batch: every request id claimed in one storage call, then one command per payer shard
        (`Each`, cut to fit a group commit) submitted to all shards at once, then one wait for the
        credits of all. The items' request ids must differ (the caller checks)."""
        count = await self._shard_count(tenant_id)
        transfers = [
            new_transfer(transfer_id_of(tenant_id, k.request_id), k.request_id, c.currency, c.legs, c.memo)
            for c, k in items
        ]
        requests: list[ClaimRequest] = [
            (key.request_id, key.body_sha256, {"target_id": t.transfer_id})
            for (_, key), t in zip(items, transfers, strict=True)
        ]
        claims = await self._claims.claim_all(tenant_id, "transfer", requests)
        outcomes: list[Transfer | ApiError | HeldElsewhere | None] = [None] * len(items)
        by_shard: dict[int, list[int]] = {}
        plans: dict[int, TransferPlan] = {}
        for index, claim in enumerate(claims):
            if isinstance(claim, ApiError):
                outcomes[index] = claim
            else:
                payer_id = transfers[index].legs[0].debit_account_id
                by_shard.setdefault(shard_of(payer_id, count), []).append(index)
                plans[index] = TransferPlan.of(transfers[index], count)
        payees = await self._payees(tenant_id, plans.values())

        async def run_shard(shard_index: int, indexes: list[int]) -> None:
            """Decide the shard's items; storage trouble leaves each item not decided yet UNAVAILABLE
            (retried with its request id), as `create_transfer` would answer it."""
            try:
                await decide_shard(shard_index, indexes)
            except StorageError as error:
                failed = refusal_of(error)
                for index in indexes:
                    if outcomes[index] is None:
                        outcomes[index] = failed

        async def decide_shard(shard_index: int, indexes: list[int]) -> None:
            try:
                shard = await self.shards.actor(tenant_id, shard_index)
            except (ApiError, HeldElsewhere) as error:
                for index in indexes:
                    outcomes[index] = error
                return
            chunk: list[tuple[int, Debit | Reject]] = []
            rows = 0
            for index in indexes:
                claim = claims[index]
                transfer = transfers[index]
                fresh = isinstance(claim, Claim) and claim.fresh
                if not fresh and await journal.find_transfer(self._backend, tenant_id, transfer.transfer_id):
                    outcomes[index] = await self._answer(tenant_id, transfer.transfer_id)
                    continue
                command = _debit_or_reject(plans[index], payees, items[index][1].body_sha256)
                if isinstance(command, ApiError):
                    outcomes[index] = command
                    continue
                if chunk and rows + command.rows_max() > limits.shard_batch_rows_max:
                    await self._submit_each(shard, tenant_id, chunk, outcomes)
                    chunk, rows = [], 0
                chunk.append((index, command))
                rows += command.rows_max()
            if chunk:
                await self._submit_each(shard, tenant_id, chunk, outcomes)

        async with asyncio.TaskGroup() as group:
            for shard_index, indexes in by_shard.items():
                group.create_task(run_shard(shard_index, indexes))
        ensure(all(o is not None for o in outcomes), "every item of a batch has its outcome")
        return [outcome for outcome in outcomes if outcome is not None]

    async def _submit_each(
        self,
        shard: Shard,
        tenant_id: str,
        chunk: list[tuple[int, Debit | Reject]],
        outcomes: list[Transfer | ApiError | HeldElsewhere | None],
    ) -> None:
        """Submit one chunk of a batch's items as one command; each item's answer once its credits landed
        (or a bounded wait passed, as `_completed`): what the chunk owes other shards is one outbox
        entry, waited for once."""
        try:
            results = await shard.submit(Each(tuple(command for _, command in chunk)))
        except ApiError as error:
            for index, _ in chunk:
                outcomes[index] = error
            return
        owing = [
            r.transfer_id for r in results if isinstance(r, Transfer) and r.state is TransferState.DEBITED
        ]
        deliveries = self.shards.deliveries
        waited = await deliveries.landed(owing, limits.ledger_completion_wait_s)
        landed = dict(zip(owing, waited, strict=True))
        unsettled: list[tuple[int, str]] = []
        for (index, _), result in zip(chunk, results, strict=True):
            if isinstance(result, ApiError):
                outcomes[index] = result
            elif (answer := self._answer_now(result, landed.get(result.transfer_id))) is not None:
                outcomes[index] = answer
            else:
                unsettled.append((index, result.transfer_id))
        stored = await asyncio.gather(*(_caught(self._stored(tenant_id, t)) for _, t in unsettled))
        for (index, _), outcome in zip(unsettled, stored, strict=True):
            outcomes[index] = outcome

    async def _answer(self, tenant_id: str, transfer_id: str) -> Transfer | ApiError:
        return await _caught(self._completed(tenant_id, transfer_id))

    async def _owner(self, tenant_id: str, payer_id: str, transfer_id: str, fresh: bool) -> Shard | None:
        """The payer's shard to submit a request's transfer to, or None when the request is a retry whose
        transfer is committed already. The journal is read once the shard is owned: what an earlier owner
        committed is materialized by then, what this owner commits it remembers, so a retry racing its
        first attempt is still applied once."""
        shard = await self._shard(tenant_id, payer_id)
        if fresh or await journal.find_transfer(self._backend, tenant_id, transfer_id) is None:
            return shard
        return None

    async def _decide(
        self,
        shard: Shard,
        tenant_id: str,
        transfer: Transfer,
        command_of: Callable[[TransferPlan], Command[Stage, T]],
        *,
        escrow: Escrow | None = None,
        ahead: Ahead | None = None,
        guards: Sequence[Batch] = (),
    ) -> T | Transfer:
        """Plan a transfer and submit it to the payer's shard; the shard's answer. A refusal of the plan's
        checks is kept by that shard too (`Reject`), so every retry of the request gets one answer; the
        request's time (`ahead`) is checked first, by the shard. `guards`: the request's claim, stored
        with the commit (`ShardActor.submit`)."""
        try:
            plan = await self._plan(tenant_id, transfer, escrow)
        except ApiError as error:
            if error.code not in _FINAL_CODES:
                raise
            return await shard.submit(Reject(transfer, error, ahead), guards=guards)
        return await shard.submit(command_of(plan), guards=guards)

    async def _completed(
        self, tenant_id: str, transfer_id: str, committed: Transfer | None = None
    ) -> Transfer:
        """A committed transfer, once its cross-shard credits landed (or a bounded wait passed); the
        refusal again if the ledger refused it. `committed` is the payer shard's answer when this call
        committed the transfer: it is the answer once every credit landed, with no read."""
        deliveries = self.shards.deliveries
        (landed,) = await deliveries.landed([transfer_id], limits.ledger_completion_wait_s)
        answer = self._answer_now(committed, landed) if committed is not None else None
        return answer if answer is not None else await self._stored(tenant_id, transfer_id)

    def _answer_now(self, committed: Transfer, landed: bool | None) -> Transfer | None:
        """The answer to the call that committed a transfer, when no read is needed: it completed in its
        payer's shard, or every credit of its outbox entry landed (`landed`: the wait for them; reads
        find it completed from then on, `journal.find_transfer`), or this process still delivers its
        credits (the wait ended first): it is debited, its credits in flight, as committed. Under load
        the wait ends first for whole batches; a read each then cost a batch a thousand."""
        if committed.state is TransferState.COMPLETED:
            return committed
        if landed:
            return committed.with_state(TransferState.COMPLETED, committed.create_time_ms)
        if self.shards.deliveries.in_flight(committed.transfer_id):
            return committed
        return None

    async def _stored(self, tenant_id: str, transfer_id: str) -> Transfer:
        """A committed transfer as its journal has it; the refusal again if the ledger refused it."""
        transfer = await journal.find_transfer(self._backend, tenant_id, transfer_id)
        ensure(transfer is not None, "a committed transfer is materialized before its caller returns")
        if transfer is not None and transfer.failure is not None:
            raise error_of(transfer.failure)
        return transfer  # type: ignore[return-value]

    async def _plan(self, tenant_id: str, transfer: Transfer, escrow: Escrow | None) -> TransferPlan:
        """Split a transfer by shard and check the payees of other shards (the payer's checks the rest)
        and, for the funding of an escrow, the escrow's parties."""
        if escrow is not None:
            await self._check_escrow_accounts(tenant_id, escrow)
        plan = TransferPlan.of(transfer, await self._shard_count(tenant_id), escrow)
        _check_payees(plan, await self._payees(tenant_id, (plan,)))
        return plan

    # Holds

    async def create_hold(self, tenant_id: str, command: HoldCommand, key: Idempotency) -> Hold:
        hold_id = derived_id("hd_", tenant_id, key.request_id or self._ids.new_id())
        fresh = await self._claim(tenant_id, "hold", key, hold_id)
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
        shard = await self._shard(tenant_id, command.account_id)
        return await shard.submit(CreateHold(hold, refused, retry=not fresh))

    async def capture_hold(self, tenant_id: str, hold_id: str, amount_minor: int, key: Idempotency) -> Hold:
        fresh = await self._claim(tenant_id, "capture_hold", key, hold_id)
        hold = await self.get_hold(tenant_id, hold_id)
        request = key.request_id or self._ids.new_id()
        transfer_id = derived_id("tr_", tenant_id, f"hold-capture\n{request}")
        leg = Leg(hold.account_id, hold.payee_account_id, amount_minor or hold.amount_minor)
        transfer = new_transfer(
            transfer_id, key.request_id, hold.currency, (leg,), f"capture of hold {hold_id}"
        )
        shard = await self._owner(tenant_id, hold.account_id, transfer_id, fresh)
        if shard is not None:
            await self._decide(shard, tenant_id, transfer, lambda plan: CaptureHold(hold_id, plan))
        await self._completed(tenant_id, transfer_id)
        return await self.get_hold(tenant_id, hold_id)

    async def void_hold(self, tenant_id: str, hold_id: str, key: Idempotency) -> Hold:
        """Voiding a voided hold returns it as it is: the command is idempotent, so retries are too."""
        await self._claim(tenant_id, "void_hold", key, hold_id)
        hold = await self.get_hold(tenant_id, hold_id)
        return await (await self._shard(tenant_id, hold.account_id)).submit(CloseHold(hold_id))

    async def get_hold(self, tenant_id: str, hold_id: str) -> Hold:
        hold = await self._item(tenant_id, (HOLD, CLOSED_HOLD), hold_id, ShardState.hold, HOLDS)
        if hold is None:
            raise not_found(Reason.HOLD_NOT_FOUND, f"no hold {hold_id}", hold_id=hold_id)
        return hold

    # Escrow

    async def create_escrow(self, tenant_id: str, command: EscrowCommand, key: Idempotency) -> Escrow:
        escrow_id = derived_id("es_", tenant_id, key.request_id or self._ids.new_id())
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
            self.clock.wall_ms(),
        )
        leg = Leg(command.buyer_account_id, command.escrow_account_id, command.amount_minor)
        transfer = new_transfer(transfer_id, key.request_id, command.currency, (leg,), f"escrow {escrow_id}")
        ahead = Ahead("release_time", command.release_time_ms, limits.escrow_window_max_ms)
        shard = await self._owner(tenant_id, command.buyer_account_id, transfer_id, fresh)
        if shard is not None:

            def fund(plan: TransferPlan) -> Command[Stage, Transfer]:
                return Debit(plan, key.body_sha256, escrow, ahead)

            await self._decide(shard, tenant_id, transfer, fund, escrow=escrow, ahead=ahead)
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
        request = key.request_id or self._ids.new_id()
        transfer_id = derived_id("tr_", tenant_id, f"{operation}\n{escrow_id}\n{request}")
        shard = await self._owner(tenant_id, escrow.escrow_account_id, transfer_id, fresh)
        if shard is not None:
            release = operation == "release_escrow"
            refused = None
            if not release:
                refund_minor = amount_minor or escrow.amount_minor
                refused = await self._payee_refusal(
                    tenant_id, escrow.buyer_account_id, refund_minor, escrow.currency
                )
            count = await self._shard_count(tenant_id)
            await shard.submit(
                SettleEscrow(escrow_id, transfer_id, key.request_id, amount_minor, release, count, refused)
            )
        await self._completed(tenant_id, transfer_id)
        return await self.get_escrow(tenant_id, escrow_id)

    async def dispute_escrow(self, tenant_id: str, escrow_id: str, key: Idempotency) -> Escrow:
        """A retry of a dispute the ledger applied answers the escrow as it is now (refunded since, say)."""
        fresh = await self._claim(tenant_id, "dispute_escrow", key, escrow_id)
        escrow = await self.get_escrow(tenant_id, escrow_id)
        shard = await self._shard(tenant_id, escrow.escrow_account_id)
        applied = not fresh and await self._requested(shard, key.request_id)
        return await shard.submit(
            DisputeEscrow(escrow_id, key.request_id, self._settings.request_ttl_s, applied)
        )

    async def get_escrow(self, tenant_id: str, escrow_id: str) -> Escrow:
        """An escrow opens where its funding credit lands: while that credit is on its way (after a
        crash, say), the escrow is DELIVERY_PENDING (retry), not NOT_FOUND."""
        escrow = await self._find_escrow(tenant_id, escrow_id)
        if escrow is not None:
            return escrow
        funding = await journal.find_transfer(self._backend, tenant_id, _funding_id(tenant_id, escrow_id))
        if funding is None or funding.failure is not None:
            raise not_found(Reason.ESCROW_NOT_FOUND, f"no escrow {escrow_id}", escrow_id=escrow_id)
        await self._completed(tenant_id, funding.transfer_id)
        escrow = await self._find_escrow(tenant_id, escrow_id)
        if escrow is None:
            raise unavailable(Reason.DELIVERY_PENDING, f"escrow {escrow_id} is still being funded; retry")
        return escrow

    async def _find_escrow(self, tenant_id: str, escrow_id: str) -> Escrow | None:
        kinds = (ESCROW, CLOSED_ESCROW)
        return await self._item(tenant_id, kinds, escrow_id, ShardState.escrow, ESCROWS)

    async def _item(
        self,
        tenant_id: str,
        kinds: tuple[str, str],
        item_id: str,
        in_memory: Callable[[ShardState, str], T | None],
        decoder: msgspec.json.Decoder[T],
    ) -> T | None:
        """An item of the shard that owns it (a hold lives with its payer, an escrow with its escrow
        account), found by looking at every shard: `kinds` are its row kinds while open and once closed.
        First every shard's open items: in its owner's memory (`in_memory`: with those it closed
        lately), or as stored where another process owns the shard. Then the closed ones, as stored.
        An item closes in one batch (its closed row written, its open row deleted), so one closing
        meanwhile is found either way."""
        open_kind, closed_kind = kinds
        count = await self._shard_count(tenant_id)
        for shard in range(count):
            try:
                item = in_memory(await self._current(tenant_id, shard), item_id)
            except ShardElsewhere:
                item = await self._stored_item(tenant_id, shard, open_kind, item_id, decoder)
            if item is not None:
                return item
        for shard in range(count):
            item = await self._stored_item(tenant_id, shard, closed_kind, item_id, decoder)
            if item is not None:
                return item
        return None

    async def _stored_item(
        self, tenant_id: str, shard: int, kind: str, item_id: str, decoder: msgspec.json.Decoder[T]
    ) -> T | None:
        row = await self._backend.read_row(SHARDS.partition(tenant_id, shard), (kind, item_id))
        return decoder.decode(record_blob(row)) if row is not None else None

    # Refunds of completed transfers

    async def create_refund(
        self, tenant_id: str, transfer_id: str, leg_index: int, amount_minor: int, key: Idempotency
    ) -> Refund:
        request = key.request_id or self._ids.new_id()
        refund_transfer_id = derived_id("tr_", tenant_id, f"refund\n{request}")
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

        if (
            not fresh
            and await journal.find_transfer(self._backend, tenant_id, refund_transfer_id) is not None
        ):
            return refund_of(await self._completed(tenant_id, refund_transfer_id))
        original = await self.get_transfer(tenant_id, transfer_id)
        if not 0 <= leg_index < len(original.legs):
            raise invalid("leg_index", f"transfer {transfer_id} has {len(original.legs)} legs")
        if original.state is TransferState.DEBITED:
            # Its credits are on their way: a state that passes, so the answer is "retry", never a refusal
            # that a retry of the same request would contradict once they landed. The owner of the
            # original's payer shard delivers what it owes (taken here if no process holds it).
            await self._shard(tenant_id, original.legs[0].debit_account_id)
            original = await self._completed(tenant_id, transfer_id)
            if original.state is TransferState.DEBITED:
                raise unavailable(
                    Reason.DELIVERY_PENDING,
                    f"transfer {transfer_id} is still crediting its payees; retry with the same request_id",
                )
        if original.state is not TransferState.COMPLETED:
            raise failed_precondition(Reason.INVALID_STATE, f"transfer {transfer_id} was not completed")
        leg = original.legs[leg_index]
        back = Leg(leg.credit_account_id, leg.debit_account_id, amount_minor)
        transfer = new_transfer(
            refund_transfer_id, key.request_id, original.currency, (back,), f"refund of {transfer_id}"
        )
        shard = await self._owner(tenant_id, back.debit_account_id, refund_transfer_id, fresh)
        if shard is not None:

            def refund(plan: TransferPlan) -> Command[Stage, Transfer]:
                window_end_ms = original.create_time_ms + self._settings.refund_window_s * 1000
                return RefundLeg(
                    transfer_id, leg_index, leg.amount_minor, plan, key.body_sha256, window_end_ms
                )

            await self._decide(shard, tenant_id, transfer, refund)
        return refund_of(await self._completed(tenant_id, refund_transfer_id))

    # Reads: events, reconciliation, transfers, statements

    async def watch_events(
        self, tenant_id: str, cursor: str, from_oldest: bool, wanted: EventFilter
    ) -> AsyncIterator[tuple[list[Event], str]]:
        count = await self._shard_count(tenant_id)
        seqs = events.decode_cursor(cursor, count)
        if seqs is None:
            seqs = [0] * count if from_oldest else await events.last_seqs(self._backend, tenant_id, count)
        signal = lambda: self.shards.commit_signal(tenant_id)  # noqa: E731
        watched = events.watch(
            self._backend, self.clock, commit_signal=signal, tenant_id=tenant_id, seqs=seqs, wanted=wanted
        )
        async for batch in watched:
            yield batch

    async def reconcile(self, tenant_id: str) -> ReconcileReport:
        return await reconcile(self._backend, tenant_id, self.clock)

    async def get_transfer(self, tenant_id: str, transfer_id: str) -> Transfer:
        transfer = await journal.find_transfer(self._backend, tenant_id, transfer_id)
        if transfer is None:
            raise not_found(Reason.TRANSFER_NOT_FOUND, f"no transfer {transfer_id}", transfer_id=transfer_id)
        return transfer

    async def list_entries(self, tenant_id: str, query: EntryQuery) -> tuple[list[Entry], int | None]:
        state = await self._account_state(tenant_id, query.account_id)
        return await statements.list_entries(self._backend, tenant_id, query, state.entry_seq)

    async def balance_at(self, tenant_id: str, account_id: str, time_ms: int) -> BalanceAt:
        state = await self._account_state(tenant_id, account_id)
        return await statements.balance_at(self._backend, tenant_id, account_id, time_ms, state.entry_seq)

    # Routing and checks

    async def _shard_count(self, tenant_id: str) -> int:
        count = await self.shards.shard_count(tenant_id)
        if tenant_id not in self._opened:
            self._opened.add(tenant_id)
            log.info("ledger opened", tenant_id=tenant_id, shard_count=count)
        return count

    async def _claim_buckets(self, tenant_id: str) -> int:
        return CLAIM_BUCKETS_PER_SHARD * await self._shard_count(tenant_id)

    async def _earlier_claims_until_ms(self, tenant_id: str) -> int:
        """Until when the tenant's claims kept in `payments_requests` may live: `request_ttl_s` after
        they moved (`CLAIMS_MOVED`); 0 for a tenant that never kept any there. Read once per tenant:
        only the data migration, before any server serves, writes it."""
        until_ms = self._earlier_until_ms.get(tenant_id)
        if until_ms is None:
            row = await self._backend.read_row(CLAIMS_MOVED.partition(tenant_id))
            until_ms = row.as_int("since_ms") + self._settings.request_ttl_s * 1000 if row is not None else 0
            self._earlier_until_ms[tenant_id] = until_ms
        return until_ms

    async def _current(self, tenant_id: str, shard: int) -> ShardState:
        """A shard's state for a reader, when this process owns it (ShardElsewhere when another does:
        readers do not wait for its lease, they read what it stored)."""
        return await (await self.shards.actor(tenant_id, shard, wait=False)).current()

    async def _shard(self, tenant_id: str, account_id: str) -> Shard:
        return await self.shards.actor(tenant_id, shard_of(account_id, await self._shard_count(tenant_id)))

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

    async def _claim(self, tenant_id: str, operation: str, key: Idempotency, target_id: str) -> bool:
        """Claim a request id; False when this same request was claimed before (a retry)."""
        claim = await self._claims.claim(
            tenant_id, key.request_id, operation, key.body_sha256, target_id=target_id
        )
        return claim.fresh

    async def _requested(self, shard: Shard, request_id: str) -> bool:
        """Whether an earlier owner of the (owned) shard applied a request that is not a transfer: its
        marker is stored with the change. What this owner applies it remembers (`Stage.requested`). The
        answer is the command's, from the shard, which has applied every commit it stored."""
        return await self._backend.read_row(shard.partition, ("request", request_id)) is not None


def _check_payees(plan: TransferPlan, payees: Mapping[str, AccountState | ApiError | None]) -> None:
    """Raise the first refusal of the plan's credits to other shards, checked on their payees as read
    (`Ledger._payees`): the payee's shard could not be read, the payee does not exist, or it refuses."""
    for credit in plan.remote:
        payee = payees[credit.account_id]
        if isinstance(payee, ApiError):
            raise payee
        if payee is None:
            raise _no_account(credit.account_id)
        check_credit(payee, credit.amount_minor, plan.transfer.currency)


def _debit_or_reject(
    plan: TransferPlan, payees: Mapping[str, AccountState | ApiError | None], body_sha256: str
) -> Debit | Reject | ApiError:
    """The command that decides a batch item in its payer's shard: the debit of its plan, or the refusal
    its payee checks made (kept, like `Ledger._decide`'s); an error that is not final is the item's
    answer. The checks are `Ledger._plan`'s, on the payees read for the whole batch (`Ledger._payees`)."""
    try:
        _check_payees(plan, payees)
    except ApiError as error:
        if error.code not in _FINAL_CODES:
            return error
        return Reject(plan.transfer, error)
    return Debit(plan, body_sha256)


def _no_account(account_id: str) -> ApiError:
    return not_found(Reason.ACCOUNT_NOT_FOUND, f"no account {account_id}", account_id=account_id)


async def _caught(answer: Awaitable[Transfer]) -> Transfer | ApiError:
    """A transfer's answer, or its refusal."""
    try:
        return await answer
    except ApiError as error:
        return error


def _funding_id(tenant_id: str, escrow_id: str) -> str:
    return derived_id("tr_", tenant_id, f"escrow-fund\n{escrow_id}")


def transfer_id_of(tenant_id: str, request_id: str) -> str:
    """Transfer ids derive from the request id, so every retry of a request names the same transfer."""
    return derived_id("tr_", tenant_id, request_id)
