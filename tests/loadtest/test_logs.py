"""The digest of a failed chaos run's logs (`loadtest.logs`) and the chaos schedule's test of whether the load
is back (`chaos.LoadWatch`), on files and figures made here."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest import logs
from loadtest.chaos import LoadWatch
from loadtest.stats import Window


def _record(event: str, level: str, **fields: str) -> str:
    return json.dumps({"event": event, "level": level, "timestamp": "2026-12-03T05:59:31Z", **fields})


def test_a_server_digest_counts_warnings_and_errors_by_event_most_frequent_first(tmp_path: Path) -> None:
    path = tmp_path / "server-0.log"
    lines = [_record("storage unavailable", "warning")] * 3 + [
        _record("shard fenced", "warning"),
        _record("commit failed", "error"),
        _record("storage unavailable", "warning", error="ReadTimeout: received 1 of 2 responses"),
        _record("serving", "info"),
        "Traceback (most recent call last):",
    ]
    path.write_text("\n".join(lines) + "\n")
    digest = logs.digest_server("server-0", path)
    assert digest.counts == (
        ("warning: storage unavailable", 3),
        ("warning: shard fenced", 1),
        ("error: commit failed", 1),
        ("warning: storage unavailable (ReadTimeout: received # of # responses)", 1),
        ("(not JSON) Traceback (most recent call last):", 1),
    )
    assert len(digest.last_errors) == 1 and "commit failed" in digest.last_errors[0]
    assert digest.lines()[0] == "  server-0: 7 warnings and errors"


def test_a_node_digest_reads_only_what_came_after_the_mark_and_groups_numbers(tmp_path: Path) -> None:
    path = tmp_path / "system.log"
    before = "ERROR [MutationStage-1] 2026-12-03 05:00:00,000 X.java:1 - from an earlier run\n"
    path.write_text(before)
    marks = logs.mark([path])
    run = [
        "WARN  [ReadStage-2] 2026-12-03 06:04:15,682 R.java:158 - read for token 27 not owned",
        "WARN  [ReadStage-3] 2026-12-03 06:04:15,690 R.java:158 - read for token 31 not owned",
        "INFO  [main] 2026-12-03 06:04:15,700 S.java:1 - Node started",
        "ERROR [MutationStage-4] 2026-12-03 06:04:15,719 J.java:70 - Exception in Thread[MutationStage-4]",
        "java.lang.RuntimeException: java.lang.AssertionError: at 1",
        "\tat org.apache.cassandra.db.Mutation.apply(Mutation.java:1)",
        "ERROR [ReadStage-2] 2026-12-03 06:04:16,000 J.java:70 - no stack trace",
        "INFO  [main] 2026-12-03 06:04:16,100 S.java:1 - Node stopped",
    ]
    with path.open("a") as handle:
        handle.write("\n".join(run) + "\n")
    digest = logs.digest_node("node 3", path, marks[path])
    assert digest.counts == (
        ("WARN read for token # not owned", 2),
        (
            "ERROR Exception in Thread[MutationStage-#] <- "
            "java.lang.RuntimeException: java.lang.AssertionError: at #",
            1,
        ),
        ("ERROR no stack trace", 1),
    )
    assert digest.last_errors == (f"{run[3]} <- {run[4]}", run[6])


def test_a_node_log_that_started_again_since_the_mark_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "system.log"
    path.write_text("x" * 1000)
    marks = logs.mark([path, tmp_path / "absent.log"])
    assert marks[tmp_path / "absent.log"] == 0
    path.write_text("WARN  [main] 2026-12-03 06:00:00,000 S.java:1 - fresh\n")
    assert logs.digest_node("node 1", path, marks[path]).counts == (("WARN fresh", 1),)


def _window(ok: int) -> Window:
    return Window(1, ok, ok, ok, (), (0.0, 0.0, 0.0, 0.0))


def test_the_load_is_back_once_three_seconds_average_four_fifths_of_the_baseline() -> None:
    watch = LoadWatch(baseline_s=8)
    for second in range(8):
        watch.record(second, _window(10))
    for second in range(8, 14):
        watch.record(second, _window(2))
    assert not watch.back()
    for second, ok in ((14, 9), (15, 9), (16, 9), (17, 0)):  # the last second is still being counted
        watch.record(second, _window(ok))
    assert watch.back()
    watch.record(18, _window(0))
    assert not watch.back()
