"""Row TTL: an expired row is invisible to every read and does not come back with a later write."""

from __future__ import annotations

import asyncio
from typing import Final

from jubao_server.storage.contract import Batch, Put, RowAbsent, RowQuery, StorageBackend

from .support import read_all
from .tables import KV, LEDGER

# Cassandra stores a cell's expiry in whole seconds (the second it was written, floored, plus the TTL),
# so a row written with a TTL of 3 s lives more than 2 s and at most 3 s. The live reads below come well
# inside 2 s of the first write; the expired reads come after 3 s (and a margin) from the last one.
TTL_S: Final = 3
EXPIRY_MARGIN_S: Final = 0.2


async def test_rows_expire_after_their_ttl(backend: StorageBackend, scope: str) -> None:
    short = KV.partition(scope, "short")
    kept = KV.partition(scope, "kept")
    ledger = LEDGER.partition(scope, "acct")
    loop = asyncio.get_running_loop()
    await backend.write(Batch(short, puts=(Put((), {"v": "a", "n": 1}, ttl_s=TTL_S),)))
    await backend.write(Batch(kept, puts=(Put((), {"v": "b"}),)))
    puts = (Put((1,), {"note": "short"}, ttl_s=TTL_S), Put((2,), {"note": "kept"}))
    await backend.write(Batch(ledger, puts=puts))
    last_written_s = loop.time()
    assert await backend.read_row(short) is not None
    assert len(await read_all(backend, RowQuery(ledger))) == 2

    await asyncio.sleep(last_written_s + TTL_S + EXPIRY_MARGIN_S - loop.time())

    assert await backend.read_row(short) is None
    assert await backend.read_row(ledger, (1,)) is None
    assert [row["note"] for row in await read_all(backend, RowQuery(ledger))] == ["kept"]
    row = await backend.read_row(kept)
    assert row is not None
    assert row["v"] == "b"
    rewrite = Batch(short, puts=(Put((), {"v": "c"}),), conditions=(RowAbsent(()),))
    assert (await backend.write(rewrite)).applied
    revived = await backend.read_row(short)
    assert revived is not None
    assert dict(revived.values) == {"v": "c", "n": None}
