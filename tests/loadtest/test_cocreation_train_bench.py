"""Co-creation's training bench runs (small) and reports its figure."""

from __future__ import annotations

from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.memory import MemoryBackend

from loadtest.cocreation_train_bench import run_cocreation_train_bench


async def test_the_training_bench_trains_its_model() -> None:
    backend = MemoryBackend(SYSTEM_CLOCK)
    await migrate(backend)
    [result] = await run_cocreation_train_bench(backend, SYSTEM_CLOCK, orders=5_000, policies=1_000)
    assert result["name"] == "cocreation_train_rows_per_s" and float(result["value"]) > 0
    assert "1,000 policies" in str(result["notes"]) and result["backend"] == "memory"
