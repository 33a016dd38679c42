"""The co-creation bench runs (tiny) against a server started as `make run` starts it, and reports its
figure with the upload timed apart."""

from __future__ import annotations

from loadtest.cocreation_bench import cocreation_figures
from loadtest.harness import serving
from loadtest.server_process import free_port


def test_the_join_aggregate_bench_answers_every_category() -> None:
    port = free_port()
    with serving(None, None, {"JUBAO_BULK__PORT": str(port)}) as target:
        [result] = cocreation_figures(
            target.endpoint, f"grpc+tcp://127.0.0.1:{port}", target.api_key, 5_000, "sqlite"
        )
    assert result["name"] == "cocreation_join_aggregate_rows_per_s" and float(result["value"]) > 0
    notes = str(result["notes"])
    assert (
        "two datasets of 5,000 rows each (fewer than make bench" in notes
        and "uploading them over Flight" in notes
    )
    assert result["backend"] == "sqlite"
