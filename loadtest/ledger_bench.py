"""The ledger's own ceiling, in this process: `Ledger.create_transfers` in batches and
`Ledger.create_transfer` one at a time, on a migrated backend, with no gRPC, no call pipeline and no
clients on the same cores.

Beside `payments_transfer_batch_per_s` and `payments_transfer_unary_per_s` (through a server, from the
harness's client processes) these say how much of a payment's cost is the ledger and its storage and how
much the RPC layer and the clients: the profiles of issue 14 were taken this way, and this makes them part
of every bench run. CPU per transfer is this process's (`getrusage`: the event loop and the storage
engine's threads; on Cassandra, not the nodes'), with the garbage collector as a server process has it
(`HeapFreezer`) while the figures are measured. Every account may go negative, so no transfer is refused;
every transfer must be answered COMPLETED, or DEBITED when its credit to another shard was still in
flight when the call's bounded wait for it ended (a loaded machine does that: the figures say how many),
and Reconcile must find the ledger clean at the end, once those credits landed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import resource
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

from jubao_server.clock import Clock
from jubao_server.invariants import ensure, violated
from jubao_server.payments.api import Idempotency, TransferCommand
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.model import (
    AccountKind,
    AccountPolicy,
    Leg,
    OpenAccountCommand,
    Transfer,
    TransferState,
)
from jubao_server.platform.collector import HeapFreezer
from jubao_server.storage.contract import StorageBackend

from loadtest.report import Figure, figure

CURRENCY: Final = "CNY"
SEED: Final = 20_261_203
# How long the credits of the transfers answered DEBITED may take to land before Reconcile.
SETTLE_WAIT_S: Final = 60.0
# Accounts opened at once while setting up.
OPEN_CONCURRENCY: Final = 250
Item = tuple[TransferCommand, Idempotency]
# What a call may answer a bench transfer: committed, its credits landed or still in flight.
ANSWERED: Final = frozenset({TransferState.COMPLETED, TransferState.DEBITED})


@dataclasses.dataclass(frozen=True)
class LedgerPlan:
    """What the in-process figures run: `batches` batches of `batch_size` (`batches_in_flight` at once),
    then `unary_transfers` single transfers (`unary_in_flight` at once), among `accounts` accounts."""

    accounts: int = 10_000
    shard_count: int = 16
    batch_size: int = 1_000
    batches: int = 10
    batches_in_flight: int = 2
    unary_transfers: int = 2_000
    unary_in_flight: int = 8


@dataclasses.dataclass(frozen=True)
class Measured:
    transfers: int
    seconds: float
    cpu_s: float
    # The transfers answered DEBITED: the call's wait for their credits ended first.
    debited: tuple[str, ...]

    @property
    def per_s(self) -> float:
        return self.transfers / self.seconds

    @property
    def cpu_us_per_transfer(self) -> float:
        return self.cpu_s / self.transfers * 1e6


async def run_ledger_bench(backend: StorageBackend, clock: Clock, plan: LedgerPlan) -> list[Figure]:
    tenant = f"bench-ledger-{uuid.uuid4().hex[:10]}"
    ledger = Ledger(backend, PaymentsSettings(shard_count=plan.shard_count), clock=clock)
    freezer = HeapFreezer()  # the collector as in a server process, for the measured part
    await ledger.start()
    try:
        accounts = [f"acct-{index:06d}" for index in range(plan.accounts)]
        for start in range(0, len(accounts), OPEN_CONCURRENCY):
            await asyncio.gather(
                *(_open(ledger, tenant, account) for account in accounts[start : start + OPEN_CONCURRENCY])
            )
        rng = random.Random(SEED)
        await ledger.create_transfers(tenant, _items(rng, accounts, plan.batch_size))  # shards loaded
        freezer.install()
        load = os.getloadavg()[0]
        batches = [_items(rng, accounts, plan.batch_size) for _ in range(plan.batches)]
        batch = await _measure(
            plan.batches * plan.batch_size,
            (_batch_send(ledger, tenant, items) for items in batches),
            plan.batches_in_flight,
        )
        singles = _items(rng, accounts, plan.unary_transfers)
        unary = await _measure(
            plan.unary_transfers,
            (_unary_send(ledger, tenant, item) for item in singles),
            plan.unary_in_flight,
        )
        await _check_reconciled(ledger, tenant, plan.accounts, (*batch.debited, *unary.debited))
    finally:
        freezer.uninstall()
        await ledger.stop()
    where = (
        f"in process, {plan.accounts:,} accounts in {plan.shard_count} shards, random payer and payee; "
        f"load average {load:.1f} at the start; answered DEBITED (credit still in flight): "
        f"{len(batch.debited):,} batched, {len(unary.debited):,} single"
    )
    name = backend.name
    return [
        figure(
            "payments_ledger_batch_per_s",
            round(batch.per_s),
            "transfers/s",
            name,
            f"Ledger.create_transfers, {plan.batches} batches of {plan.batch_size:,}, "
            f"{plan.batches_in_flight} in flight, {where}; no gRPC: the ceiling of "
            "payments_transfer_batch_per_s",
        ),
        figure(
            "payments_ledger_batch_cpu_us_per_transfer",
            round(batch.cpu_us_per_transfer),
            "us",
            name,
            "this process's CPU (event loop and storage threads) over the batches, per transfer",
        ),
        figure(
            "payments_ledger_unary_per_s",
            round(unary.per_s),
            "transfers/s",
            name,
            f"Ledger.create_transfer, {plan.unary_transfers:,} transfers, {plan.unary_in_flight} in flight, "
            f"{where}; no gRPC: the ceiling of payments_transfer_unary_per_s",
        ),
        figure(
            "payments_ledger_unary_cpu_us_per_transfer",
            round(unary.cpu_us_per_transfer),
            "us",
            name,
            "this process's CPU over the single transfers, per transfer",
        ),
    ]


# A send's answers: how many transfers, and those answered DEBITED.
Answered = tuple[int, list[str]]


def _batch_send(ledger: Ledger, tenant: str, items: list[Item]) -> Callable[[], Awaitable[Answered]]:
    async def send() -> Answered:
        results = await ledger.create_transfers(tenant, items)
        for result in results:
            if not (isinstance(result, Transfer) and result.state in ANSWERED):
                violated(f"a bench transfer was not committed: {result!r}")
        debited = [
            r.transfer_id for r in results if isinstance(r, Transfer) and r.state is TransferState.DEBITED
        ]
        return len(results), debited

    return send


def _unary_send(ledger: Ledger, tenant: str, item: Item) -> Callable[[], Awaitable[Answered]]:
    async def send() -> Answered:
        result = await ledger.create_transfer(tenant, *item)
        if result.state not in ANSWERED:
            violated(f"a bench transfer was not committed: {result!r}")
        return 1, [result.transfer_id] if result.state is TransferState.DEBITED else []

    return send


async def _measure(
    transfers: int, sends: Iterable[Callable[[], Awaitable[Answered]]], in_flight: int
) -> Measured:
    """Run `sends`, `in_flight` at a time, timed and with this process's CPU counted."""
    gate = asyncio.Semaphore(in_flight)

    async def one(send: Callable[[], Awaitable[Answered]]) -> Answered:
        async with gate:
            return await send()

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    answers = await asyncio.gather(*(one(send) for send in sends))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    done = sum(count for count, _ in answers)
    ensure(done == transfers, f"{done} transfers answered of {transfers}")
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Measured(transfers, seconds, cpu_s, tuple(t for _, debited in answers for t in debited))


