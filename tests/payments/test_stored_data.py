"""A ledger store written before the records were typed still reads back: its write-ahead records (every
kind), outbox and inbox entries, holds, escrows, refund tallies, request markers and request claims, as
stored by that code (`fixtures/store_before_typed_records.json`, dumped from a ledger with a credit in
flight), are recovered, re-materialized and answered by today's ledger, and old request ids are still
recognised. An outbox entry stored before credits travelled per receiving shard, partly delivered, is
delivered once. On SQLite and memory: a store of its own per test (the fixture's ids derive from its
tenant)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jubao.errors import Reason
from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.payments.api import EntryQuery, Idempotency, TransferCommand
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.data_migrations import mark_claims_moved
from jubao_server.payments.events import EventFilter, read_events
from jubao_server.payments.ledger import Ledger, transfer_id_of
from jubao_server.payments.model import AccountChange, Leg, TransferState
from jubao_server.payments.reconcile import reconcile
from jubao_server.payments.records import CreditMessage
from jubao_server.payments.tables import REQUESTS, SHARDS, TENANT_CONFIG
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import NO_FAULTS, Batch, Bound, Put, RowQuery, StorageBackend, Value
from jubao_server.tenancy.model import Product, Quota, Tenant, TenantKind
from jubao_server.tenancy.store import TenantStore

from tests.backends import open_test_backend
from tests.ledger.support import completed, ids_in_distinct_shards, open_account, pay

FIXTURE = Path(__file__).parent / "fixtures" / "store_before_typed_records.json"
STORED: dict[str, Any] = json.loads(FIXTURE.read_text())
TENANT: str = STORED["tenant"]
ACCOUNTS: dict[str, str] = STORED["accounts"]
settle_polls_max = 100
settle_poll_s = 0.05


class ShiftedClock:
    """The system clock moved back to when the fixture was written, so its holds and escrows are open."""

    def __init__(self, now_ms: int) -> None:
        self._offset_ms = now_ms - SYSTEM_CLOCK.wall_ms()

    def wall_ms(self) -> int:
        return SYSTEM_CLOCK.wall_ms() + self._offset_ms

    def monotonic_s(self) -> float:
        return SYSTEM_CLOCK.monotonic_s()

    async def sleep(self, delay_s: float) -> None:
        await SYSTEM_CLOCK.sleep(delay_s)


@pytest.fixture(params=("sqlite", "memory"))
async def stored(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    """A backend holding the fixture's rows, every record not yet materialized (`materialized_seq` 0)."""
    backend = await open_test_backend(request.param, tmp_path, NO_FAULTS)
    try:
        await migrate(backend)
        for shard in STORED["shards"]:
            static = shard["static"] | {"materialized_seq": 0, "lease_until_ms": 0}
            puts = tuple(Put((row["row_kind"], row["row_key"]), _values(row)) for row in shard["rows"])
            partition = SHARDS.partition(TENANT, *shard["partition"])
            await backend.write(Batch(partition, puts, static_values=static))
        for claim in STORED["requests"]:
            values = {k: v for k, v in claim.items() if k != "request_id"}
            await backend.write(Batch(REQUESTS.partition(TENANT, claim["request_id"]), (Put((), values),)))
        config = Put((), STORED["tenant_config"])
        await backend.write(Batch(TENANT_CONFIG.partition(TENANT), (config,)))
        quota = Quota(requests_per_s=10, burst_requests=10, concurrent_calls_max=2)
        tenant = Tenant(TENANT, "Stored", TenantKind.BANK, frozenset({Product.PAYMENTS}), quota)
        assert await TenantStore(backend, SYSTEM_CLOCK).create_tenant(tenant) is not None
        assert await mark_claims_moved(backend) == 1, "the upgrade's data migration finds the old claims"
        yield backend
    finally:
        await backend.close()


def _values(row: dict[str, Any]) -> dict[str, Value]:
    values: dict[str, Value] = {k: v for k, v in row.items() if k not in ("row_kind", "row_key")}
    if "record" in values:
        values["record"] = str(values["record"]).encode()
    return values


