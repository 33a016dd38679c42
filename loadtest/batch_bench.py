"""Batch transfer throughput: `batch_callers` callers in one client process, each sending
`BatchCreateTransfers` of `batch_size` transfers (random payer and payee) as soon as its previous batch
answers (closed loop). Only the items that come back as a transfer count; an item error, or every item
of a failed call, counts as an error."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
import uuid
from typing import Final

from jubao.client import AsyncClient, ClientConfig, JubaoError
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server import limits

batch_size: Final = 1_000
batch_callers: Final = 4
# A batch of 1,000 takes seconds (its items queue behind the other callers' in the server), close to the
# SDK's default 10 s deadline; a timed-out batch would count as 1,000 errors.
batch_timeout_s: Final = 120.0
amount_max_minor: Final = 99


@dataclasses.dataclass(frozen=True)
class BatchLoad:
    endpoint: str
    api_key: str
    seconds: float
    warmup_s: float
    account_prefix: str
    accounts: int
    currency: str


@dataclasses.dataclass(frozen=True)
class BatchResult:
    transfers: int
    errors: int
    elapsed_s: float

    @property
    def transfers_per_s(self) -> float:
        return self.transfers / self.elapsed_s if self.elapsed_s else 0.0


@dataclasses.dataclass
class _Tally:
    transfers: int = 0
    errors: int = 0


def measure_batches(load: BatchLoad) -> BatchResult:
    """Warm up for `load.warmup_s`, then count the transfers committed in `load.seconds`."""
    return asyncio.run(_drive(load))


async def _drive(load: BatchLoad) -> BatchResult:
    async with AsyncClient(ClientConfig(endpoint=load.endpoint, api_key=load.api_key)) as client:
        sender = _BatchSender(client, load)
        await sender.closed_loop(load.warmup_s, _Tally())
        tally = _Tally()
        started_s = time.perf_counter()
        await sender.closed_loop(load.seconds, tally)
        elapsed_s = time.perf_counter() - started_s
    return BatchResult(tally.transfers, tally.errors, elapsed_s)


class _BatchSender:
    """Builds and sends batches; every item gets a request_id of its own, unique to this run."""

    def __init__(self, client: AsyncClient, load: BatchLoad) -> None:
        self._client = client
        self._load = load
        self._rng = random.Random()
        self._run_id = uuid.uuid4().hex[:12]
        self._item_ids = itertools.count()

    async def closed_loop(self, seconds: float, tally: _Tally) -> None:
        deadline_s = time.perf_counter() + seconds

        async def caller() -> None:
            for _ in range(limits.bench_ops_per_worker_max):
                if time.perf_counter() >= deadline_s:
                    return
                await self._send(tally)

        await asyncio.gather(*(caller() for _ in range(batch_callers)))

    async def _send(self, tally: _Tally) -> None:
        request = pb.BatchCreateTransfersRequest(requests=[self._transfer() for _ in range(batch_size)])
        try:
            response = await self._client.payments.BatchCreateTransfers(request, timeout=batch_timeout_s)
        except JubaoError:
            tally.errors += batch_size
            return
        committed = sum(1 for result in response.results if result.WhichOneof("result") == "transfer")
        tally.transfers += committed
        tally.errors += len(response.results) - committed

    def _transfer(self) -> pb.CreateTransferRequest:
        accounts = self._load.accounts
        payer = self._rng.randrange(accounts)
        payee = (payer + 1 + self._rng.randrange(accounts - 1)) % accounts
        leg = pb.Leg(
            debit_account_id=f"{self._load.account_prefix}{payer}",
            credit_account_id=f"{self._load.account_prefix}{payee}",
            amount_minor=self._rng.randint(1, amount_max_minor),
        )
        return pb.CreateTransferRequest(
            request_id=f"{self._run_id}-{next(self._item_ids)}",
            currency_code=self._load.currency,
            legs=[leg],
            memo="bench batch",
        )
