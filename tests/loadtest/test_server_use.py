"""What the bench reads of the server processes: the bytes they had written to storage, per call and per
transferred item."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from loadtest.payments_bench import Measured, ServerUse
from loadtest.server_process import process_written_bytes
from loadtest.stats import window_of
from loadtest.tally import Tally

WRITTEN_BYTES: Final = 4 * 1024 * 1024


def test_the_bytes_a_process_wrote_and_synced_are_counted(tmp_path: Path) -> None:
    before = process_written_bytes(os.getpid())
    with (tmp_path / "data").open("wb") as file:
        file.write(os.urandom(WRITTEN_BYTES))
        file.flush()
        os.fsync(file.fileno())
    assert process_written_bytes(os.getpid()) - before >= WRITTEN_BYTES


def test_bytes_written_read_per_call_or_per_item_of_a_batch_on_sqlite_only() -> None:
    use = ServerUse(cpu_s=2.0, written_bytes=30_000_000, wall_s=10.0, calls=20)
    measured = Measured(window_of((), 0), Tally(), use)
    (per_call,) = measured.written_figure("unary_written", "sqlite")
    assert (per_call["value"], per_call["unit"]) == (1_500_000, "bytes/call")
    assert "3.0 MB/s" in per_call["notes"]
    (per_item,) = measured.written_figure("batch_written", "sqlite", per=1_000)
    assert (per_item["value"], per_item["unit"]) == (1_500, "bytes/transfer")
    assert measured.written_figure("batch_written", "cassandra", per=1_000) == []
