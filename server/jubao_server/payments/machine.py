"""Payments as a state machine on the shard runtime (`jubao_server.shards`): its state (accounts, holds,
escrows, refund tallies), how it is loaded from and stored as rows of `payments_shards`, its journal,
its cross-shard credits and what falls due as time passes. The commands are in `commands.py`.

Open holds and escrows are rows of kinds `hold` and `escrow`, loaded with the accounts when a shard is
acquired. A hold or escrow that closes (or is refused) moves to `hold_closed` / `escrow_closed`, kept
`request_ttl_s` for the retries of its requests and read only when a command needs it; refund tallies
(`refunded`) are read the same way, and the owner keeps the latest it used. So acquiring a shard, and
its memory, cost what is open, not what the shard did in the last days."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from jubao_server import limits
from jubao_server.bounded import keep_recent
from jubao_server.errors import ApiError
from jubao_server.payments import commands, journal, sweep
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.model import Account, AccountKind, AccountPolicy
from jubao_server.payments.records import (
    ENCODER,
    ESCROWS,
    HOLDS,
    TALLIES,
    CreditMessage,
    OutboxEntry,
    Record,
    messages_of,
)
from jubao_server.payments.state import AccountState, Found, ShardState, Stage
from jubao_server.payments.tables import CREDIT_MARKERS, SHARDS, TENANT_CONFIG
from jubao_server.shards.machine import ShardSettings
from jubao_server.shards.stage import Command, ShardId
from jubao_server.shards.wal import record_blob
from jubao_server.storage.contract import Delete, Following, Key, Put, Row, Value

ACCOUNT = "account"
HOLD = "hold"
ESCROW = "escrow"
CLOSED_HOLD = "hold_closed"
CLOSED_ESCROW = "escrow_closed"
REFUNDED = "refunded"

ItemT = TypeVar("ItemT")


def shard_settings(settings: PaymentsSettings) -> ShardSettings:
    return ShardSettings(
        shard_count=settings.shard_count,
        group_commit_max=settings.group_commit_max,
        shard_queue_max=settings.shard_queue_max,
        wal_ttl_s=settings.wal_ttl_s,
        shard_lease_ms=settings.shard_lease_ms,
        inbox_poll_ms=settings.inbox_poll_ms,
    )


class PaymentsMachine:
    shard_table = SHARDS
    config_table = TENANT_CONFIG
    state_kinds: tuple[str, ...] = (ACCOUNT, HOLD, ESCROW)
    # A credit delivered from another shard leaves this marker: delivered twice, it lands once.
    marker_kind = CREDIT_MARKERS
    record_type = Record
    outbox_type = OutboxEntry
    message_type = CreditMessage

    def __init__(self, settings: PaymentsSettings) -> None:
        self._closed_ttl_s = settings.request_ttl_s

    def load(
        self, shard: ShardId, rows: Mapping[str, Sequence[Row]], recovered: Sequence[Record]
    ) -> ShardState:
        state = ShardState(
            accounts={r.as_text("row_key"): account_of_row(r) for r in rows[ACCOUNT]},
            holds={r.as_text("row_key"): HOLDS.decode(record_blob(r)) for r in rows[HOLD]},
            escrows={r.as_text("row_key"): ESCROWS.decode(record_blob(r)) for r in rows[ESCROW]},
            tallies={},
        )
        committed = {
            r.transfer.transfer_id: r.transfer.transfer() for r in recovered if r.transfer is not None
        }
        keep_recent(state.transfers, committed, limits.ledger_recent_transfers_max)
        return state

    def fetches(self, state: ShardState, command: Command[Stage, Any]) -> Sequence[Key]:
        needs = commands.needs(command)
        keys: list[Key] = [(CLOSED_HOLD, h) for h in needs.holds if state.hold(h) is None]
        keys += [(CLOSED_ESCROW, e) for e in needs.escrows if state.escrow(e) is None]
        keys += [(REFUNDED, t) for t in needs.tallies if t not in state.tallies]
        return keys

    def stage(self, state: ShardState, now_ms: int, fetched: Mapping[Key, Row]) -> Stage:
        found = Found()
        for (kind, key), row in fetched.items():
            blob = record_blob(row)
            if kind == CLOSED_HOLD:
                found.holds[str(key)] = HOLDS.decode(blob)
            elif kind == CLOSED_ESCROW:
                found.escrows[str(key)] = ESCROWS.decode(blob)
            elif kind == REFUNDED:
                found.tallies[str(key)] = TALLIES.decode(blob)
        return Stage(state, now_ms, found)

    def refused(self, stage: Stage, command: Command[Stage, Any], error: ApiError) -> ApiError:
        return commands.refused(stage, command, error)

    def receive(self, stage: Stage, message: CreditMessage) -> None:
        commands.receive_credits(stage, message.parts())

    def settled(self, stage: Stage, key: str, entry: OutboxEntry) -> None:
        commands.settle_transfers(stage, key, entry)

    def messages(self, key: str, entry: OutboxEntry) -> Sequence[CreditMessage]:
        return messages_of(key, entry)

    def items(self, key: str, entry: OutboxEntry) -> Sequence[str]:
        return [owed.transfer.transfer_id for owed in entry.owed()]

    def rows(self, stage: Stage) -> tuple[list[Put], list[Delete]]:
        closed_ttl_s, now_ms = self._closed_ttl_s, stage.now_ms
        puts = [Put((ACCOUNT, a), account_values(s, stage.stored(a))) for a, s in stage.touched.items()]
        deletes: list[Delete] = []
        for key, hold in stage.holds.items():
            item = _Item(HOLD, CLOSED_HOLD, key, ENCODER.encode(hold))
            item.rows(puts, deletes, sweep.hold_open(hold), stage.held_before(key), closed_ttl_s)
        for key, escrow in stage.escrows.items():
            item = _Item(ESCROW, CLOSED_ESCROW, key, ENCODER.encode(escrow))
            item.rows(puts, deletes, sweep.escrow_open(escrow), stage.escrowed_before(key), closed_ttl_s)
        puts += [
            Put(
                (REFUNDED, key),
                {"record": ENCODER.encode(t)},
                ttl_s=sweep.tally_ttl_s(t, now_ms, closed_ttl_s),
            )
            for key, t in stage.tallies.items()
        ]
        return puts, deletes

    def absorb(self, state: ShardState, stage: Stage) -> None:
        state.accounts.update(stage.touched)
        closed_max = limits.ledger_recent_closed_max
        _absorb_items(state.holds, state.closed_holds, stage.holds, sweep.hold_open, closed_max)
        _absorb_items(state.escrows, state.closed_escrows, stage.escrows, sweep.escrow_open, closed_max)
        keep_recent(state.tallies, stage.tallies, limits.ledger_recent_tallies_max)
        keep_recent(state.transfers, stage.new_transfers, limits.ledger_recent_transfers_max)
        keep_recent(state.requests, stage.new_requests, limits.ledger_recent_transfers_max)

    def journal(self, shard: ShardId, records: Sequence[tuple[int, Record]]) -> list[Following]:
        return journal.materialize(shard, records)

    def upkeep(self, state: ShardState, shard: ShardId, now_ms: int) -> Sequence[Command[Stage, Any]]:
        sweep.forget_expired_tallies(state, now_ms)
        return sweep.due_commands(state, shard.scope, shard.shard_count, now_ms)


def _absorb_items(
    open_items: dict[str, ItemT],
    closed_items: dict[str, ItemT],
    changed: Mapping[str, ItemT],
    is_open: Callable[[ItemT], bool],
    closed_max: int,
) -> None:
    """Fold a commit's holds (or escrows) into the state: an open one among the open, a closed one out
    of them and among the latest closed (at most `closed_max`)."""
    for key, item in changed.items():
        if is_open(item):
            open_items[key] = item
        else:
            open_items.pop(key, None)
            keep_recent(closed_items, {key: item}, closed_max)


@dataclasses.dataclass(frozen=True, slots=True)
class _Item:
    """A hold or an escrow as rows: its record under `open_kind` while open, under `closed_kind` (kept
    for the retries of its requests) once closed."""

    open_kind: str
    closed_kind: str
    key: str
    record: bytes

    def rows(
        self, puts: list[Put], deletes: list[Delete], is_open: bool, stored_open: bool, ttl_s: int
    ) -> None:
        """Its put; closed, also the delete of its open row when one is stored (`stored_open`)."""
        values: dict[str, Value] = {"record": self.record}
        if is_open:
            puts.append(Put((self.open_kind, self.key), values))
            return
        puts.append(Put((self.closed_kind, self.key), values, ttl_s=ttl_s))
        if stored_open:
            deletes.append(Delete((self.open_kind, self.key)))


def account_values(state: AccountState, stored: AccountState | None) -> dict[str, Value]:
    """An account's columns, all of them for a new account or a new version (an open, an update) and
    only its balance's otherwise (`stored`: the account as stored until now)."""
    account, policy = state.account, state.account.policy
    balance: dict[str, Value] = {
        "ledger_minor": state.ledger_minor,
        "held_minor": state.held_minor,
        "entry_seq": state.entry_seq,
        "outflow_day": state.outflow_day,
        "outflow_minor": state.outflow_minor,
        "update_time_ms": account.update_time_ms,
    }
    if stored is not None and stored.account.version == account.version:
        return balance
    return balance | {
        "currency": account.currency,
        "account_kind": account.kind.value,
        "display_name": account.display_name,
        "allow_negative": policy.allow_negative,
        "debits_frozen": policy.debits_frozen,
        "credits_frozen": policy.credits_frozen,
        "single_payment_limit_minor": policy.single_payment_limit_minor,
        "daily_outflow_limit_minor": policy.daily_outflow_limit_minor,
        "create_time_ms": account.create_time_ms,
        "version": account.version,
        "open_request_id": state.open_request_id,
    }


def account_of_row(row: Row) -> AccountState:
    policy = AccountPolicy(
        allow_negative=bool(row["allow_negative"]),
        debits_frozen=bool(row["debits_frozen"]),
        credits_frozen=bool(row["credits_frozen"]),
        single_payment_limit_minor=row.as_int("single_payment_limit_minor"),
        daily_outflow_limit_minor=row.as_int("daily_outflow_limit_minor"),
    )
    account = Account(
        account_id=row.as_text("row_key"),
        currency=row.as_text("currency"),
        kind=AccountKind(row.as_text("account_kind")),
        policy=policy,
        display_name=row.as_text("display_name"),
        create_time_ms=row.as_int("create_time_ms"),
        update_time_ms=row.as_int("update_time_ms"),
        version=row.as_int("version"),
    )
    return AccountState(
        account,
        row.as_int("ledger_minor"),
        row.as_int("held_minor"),
        row.as_int("entry_seq"),
        row.as_int("outflow_day"),
        row.as_int("outflow_minor"),
        row.as_text("open_request_id"),
    )