async def test_a_store_written_before_typed_records_reads_back(stored: StorageBackend) -> None:
    clock = ShiftedClock(STORED["tenant_config"]["create_time_ms"] + 60_000)
    ledger = Ledger(
        stored, PaymentsSettings(shard_count=STORED["shard_count"], shard_lease_ms=1_000), clock=clock
    )
    report = await reconcile(stored, TENANT, clock)
    for _ in range(settle_polls_max):
        await ledger.list_accounts(TENANT, None, 10)
        report = await reconcile(stored, TENANT, clock)
        if report.in_flight_minor == 0 and not report.moving:
            break
        await asyncio.sleep(settle_poll_s)
    assert report.clean and report.in_flight_minor == 0, report.discrepancies
    balances = {
        name: (await ledger.get_account(TENANT, account)).balance for name, account in ACCOUNTS.items()
    }
    assert {name: (b.ledger_minor, b.held_minor) for name, b in balances.items()} == {
        "bank": (-9_990, 0),
        "buyer": (8_120, 700),
        "seller": (970, 0),
        "pool": (900, 0),
    }
    bank, buyer, seller = ACCOUNTS["bank"], ACCOUNTS["buyer"], ACCOUNTS["seller"]
    split = TransferCommand("CNY", (Leg(buyer, seller, 400), Leg(buyer, bank, 5)), "split")
    paid = await ledger.create_transfer(TENANT, split, Idempotency("pay-1", "p1"))
    assert (paid.transfer_id, paid.state) == (transfer_id_of(TENANT, "pay-1"), TransferState.COMPLETED)
    with pytest.raises(ApiError) as reused:
        await ledger.create_transfer(TENANT, split, Idempotency("pay-1", "another body"))
    assert (reused.value.code, reused.value.reason) == (
        ErrorCode.ALREADY_EXISTS,
        Reason.REQUEST_ID_REUSED,
    )
    too_much = TransferCommand("CNY", (Leg(seller, buyer, 10**9),), "too much")
    with pytest.raises(ApiError) as refused:
        await ledger.create_transfer(TENANT, too_much, Idempotency("pay-2", "p2"))
    assert refused.value.reason == Reason.INSUFFICIENT_FUNDS
    renamed = await ledger.update_account(
        TENANT, seller, AccountChange(display_name="x"), Idempotency("update-1", "u1")
    )
    assert (renamed.account.display_name, renamed.account.version) == ("Seller Ltd", 2)
    entries, _ = await ledger.list_entries(TENANT, EntryQuery(seller, None, None, None, 100))
    assert [e.balance_after_minor for e in entries][-1] == 970
    # The stored records, then the split's debit and, once its entry settles at its payer's next
    # commit or upkeep tick, its completion.
    expected = sum(len([r for r in s["rows"] if r["row_kind"] == "wal"]) for s in STORED["shards"]) + 2
    events = []
    for _ in range(settle_polls_max):
        events = await read_events(stored, TENANT, [0] * STORED["shard_count"], 500)
        if len(events) >= expected:
            break
        await asyncio.sleep(settle_poll_s)
    assert len(events) == expected
    assert [e for e in events if EventFilter(account_id=seller).matches(e)]
    items = [(r["row_kind"], r["row_key"]) for s in STORED["shards"] for r in s["rows"]]
    holds = [await ledger.get_hold(TENANT, key) for kind, key in items if kind == "hold"]
    assert sorted(h.state.value for h in holds) == ["captured", "held", "rejected", "voided"]
    escrows = [await ledger.get_escrow(TENANT, key) for kind, key in items if kind == "escrow"]
    assert sorted((e.state.value, e.refunded_minor) for e in escrows) == [("disputed", 100), ("released", 0)]
    await ledger.stop()


async def test_an_outbox_entry_of_one_credit_per_message_is_delivered_once(stored: StorageBackend) -> None:
    """An outbox entry as stored before credits travelled per receiving shard (`transfer`, `credits`),
    one of its two credits landed by then under its per-credit marker: the next owner of the payer's
    shard delivers the other one alone, and the transfer completes with each credit applied once."""
    tenant, shard_count = "old-outbox", 4
    settings = PaymentsSettings(shard_count=shard_count, shard_lease_ms=1_000)
    payer, payee_shard_account = ids_in_distinct_shards("acct", shard_count, 2)
    payee_shard = shard_of(payee_shard_account, shard_count)
    payees = [a for a in (f"payee-{i}" for i in range(100)) if shard_of(a, shard_count) == payee_shard][:2]
    stalled = Ledger(stored, settings)
    await open_account(stalled, tenant, payer, allow_negative=True)
    for payee in payees:
        await open_account(stalled, tenant, payee)
    stalled.shards.deliveries.start = lambda sender, key, entry, fresh=False: None  # type: ignore[method-assign,misc]
    paid = await pay(stalled, tenant, payer, (payees[0], 30), (payees[1], 40))
    payer_shard = stalled.shards.actors[(tenant, shard_of(payer, shard_count))]
    (owed,) = payer_shard.outbox[paid.transfer_id].owed()
    as_stored_then = {
        "credits": msgspec.to_builtins(owed.credits),
        "transfer": msgspec.to_builtins(owed.transfer),
    }
    row = Put(("outbox", paid.transfer_id), {"record": json.dumps(as_stored_then).encode()})
    await stored.write(Batch(payer_shard.partition, (row,)))
    landed = CreditMessage(transfer_id=paid.transfer_id, currency=paid.currency, credit=owed.credits[0])
    await stalled.shards.actors[(tenant, payee_shard)].receive(landed)
    await stalled.stop()
    assert (await reconcile(stored, tenant, SYSTEM_CLOCK)).in_flight_minor == 40
    delivering = Ledger(stored, settings)
    await delivering.get_account(tenant, payer)
    transfer = await completed(
        delivering, tenant, paid.transfer_id, polls_max=settle_polls_max, poll_s=settle_poll_s
    )
    assert transfer.state is TransferState.COMPLETED
    assert [(await delivering.get_account(tenant, p)).balance.ledger_minor for p in payees] == [30, 40]
    query = RowQuery(
        SHARDS.partition(tenant, payee_shard),
        lower=Bound(("credit",), inclusive=True),
        upper=Bound(("credit",), inclusive=True),
        limit=10,
    )
    markers = [r.as_text("row_key") for r in (await stored.read_page(query)).rows]
    assert markers == [f"{paid.transfer_id}:0", f"{paid.transfer_id}:1"]
    report = await delivering.reconcile(tenant)
    assert report.clean and report.in_flight_minor == 0, report
    await delivering.stop()
