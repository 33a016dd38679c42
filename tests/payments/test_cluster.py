"""Two server processes on one store: each ledger shard is leased by one of them, the other forwards the
calls that need it, money is conserved, nothing is overdrawn, and no shard changes hands, even when one
process stops for a while (as one may on a loaded machine) within its lease; the same with the two gRPC
processes of one `jubao-server serve` (one per core), which share its shards out.

It runs on SQLite (two processes, one database file) and on the local Cassandra node, the deployment
it is meant for. A failure prints the seed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest
from jubao.client import AsyncClient, ClientConfig, FailedPrecondition, Reason, Unavailable
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server.payments.tables import SHARDS
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import StorageBackend

from loadtest.server_process import ServerProcess
from tests.payments.support import fresh_tenant, leg, settled_balances

CUSTOMERS: Final = 10
FUNDING_MINOR: Final = 1_000
TRANSFERS: Final = 160
IN_FLIGHT_MAX: Final = 12
SHARD_COUNT: Final = 16
PROCESSES: Final = 2
# The shards' lease (the server's default). An owner renews it once a third is used and answers while a
# quarter is left, so one that stops for more than about two thirds of it (a loaded 2-core CI machine
# running both servers and this client) stops answering, and past the whole of it loses its shards to the
# other process, which the epochs below would show. Nothing here waits a lease out: the servers give theirs
# up when they stop, and every test takes a fresh tenant; so a longer lease costs no time.
LEASE_MS: Final = 10_000
# A call refused UNAVAILABLE (its shard's owner not answering yet, or no longer) is sent again for at most a
# lease's length: by then the owner renewed its lease or lost it.
RETRY_PAUSE_S: Final = 0.05
RETRIES_MAX: Final = int(LEASE_MS / 1000 / RETRY_PAUSE_S)
# How long one of the two processes is stopped (SIGSTOP) while the transfers go on before the other is
# asked for one of its shards (then the stopped one goes on PROBE_S later): past a 3 s lease, which the
# other would then take over, well under LEASE_MS less the third an owner lets pass before renewing.
PAUSE_S: Final = 3.0
PROBE_S: Final = 0.5


@pytest.fixture
async def servers(
    store: tuple[StorageBackend, dict[str, str]], tmp_path: Path
) -> AsyncIterator[list[ServerProcess]]:
    """Two server processes on the store, stopped gracefully (their leases released) at the end."""
    started: list[ServerProcess] = []
    try:
        for index in range(2):
            log_path = tmp_path / f"server-{index}.log"
            started.append(await asyncio.to_thread(ServerProcess.start, _leased(store[1]), log_path))
        yield started
    finally:
        for server in started:
            await asyncio.to_thread(server.terminate)


async def test_two_processes_share_the_ledger_without_taking_shards_from_each_other(
    store: tuple[StorageBackend, dict[str, str]], servers: list[ServerProcess]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    backend, _ = store
    tenant_id, api_key = await fresh_tenant(servers[0].address)
    clients = [AsyncClient(ClientConfig(endpoint=s.address, api_key=api_key)) for s in servers]
    try:
        customers = await _open_and_fund(clients)
        paused = _pause(servers[1], backend, tenant_id, clients[0])
        moved, _ = await asyncio.gather(_pay_at_random(clients, customers, rng), paused)
        expected = Counter({c: FUNDING_MINOR + 1 for c in customers})
        await _top_up_in_one_batch(clients[1], customers)
        for payer, payee, amount_minor in moved:
            expected[payer] -= amount_minor
            expected[payee] += amount_minor
        for client in clients:
            balances = await settled_balances(client, customers, expected)
            assert balances == dict(expected), f"seed {seed}"
            assert min(balances.values()) >= 0, f"seed {seed}"
            report = await client.payments.Reconcile(pb.ReconcileRequest())
            assert report.clean, f"seed {seed}: {report}"
    finally:
        for client in clients:
            await client.close()
    owners, epochs = await _shard_leases(backend, tenant_id)
    assert owners == {s.address for s in servers}, f"seed {seed}: both processes hold shards"
    assert set(epochs) == {1}, f"seed {seed}: every shard was taken once and kept: {epochs}"


async def test_one_server_runs_a_process_per_core_and_shares_the_shards_out(
    store: tuple[StorageBackend, dict[str, str]], tmp_path: Path
) -> None:
    """`jubao-server serve` with two gRPC processes on one port: calls through the shared port and round
    robin over the processes' own ports; each process holds its home shards (shard s: process s mod 2),
    taken once."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    backend, env = store
    settings = _leased(env) | {"JUBAO_SERVER__PROCESSES": str(PROCESSES)}
    server = await asyncio.to_thread(ServerProcess.start, settings, tmp_path / "server.log")
    try:
        members = server.member_addresses()
        assert len(members) == len(server.serving_pids()) == PROCESSES
        tenant_id, api_key = await fresh_tenant(server.address)
        endpoints = [server.address, "ipv4:" + ",".join(members)]
        clients = [AsyncClient(ClientConfig(endpoint=e, api_key=api_key)) for e in endpoints]
        try:
            customers = await _open_and_fund(clients)
            moved = await _pay_at_random(clients, customers, rng)
            expected = Counter({c: FUNDING_MINOR + 1 for c in customers})
            await _top_up_in_one_batch(clients[1], customers)
            for payer, payee, amount_minor in moved:
                expected[payer] -= amount_minor
                expected[payee] += amount_minor
            balances = await settled_balances(clients[1], customers, expected)
            assert balances == dict(expected), f"seed {seed}"
            report = await clients[0].payments.Reconcile(pb.ReconcileRequest())
            assert report.clean, f"seed {seed}: {report}"
        finally:
            for client in clients:
                await client.close()
        holders = await _holders(backend, tenant_id)
        assert holders == {s: members[s % PROCESSES] for s in range(SHARD_COUNT)}, f"seed {seed}"
        _, epochs = await _shard_leases(backend, tenant_id)
        assert set(epochs) == {1}, f"seed {seed}: every shard was taken once and kept: {epochs}"
    finally:
        await asyncio.to_thread(server.terminate)


