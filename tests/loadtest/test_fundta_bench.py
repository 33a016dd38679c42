"""The fund TA's day-close bench runs (small) and reports its figure."""

from __future__ import annotations

from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.memory import MemoryBackend

from loadtest.fundta_bench import run_fundta_bench


async def test_the_day_close_bench_closes_its_fund() -> None:
    backend = MemoryBackend(SYSTEM_CLOCK)
    await migrate(backend)
    [result] = await run_fundta_bench(backend, SYSTEM_CLOCK, holders=300, orders=40)
    assert result["name"] == "fundta_day_close_holders_per_s" and float(result["value"]) > 0
    assert "300 holders" in str(result["notes"]) and result["backend"] == "memory"