def _items(rng: random.Random, accounts: list[str], count: int) -> list[Item]:
    items = []
    for _ in range(count):
        payer, payee = rng.sample(accounts, 2)
        legs = (Leg(payer, payee, rng.randint(1, 10_000)),)
        items.append((TransferCommand(CURRENCY, legs, "bench"), Idempotency(uuid.uuid4().hex, repr(legs))))
    return items


async def _open(ledger: Ledger, tenant: str, account: str) -> None:
    policy = AccountPolicy(allow_negative=True)
    command = OpenAccountCommand(account, CURRENCY, AccountKind.SETTLEMENT, policy, account)
    await ledger.open_account(tenant, command, Idempotency(f"open-{account}", account))


async def _check_reconciled(ledger: Ledger, tenant: str, accounts: int, debited: Sequence[str]) -> None:
    """Reconcile, the ledger's own audit (money conserved, balances as their journals add up), clean
    over every account the bench opened, once the credits of the transfers answered DEBITED landed
    (`SETTLE_WAIT_S` at most: Reconcile counts credits in flight, but a ledger still moving through all
    its passes is not reported clean)."""
    await ledger.shards.deliveries.landed(debited, SETTLE_WAIT_S)
    report = await ledger.reconcile(tenant)
    ensure(report.accounts_checked == accounts, f"Reconcile checked {report.accounts_checked} of {accounts}")
    ensure(report.clean, f"Reconcile after the bench: {report.discrepancies[:3]}")
