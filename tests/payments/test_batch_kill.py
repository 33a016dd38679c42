"""A server process SIGKILLed while it applies large batches of transfers: `jubao-server serve` starts its
gRPC process again, the client sends the same batches (same request ids and bodies) until every item has a
final outcome, and once more. Every transfer is applied exactly once: the repeated answers agree, the
balances equal the tally of the outcomes, and reconciliation is clean. On SQLite and on the local
Cassandra node. A failure prints the seed."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Final

from google.rpc import code_pb2
from jubao.client import AsyncClient, ClientConfig, JubaoError
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server.payments import journal
from jubao_server.payments.ledger import transfer_id_of
from jubao_server.payments.tables import SHARDS
from jubao_server.storage.contract import StorageBackend

from loadtest.server_process import ServerProcess
from tests.payments.support import fresh_tenant, leg, settled_balances

CUSTOMERS: Final = 200
FUNDING_MINOR: Final = 10_000
BATCHES: Final = 4
BATCH_SIZE: Final = 1_000
AMOUNT_MAX_MINOR: Final = 300
SHARD_COUNT: Final = 16
ATTEMPTS_MAX: Final = 60
RETRY_PAUSE_S: Final = 0.5
KILL_WAIT_S: Final = 60.0
KILL_POLL_S: Final = 0.005
CALL_TIMEOUT_MS: Final = 30_000


def batches_of(rng: random.Random, customers: list[str]) -> list[pb.BatchCreateTransfersRequest]:
    def item(batch: int, index: int) -> pb.CreateTransferRequest:
        payer, payee = rng.sample(customers, 2)
        return pb.CreateTransferRequest(
            request_id=f"k-{batch}-{index}",
            currency_code="CNY",
            legs=[leg(payer, payee, rng.randrange(1, AMOUNT_MAX_MINOR))],
        )

    return [
        pb.BatchCreateTransfersRequest(requests=[item(batch, index) for index in range(BATCH_SIZE)])
        for batch in range(BATCHES)
    ]


def told(result: pb.TransferResult) -> tuple[str, str]:
    """What a batch item's result tells: the transfer it names, or the refusal's code and message."""
    if result.WhichOneof("result") == "transfer":
        return ("transfer", result.transfer.transfer_id)
    return (code_pb2.Code.Name(result.error.code), result.error.message)


async def resolved(client: AsyncClient, request: pb.BatchCreateTransfersRequest) -> list[pb.TransferResult]:
    """The batch's results once none is UNAVAILABLE: the whole batch is sent again while the server is
    down, then the items whose outcome is unknown, with their request ids and bodies."""
    results: list[pb.TransferResult | None] = [None] * len(request.requests)
    for _ in range(ATTEMPTS_MAX):
        pending = [i for i, r in enumerate(results) if r is None or r.error.code == code_pb2.UNAVAILABLE]
        if not pending:
            return [r for r in results if r is not None]
        part = pb.BatchCreateTransfersRequest(requests=[request.requests[i] for i in pending])
        try:
            reply = await client.payments.BatchCreateTransfers(part)
        except JubaoError:
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        for index, result in zip(pending, reply.results, strict=True):
            results[index] = result
    raise AssertionError(f"a batch was still unresolved after {ATTEMPTS_MAX} attempts")


async def commits(backend: StorageBackend, tenant_id: str) -> int:
    """The records the tenant's shards committed (their static `last_seq`)."""
    total = 0
    for shard in range(SHARD_COUNT):
        static = await backend.read_static(SHARDS.partition(tenant_id, shard))
        if static is not None and isinstance(static["last_seq"], int):
            total += static["last_seq"]
    return total


async def applied(
    backend: StorageBackend, tenant_id: str, requests: list[pb.BatchCreateTransfersRequest]
) -> int:
    """How many of the batches' transfers are in the journal."""
    ids = [transfer_id_of(tenant_id, item.request_id) for batch in requests for item in batch.requests]
    found = 0
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        found += sum(
            t is not None
            for t in await asyncio.gather(*(journal.find_transfer(backend, tenant_id, i) for i in chunk))
        )
    return found


