"""The storage micro-benchmark runs on every backend and reports four integer figures."""

from __future__ import annotations

from jubao_server.storage.contract import StorageBackend

from loadtest.storage_bench import run_storage_bench

SECONDS_PER_FIGURE = 0.2


async def test_storage_bench_reports_every_figure(backend: StorageBackend) -> None:
    figures = await run_storage_bench(backend, SECONDS_PER_FIGURE)
    assert [f["name"] for f in figures] == [
        "storage_plain_writes_per_s",
        "storage_conditional_writes_per_s",
        "storage_batch_rows_per_s",
        "storage_point_reads_per_s",
    ]
    for figure in figures:
        assert isinstance(figure["value"], int)
        assert figure["value"] > 0
        assert figure["backend"] == backend.name