def _leased(env: dict[str, str]) -> dict[str, str]:
    return env | {"JUBAO_PAYMENTS__SHARD_LEASE_MS": str(LEASE_MS)}


async def _pause(server: ServerProcess, backend: StorageBackend, tenant_id: str, other: AsyncClient) -> None:
    """Stop the server's processes (as a loaded machine may stop one) for PAUSE_S, then open an account
    through the other process in a shard the stopped one holds, and let the stopped one go on PROBE_S
    later: its lease still runs, so the other forwards the call (answered once the stopped one goes on)
    instead of taking the shard over."""
    holders = await _holders(backend, tenant_id)
    held = {shard for shard, address in holders.items() if address == server.address}
    assert held, "the paused process holds shards"
    ids = (f"probe-{n}" for n in range(SHARD_COUNT * 100))
    probe = next(account_id for account_id in ids if shard_of(account_id, SHARD_COUNT) in held)
    account = pb.Account(account_id=probe, currency_code="CNY", kind=pb.ACCOUNT_KIND_CUSTOMER)
    pids = server.serving_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(PAUSE_S)
        opened = asyncio.create_task(_open(other, account))
        await asyncio.sleep(PROBE_S)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    await opened


async def _open(client: AsyncClient, account: pb.Account) -> None:
    await client.payments.OpenAccount(pb.OpenAccountRequest(account=account))


async def _holders(backend: StorageBackend, tenant_id: str) -> dict[int, str]:
    holders: dict[int, str] = {}
    for shard in range(SHARD_COUNT):
        static = await backend.read_static(SHARDS.partition(tenant_id, shard))
        if static is not None and static["owner"] is not None:
            holders[shard] = static.as_text("owner").partition("@")[2]
    return holders


async def _open_and_fund(clients: list[AsyncClient]) -> list[str]:
    bank = pb.Account(
        account_id="bank",
        currency_code="CNY",
        kind=pb.ACCOUNT_KIND_SETTLEMENT,
        policy=pb.AccountPolicy(allow_negative=True),
    )
    await clients[0].payments.OpenAccount(pb.OpenAccountRequest(account=bank))
    customers = [f"customer-{index}" for index in range(CUSTOMERS)]
    for index, account_id in enumerate(customers):
        client = clients[index % len(clients)]
        account = pb.Account(account_id=account_id, currency_code="CNY", kind=pb.ACCOUNT_KIND_CUSTOMER)
        await client.payments.OpenAccount(pb.OpenAccountRequest(account=account))
        funding = pb.CreateTransferRequest(currency_code="CNY", legs=[leg("bank", account_id, FUNDING_MINOR)])
        await clients[(index + 1) % len(clients)].payments.CreateTransfer(funding)
    return customers


async def _pay_at_random(
    clients: list[AsyncClient], customers: list[str], rng: random.Random
) -> list[tuple[str, str, int]]:
    """Random transfers through random servers; an unknown outcome is retried with its request id."""
    limit = asyncio.Semaphore(IN_FLIGHT_MAX)
    plans = [
        (rng.sample(customers, 2), rng.randrange(1, 600), rng.randrange(len(clients)))
        for _ in range(TRANSFERS)
    ]

    async def pay(index: int) -> tuple[str, str, int] | None:
        (payer, payee), amount_minor, first = plans[index]
        request = pb.CreateTransferRequest(
            request_id=f"t-{index}", currency_code="CNY", legs=[leg(payer, payee, amount_minor)]
        )
        async with limit:
            for attempt in range(RETRIES_MAX):
                try:
                    await clients[(first + attempt) % len(clients)].payments.CreateTransfer(request)
                    return payer, payee, amount_minor
                except FailedPrecondition as refused:
                    assert refused.reason == Reason.INSUFFICIENT_FUNDS, refused
                    return None
                except Unavailable:
                    await asyncio.sleep(RETRY_PAUSE_S)
        raise AssertionError(f"transfer {index} never resolved")

    outcomes = await asyncio.gather(*(pay(index) for index in range(TRANSFERS)))
    return [outcome for outcome in outcomes if outcome is not None]


async def _top_up_in_one_batch(client: AsyncClient, customers: list[str]) -> None:
    """One minor unit to each customer from the bank, whose shard the first server holds: the second
    sends the batch's requests on to the first in one batch."""
    requests = [
        pb.CreateTransferRequest(request_id=f"top-up-{c}", currency_code="CNY", legs=[leg("bank", c, 1)])
        for c in customers
    ]
    reply = await client.payments.BatchCreateTransfers(pb.BatchCreateTransfersRequest(requests=requests))
    assert [r.WhichOneof("result") for r in reply.results] == ["transfer"] * len(customers), reply


async def _shard_leases(backend: StorageBackend, tenant_id: str) -> tuple[set[str], list[int]]:
    """The addresses holding the tenant's shards, and each shard's epoch (how often it was taken)."""
    owners: set[str] = set()
    epochs: list[int] = []
    for shard in range(SHARD_COUNT):
        static = await backend.read_static(SHARDS.partition(tenant_id, shard))
        if static is not None and static["epoch"] is not None:
            owners.add(static.as_text("owner").partition("@")[2])
            epochs.append(static.as_int("epoch"))
    return owners, epochs