async def kill_once_applying(
    server: ServerProcess, backend: StorageBackend, tenant_id: str, before: int
) -> None:
    """SIGKILL the gRPC process as soon as the tenant's shards commit past `before`."""
    deadline_s = time.monotonic() + KILL_WAIT_S
    while await commits(backend, tenant_id) <= before:
        assert time.monotonic() < deadline_s, "the batches never started committing"
        await asyncio.sleep(KILL_POLL_S)
    for pid in server.serving_pids():
        os.kill(pid, signal.SIGKILL)


async def test_a_server_killed_mid_batch_applies_each_transfer_once_on_retry(
    store: tuple[StorageBackend, dict[str, str]], tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    backend, env = store
    server = await asyncio.to_thread(ServerProcess.start, env, tmp_path / "server.log")
    try:
        tenant_id, api_key = await fresh_tenant(server.address)
        config = ClientConfig(endpoint=server.address, api_key=api_key, default_timeout_ms=CALL_TIMEOUT_MS)
        async with AsyncClient(config) as client:
            customers = [f"customer-{index}" for index in range(CUSTOMERS)]
            await _open_and_fund(client, customers)
            requests = batches_of(rng, customers)
            before = await commits(backend, tenant_id)
            sent = [client.payments.BatchCreateTransfers(r) for r in requests]
            await kill_once_applying(server, backend, tenant_id, before)
            await asyncio.gather(*sent, return_exceptions=True)
            cut = await applied(backend, tenant_id, requests)
            assert cut < BATCHES * BATCH_SIZE, f"seed {seed}: the kill came after every transfer applied"
            outcomes = [await resolved(client, request) for request in requests]
            again = [list((await client.payments.BatchCreateTransfers(r)).results) for r in requests]
            assert [[told(r) for r in b] for b in again] == [[told(r) for r in b] for b in outcomes], seed
            expected = Counter({account_id: FUNDING_MINOR for account_id in customers})
            for request, results in zip(requests, outcomes, strict=True):
                for item, result in zip(request.requests, results, strict=True):
                    if result.WhichOneof("result") == "transfer":
                        expected[item.legs[0].debit_account_id] -= item.legs[0].amount_minor
                        expected[item.legs[0].credit_account_id] += item.legs[0].amount_minor
                    else:
                        assert result.error.code == code_pb2.FAILED_PRECONDITION, f"seed {seed}: {result}"
            balances = await settled_balances(client, customers, expected)
            assert balances == dict(expected), f"seed {seed}"
            report = await client.payments.Reconcile(pb.ReconcileRequest())
            assert report.clean, f"seed {seed}: {report}"
    finally:
        await asyncio.to_thread(server.terminate)


async def _open_and_fund(client: AsyncClient, customers: list[str]) -> None:
    bank = pb.Account(
        account_id="bank",
        currency_code="CNY",
        kind=pb.ACCOUNT_KIND_SETTLEMENT,
        policy=pb.AccountPolicy(allow_negative=True),
    )
    await client.payments.OpenAccount(pb.OpenAccountRequest(account=bank))
    for account_id in customers:
        account = pb.Account(account_id=account_id, currency_code="CNY", kind=pb.ACCOUNT_KIND_CUSTOMER)
        await client.payments.OpenAccount(pb.OpenAccountRequest(account=account))
    funding = [
        pb.CreateTransferRequest(
            request_id=f"fund-{c}", currency_code="CNY", legs=[leg("bank", c, FUNDING_MINOR)]
        )
        for c in customers
    ]
    reply = await client.payments.BatchCreateTransfers(pb.BatchCreateTransfersRequest(requests=funding))
    assert all(r.WhichOneof("result") == "transfer" for r in reply.results), reply
