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
import hashlib
import json
import zlib
from collections.abc import Awaitable

import structlog
from jubao.errors import Reason

from jubao_server import limits
from jubao_server.errors import ApiError, already_exists, invalid, not_found
from jubao_server.invariants import ensure
from jubao_server.payments.api import (
    AccountChange,
    AccountView,
    EntryQuery,
    Idempotency,
    OpenAccountCommand,
    TransferCommand,
)
from jubao_server.payments.commands import (
    Credit,
    Debit,
    Delivered,
    OpenAccount,
    Record,
    RemoteCredit,
    UpdateAccount,
    transfer_from_record,
    transfer_of,
)
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.model import Entry, EntryKind, Transfer, TransferState
from jubao_server.payments.shard import Records, ShardActor, now_ms
from jubao_server.payments.state import AccountState, check_credit
from jubao_server.payments.tables import ENTRIES, REQUESTS, TENANT_CONFIG, TRANSFERS
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
)

log = structlog.get_logger("jubao.payments")

delivery_wait_s = 2.0
delivery_attempts_max = 6
delivery_backoff_s = 0.05


class Ledger:
    def __init__(self, backend: StorageBackend, settings: PaymentsSettings) -> None:
        self._backend = backend
        self._settings = settings
        self._actors: dict[tuple[str, int], ShardActor] = {}
        self._starting: dict[tuple[str, int], asyncio.Lock] = {}
        self._shard_counts: dict[str, int] = {}
        self._completions: dict[str, asyncio.Future[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._limit = asyncio.Semaphore(limits.ledger_materialize_concurrency_max)

    async def start(self) -> None:
        """Nothing to load up front: shards are acquired on first use."""

    async def stop(self) -> None:
        for actor in list(self._actors.values()):
            await actor.stop()
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
        """The committed state of an account, from the shard that owns it."""
        actor = await self._actor(tenant_id, account_id)
        state = actor.accounts.get(account_id)
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
            actor = await self._actor_of_shard(tenant_id, index)
            ids = (
                sorted(a for a in actor.accounts if a > after_id)
                if index == int(shard)
                else sorted(actor.accounts)
            )
            for account_id in ids[: limit - len(views)]:
                state = actor.accounts[account_id]
                views.append(AccountView(state.account, state.balance))
            if len(views) == limit:
                last = views[-1].account.account_id
                return views, f"{index}/{last}"
        return views, None

    async def update_account(
        self, tenant_id: str, account_id: str, change: AccountChange, key: Idempotency
    ) -> AccountView:
        """A replayed request id changes nothing again and returns the account as it is now."""
        if not await self._claim(tenant_id, "update_account", key, account_id):
            return await self.get_account(tenant_id, account_id)
        actor = await self._actor(tenant_id, account_id)
        result = await actor.submit(UpdateAccount(account_id, change))
        ensure(isinstance(result, AccountView), "update_account returns an account")
        return result  # type: ignore[return-value]

    # Transfers

    async def create_transfer(self, tenant_id: str, command: TransferCommand, key: Idempotency) -> Transfer:
        ensure(bool(key.request_id), "transfers need a request id (checked by the service)")
        transfer_id = transfer_id_of(tenant_id, key.request_id)
        if not await self._claim(tenant_id, "transfer", key, transfer_id):
            earlier = await self._find_transfer(tenant_id, transfer_id)
            if earlier is not None:
                return earlier
        transfer = Transfer(
            transfer_id,
            key.request_id,
            command.currency,
            command.legs,
            command.memo,
            TransferState.DEBITED,
            0,
        )
        debit = await self._debit_command(tenant_id, transfer, key.body_sha256)
        payer = await self._actor(tenant_id, command.legs[0].debit_account_id)
        result = await payer.submit(debit)
        ensure(isinstance(result, Transfer), "a debit returns its transfer")
        done = self._completions.get(transfer_id)
        if done is not None:
            await asyncio.wait([done], timeout=delivery_wait_s)
        return await self._find_transfer(tenant_id, transfer_id) or result  # type: ignore[return-value]

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
        self._shard_counts[tenant_id] = count
        return count

    async def _actor(self, tenant_id: str, account_id: str) -> ShardActor:
        return await self._actor_of_shard(tenant_id, shard_of(account_id, await self._shard_count(tenant_id)))

    async def _actor_of_shard(self, tenant_id: str, shard: int) -> ShardActor:
        key = (tenant_id, shard)
        actor = self._actors.get(key)
        if actor is not None and not actor.lost:
            return actor
        async with self._starting.setdefault(key, asyncio.Lock()):
            actor = self._actors.get(key)
            if actor is None or actor.lost:
                actor = await self._acquire(tenant_id, shard)
        return actor

    async def _acquire(self, tenant_id: str, shard: int) -> ShardActor:
        ensure(len(self._actors) < limits.ledger_actors_max, "more ledger shards than ledger_actors_max")
        actor = ShardActor(self._backend, tenant_id, shard, self._settings, self)
        await self.materialize(actor, await actor.acquire())
        self._actors[(tenant_id, shard)] = actor
        actor.start()
        for transfer_id, owed in actor.outbox.items():
            self._spawn(self._deliver(actor, transfer_id, owed, recovering=True))
        return actor

    async def _debit_command(self, tenant_id: str, transfer: Transfer, body_sha256: str) -> Debit:
        count = await self._shard_count(tenant_id)
        payer_shard = shard_of(transfer.legs[0].debit_account_id, count)
        local: set[int] = set()
        remote: list[RemoteCredit] = []
        for index, leg in enumerate(transfer.legs):
            shard = shard_of(leg.credit_account_id, count)
            if shard == payer_shard:
                local.add(index)
                continue
            await self._check_remote_payee(
                tenant_id, leg.credit_account_id, leg.amount_minor, transfer.currency
            )
            remote.append(RemoteCredit(index, leg.credit_account_id, leg.amount_minor, shard))
        return Debit(transfer, body_sha256, frozenset(local), tuple(remote))

    async def _check_remote_payee(
        self, tenant_id: str, account_id: str, amount_minor: int, currency: str
    ) -> None:
        check_credit(await self._account_state(tenant_id, account_id), amount_minor, currency)

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

    async def _find_transfer(self, tenant_id: str, transfer_id: str) -> Transfer | None:
        row = await self._backend.read_row(TRANSFERS.partition(tenant_id, transfer_id))
        return _transfer(transfer_id, row) if row is not None else None

    # After a commit: materialize records, deliver credits (the shards' CommitListener)

    async def materialize(self, actor: ShardActor, records: Records) -> None:
        delivered = {r["transfer_id"] for _, r in records if r.get("type") == "delivered"}
        writes: list[Awaitable[object]] = []
        for _, record in records:
            writes += self._materialization(actor.tenant_id, record, delivered)
        for chunk_start in range(0, len(writes), limits.ledger_materialize_concurrency_max):
            await asyncio.gather(
                *writes[chunk_start : chunk_start + limits.ledger_materialize_concurrency_max]
            )

    def committed(self, actor: ShardActor, records: Records) -> None:
        for _, record in records:
            transfer = transfer_of(record)
            if transfer is not None and transfer.transfer_id in actor.outbox:
                owed = actor.outbox[transfer.transfer_id]
                self._completions.setdefault(transfer.transfer_id, asyncio.get_running_loop().create_future())
                self._spawn(self._deliver(actor, transfer.transfer_id, owed, recovering=False))

    def _materialization(
        self, tenant_id: str, record: Record, delivered: set[str]
    ) -> list[Awaitable[object]]:
        """The idempotent writes of one record. A transfer delivered in the same set is written completed,
        so the writes of one set never race on a transfer's state."""
        writes: list[Awaitable[object]] = [
            self._backend.write(_entry_batch(tenant_id, posting, record))
            for posting in record.get("postings", [])
        ]
        transfer = transfer_of(record)
        if transfer is not None:
            state = TransferState.COMPLETED if transfer.transfer_id in delivered else transfer.state
            transfer_row = _transfer_batch(tenant_id, transfer, record["body_sha256"], state)
            writes.append(self._backend.write(transfer_row))
        elif record.get("type") == "delivered":
            writes.append(self._mark_completed(tenant_id, record["transfer_id"]))
        return writes

    async def _mark_completed(self, tenant_id: str, transfer_id: str) -> None:
        put = Put((), {"state": TransferState.COMPLETED.value})
        await self._backend.write(Batch(TRANSFERS.partition(tenant_id, transfer_id), (put,)))
        done = self._completions.pop(transfer_id, None)
        if done is not None and not done.done():
            done.set_result(None)

    async def _deliver(self, payer: ShardActor, transfer_id: str, owed: Record, recovering: bool) -> None:
        """Apply each owed credit once, then drop the outbox entry. A failed attempt (a shard that moved,
        storage trouble) is retried with backoff; retries check the credit marker first."""
        transfer = owed["transfer"]
        for attempt in range(delivery_attempts_max):
            try:
                for item in owed["credits"]:
                    credit = Credit(
                        transfer_id, transfer["currency"], RemoteCredit(**item), self._settings.wal_ttl_s
                    )
                    payee = await self._actor_of_shard(payer.tenant_id, credit.credit.shard)
                    if not (recovering or attempt) or not await self._credited(payee, credit):
                        await payee.submit(credit)
                owner = await self._actor_of_shard(payer.tenant_id, payer.shard)
                await owner.submit(Delivered(transfer_id))
                return
            except (ApiError, StorageError) as error:
                log.warning(
                    "credit delivery failed; retrying",
                    transfer_id=transfer_id,
                    attempt=attempt,
                    error=str(error),
                )
                await asyncio.sleep(delivery_backoff_s * 2**attempt)
        log.error(
            "credit delivery gave up; the payer shard delivers again when it is next acquired",
            transfer_id=transfer_id,
        )

    async def _credited(self, payee: ShardActor, command: Credit) -> bool:
        row = await self._backend.read_row(payee.partition, ("credit", command.marker_key))
        return row is not None

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


def shard_of(account_id: str, shard_count: int) -> int:
    return zlib.crc32(account_id.encode()) % shard_count


def transfer_id_of(tenant_id: str, request_id: str) -> str:
    """Transfer ids derive from the request id, so every retry of a request names the same transfer."""
    return "tr_" + hashlib.sha256(f"{tenant_id}\n{request_id}".encode()).hexdigest()[:32]


def _entry_batch(tenant_id: str, posting: Record, record: Record) -> Batch:
    transfer_id = (
        record["transfer"]["transfer_id"] if record.get("type") == "transfer" else record["transfer_id"]
    )
    values: dict[str, Value] = {
        "transfer_id": transfer_id,
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
