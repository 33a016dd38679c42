"""Row TTL: an expired row is invisible to every read and does not come back with a later write."""

from __future__ import annotations

import asyncio
from typing import Final

from jubao_server.storage.contract import Batch, Put, RowAbsent, RowQuery, StorageBackend

from .support import read_all
from .tables import KV, LEDGER

TTL_S: Final = 1
# Cassandra stores expiry in whole seconds, so a 1 s TTL may last almost 2 s.
EXPIRED_AFTER_S: Final = 2.2


async def test_rows_expire_after_their_ttl(backend: StorageBackend, scope: str) -> None:
    short = KV.partition(scope, "short")
    kept = KV.partition(scope, "kept")
    ledger = LEDGER.partition(scope, "acct")
    await backend.write(Batch(short, puts=(Put((), {"v": "a", "n": 1}, ttl_s=TTL_S),)))
    await backend.write(Batch(kept, puts=(Put((), {"v": "b"}),)))
    puts = (Put((1,), {"note": "short"}, ttl_s=TTL_S), Put((2,), {"note": "kept"}))
    await backend.write(Batch(ledger, puts=puts))
    assert await backend.read_row(short) is not None
    assert len(await read_all(backend, RowQuery(ledger))) == 2

    await asyncio.sleep(EXPIRED_AFTER_S)

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
