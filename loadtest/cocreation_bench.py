"""`cocreation_join_aggregate_rows_per_s`: a co-creation query end to end through the API, per backend, on a
server started as `make run` starts it (its gRPC and its Arrow Flight process).

Two datasets of `rows` rows each are registered (gRPC), generated with a seed, tokenized with the SDK
(`jubao.bulk.cocreation.tokenize`: HMAC-SHA256 of the buyer) and uploaded over Flight in a child process
(`python -m loadtest.cocreation_bench ...`: the bench process has gRPC loaded, and the two must not share a
process, apache/arrow#13300); then RunQuery joins them on the tokens, groups by category and aggregates
with the minimum group size (100), timed from the call to its answer. The figure is the rows the query
read (both datasets) per second of that call; tokenizing and uploading are timed and noted apart. The
answer is checked: every order joins its buyer's policy, every category is kept.

The orders: two per buyer (`rows` / 2 buyers), the buyer's category `buyer % CATEGORIES`, the buyer's past
returns. The policies: one per buyer, `rows` of them (half bought nothing on the platform), every
seventh claimed."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import uuid
from typing import Any, Final

# Rows of each dataset in make bench, on either backend (quick and full alike: the whole run takes about
# half a minute on SQLite).
BENCH_ROWS: Final = 1_000_000
SEED: Final = 20_161_111
CATEGORIES: Final = 20
THRESHOLD: Final = 100
QUERY_REPEATS: Final = 3
SECRET: Final = b"bench secret agreed out of band, 32+ bytes"

Figure = dict[str, Any]


def cocreation_figures(endpoint: str, location: str, api_key: str, rows: int, backend: str) -> list[Figure]:
    """Register the two datasets (gRPC, at `endpoint`), upload them in a child process (Flight, at
    `location`), then time the query here."""
    from jubao.client import Client, ClientConfig  # noqa: PLC0415 (gRPC: the parent process only)
    from jubao.cocreation.v1 import cocreation_pb2 as pb  # noqa: PLC0415

    from loadtest.report import figure  # noqa: PLC0415

    with Client(ClientConfig(endpoint=endpoint, api_key=api_key, default_timeout_ms=600_000)) as client:
        collaboration_id = _collaboration(client, pb)
        command = [sys.executable, "-m", "loadtest.cocreation_bench", location, api_key, collaboration_id]
        done = subprocess.run([*command, str(rows)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"cocreation upload failed:\n{done.stdout}\n{done.stderr[-4000:]}")
        uploaded: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
        ref = pb.ColumnRef
        query = pb.Query(
            dataset_ids=["orders", "claims"],
            group_by=[ref(dataset_id="orders", column="category")],
            aggregates=[
                pb.Aggregate(function=pb.AGGREGATE_FUNCTION_COUNT),
                pb.Aggregate(
                    function=pb.AGGREGATE_FUNCTION_AVG, column=ref(dataset_id="claims", column="claimed")
                ),
                pb.Aggregate(
                    function=pb.AGGREGATE_FUNCTION_SUM, column=ref(dataset_id="claims", column="claim_minor")
                ),
                pb.Aggregate(
                    function=pb.AGGREGATE_FUNCTION_SUM, column=ref(dataset_id="orders", column="returns")
                ),
            ],
        )
        timings_s = []
        for _ in range(QUERY_REPEATS):
            started_s = time.perf_counter()
            answer = client.cocreation.RunQuery(
                pb.RunQueryRequest(collaboration_id=collaboration_id, query=query)
            )
            timings_s.append(time.perf_counter() - started_s)
    result = answer.result
    joined = sum(row.cells[1].int64_value for row in result.rows)
    if (len(result.rows), result.groups_suppressed, joined) != (CATEGORIES, 0, rows):
        raise RuntimeError(f"the query answered {len(result.rows)} groups of {joined} rows, not {rows}")
    best_s = min(timings_s)
    scanned = result.rows_scanned
    notes = (
        f"RunQuery through the API: two datasets of {rows:,} rows each"
        f"{_fewer(rows)}"
        f" joined on HMAC-SHA256 tokens ({rows:,} joined rows), grouped by {CATEGORIES} categories with "
        f"count, avg, two sums and the minimum group size {THRESHOLD}, no differential privacy; "
        f"{scanned:,} rows read per query in {best_s:.2f} s (best of {QUERY_REPEATS}: "
        f"{', '.join(f'{t:.2f}' for t in timings_s)} s), DuckDB on the server's query_threads; both "
        f"datasets uploaded by one tenant. Apart: tokenizing both took {uploaded['tokenize_s']:.1f} s "
        f"with the SDK, and uploading them over Flight {uploaded['upload_s']:.1f} s "
        f"({uploaded['upload_mb']:.0f} MB of Arrow)"
    )
    return [figure("cocreation_join_aggregate_rows_per_s", round(scanned / best_s), "rows/s", backend, notes)]


def _fewer(rows: int) -> str:
    return "" if rows >= BENCH_ROWS else f" (fewer than make bench runs: {BENCH_ROWS:,})"


def _collaboration(client: Any, pb: Any) -> str:
    """A collaboration of the bench tenant alone (every ability) and its two registered datasets."""
    abilities = [pb.ABILITY_CONTRIBUTE, pb.ABILITY_ANALYZE, pb.ABILITY_RECEIVE_RESULTS]
    request = pb.CreateCollaborationRequest(
        request_id=f"bench-{uuid.uuid4().hex}", display_name="bench 运费险", abilities=abilities
    )
    request.expire_time.FromSeconds(int(time.time()) + 24 * 3600)
    collaboration_id: str = client.cocreation.CreateCollaboration(request).collaboration.collaboration_id
    column, string, int64 = pb.Column, pb.Column.TYPE_STRING, pb.Column.TYPE_INT64
    summed = [pb.AGGREGATE_FUNCTION_SUM, pb.AGGREGATE_FUNCTION_AVG]
    declared = {
        "orders": (
            [
                column(name="buyer", type=string, role=column.ROLE_JOIN_KEY),
                column(name="category", type=string, role=column.ROLE_DIMENSION),
                column(name="returns", type=int64, role=column.ROLE_MEASURE),
            ],
            pb.AnalysisRule(
                group_by_columns=["category"],
                aggregates=[pb.AllowedAggregate(column="returns", functions=summed)],
                min_group_size=THRESHOLD,
            ),
        ),
        "claims": (
            [
                column(name="buyer", type=string, role=column.ROLE_JOIN_KEY),
                column(name="claimed", type=int64, role=column.ROLE_MEASURE),
                column(name="claim_minor", type=int64, role=column.ROLE_MEASURE),
            ],
            pb.AnalysisRule(
                aggregates=[
                    pb.AllowedAggregate(column="claimed", functions=summed),
                    pb.AllowedAggregate(column="claim_minor", functions=summed),
                ],
                min_group_size=THRESHOLD,
            ),
        ),
    }
    for dataset_id, (columns, rule) in declared.items():
        client.cocreation.RegisterDataset(
            pb.RegisterDatasetRequest(
                collaboration_id=collaboration_id,
                dataset_id=dataset_id,
                display_name=dataset_id,
                columns=columns,
                rule=rule,
            )
        )
    return collaboration_id


# The child process: Arrow and the Flight client only.


def upload(location: str, api_key: str, collaboration_id: str, rows: int) -> dict[str, float]:
    """(The child process.) Generate, tokenize and upload both datasets; their timings."""
    import pyarrow as pa  # noqa: PLC0415
    from jubao.bulk.client import BulkClient  # noqa: PLC0415
    from jubao.bulk.cocreation import tokenize, upload_dataset  # noqa: PLC0415

    rng = random.Random(SEED)
    orders = pa.table(
        {
            "buyer": [f"1{i // 2:010d}" for i in range(rows)],
            "category": [f"c{(i // 2) % CATEGORIES:02d}" for i in range(rows)],
            "returns": pa.array([rng.randrange(4) for _ in range(rows)], pa.int64()),
        }
    )
    claimed = [int(i % 7 == 0) for i in range(rows)]
    claims = pa.table(
        {
            "buyer": [f"1{i:010d}" for i in range(rows)],
            "claimed": pa.array(claimed, pa.int64()),
            "claim_minor": pa.array([c * 1500 for c in claimed], pa.int64()),
        }
    )
    started_s = time.perf_counter()
    tokenized = {"orders": tokenize(orders, ["buyer"], SECRET), "claims": tokenize(claims, ["buyer"], SECRET)}
    tokenize_s = time.perf_counter() - started_s
    sent_bytes = 0
    started_s = time.perf_counter()
    with BulkClient(location, api_key) as client:
        for dataset_id, table in tokenized.items():
            receipt = upload_dataset(client, collaboration_id, dataset_id, table)
            if receipt.rows_received != rows:
                raise RuntimeError(f"{dataset_id}: {receipt.rows_received} of {rows} rows stored")
            sent_bytes += receipt.bytes_sent
    upload_s = time.perf_counter() - started_s
    return {
        "tokenize_s": tokenize_s,
        "upload_s": upload_s,
        "upload_mb": sent_bytes / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    """The child process: `python -m loadtest.cocreation_bench LOCATION KEY COLLABORATION ROWS` prints its
    timings as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.cocreation_bench")
    for name in ("location", "api_key", "collaboration_id"):
        parser.add_argument(name)
    parser.add_argument("rows", type=int)
    args = parser.parse_args(argv)
    print(json.dumps(upload(args.location, args.api_key, args.collaboration_id, args.rows)))


if __name__ == "__main__":
    main()
