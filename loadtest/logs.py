"""What the servers and the cluster's nodes logged during a run, digested for a failed run's report: per log,
its warnings and errors counted by kind (the servers' `event`, the nodes' message), the most frequent first,
and the last errors. A chaos run that fails in CI leaves nothing else behind: its logs go with the machine.

A server's kinds carry the start of their error (storage timeouts and unavailability say which consistency
level and how many replicas answered). A node's `system.log` outlives the run, so only what was appended
after `mark()` is read."""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

kinds_listed_max: Final = 6
errors_listed_max: Final = 3
line_chars_max: Final = 240
# How much of a server record's error, or of a node's message, names its kind.
kind_chars_max: Final = 100
log_read_bytes_max: Final = 64 * 1024 * 1024
SERVER_LEVELS: Final = frozenset({"warning", "error", "critical"})
# A node's log line: "LEVEL [thread] date time Source.java:line - message".
NODE_LINE: Final = re.compile(r"^(WARN|ERROR)\s+\[[^\]]*\]\s+\S+\s+\S+\s+\S+\s+-\s+(.*)$")
NUMBERS: Final = re.compile(r"\d+")
# The first line of a stack trace: the exception's class (a dotted name) and its message.
JAVA_EXCEPTION: Final = re.compile(r"^[a-z][\w$]*(\.[\w$]+)+(:|$)")


@dataclasses.dataclass(frozen=True)
class Digest:
    """One log's warnings and errors: how many of each kind (most frequent first) and the last errors."""

    name: str
    counts: tuple[tuple[str, int], ...]
    last_errors: tuple[str, ...]

    def lines(self) -> list[str]:
        total = sum(count for _, count in self.counts)
        lines = [f"  {self.name}: {total} warnings and errors"]
        lines += [f"    {count:>6}  {kind}" for kind, count in self.counts[:kinds_listed_max]]
        lines += [f"    last error: {line}" for line in self.last_errors]
        return lines


def mark(paths: Iterable[Path]) -> dict[Path, int]:
    """Each log's size now: where the run's part of it starts."""
    return {path: path.stat().st_size if path.is_file() else 0 for path in paths}


def node_logs(cluster_dir: Path, nodes: Iterable[int]) -> dict[str, Path]:
    return {f"node {node}": cluster_dir / f"node{node}" / "logs" / "system.log" for node in nodes}


def digest_server(name: str, path: Path) -> Digest:
    """A server's JSON log lines at warning and above, counted by event."""
    counts: collections.Counter[str] = collections.Counter()
    errors: collections.deque[str] = collections.deque(maxlen=errors_listed_max)
    for line in _lines(path, 0):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            counts["(not JSON) " + _short(line)] += 1
            continue
        level = str(record.get("level", ""))
        if level not in SERVER_LEVELS:
            continue
        error = record.get("error")
        cause = "" if error is None else f" ({NUMBERS.sub('#', _short(str(error), kind_chars_max))})"
        counts[f"{level}: {record.get('event', '?')}{cause}"] += 1
        if level != "warning":
            errors.append(_short(line))
    return Digest(name, tuple(counts.most_common()), tuple(errors))


def digest_node(name: str, path: Path, start: int) -> Digest:
    """A node's WARN and ERROR lines since `start` (a byte offset), counted by message (digits as #); an
    error's kind and line end with the exception its stack trace starts with, which says what went wrong
    ("Exception in thread Thread[MutationStage-7]" alone does not)."""
    counts: collections.Counter[str] = collections.Counter()
    errors: collections.deque[str] = collections.deque(maxlen=errors_listed_max)
    lines = list(_lines(path, start))
    for index, line in enumerate(lines):
        found = NODE_LINE.match(line)
        if found is None:
            continue
        level, message = found.groups()
        kind = NUMBERS.sub("#", _short(message, kind_chars_max))
        if level == "ERROR":
            thrown = _thrown(lines, index + 1)
            kind += "" if thrown is None else f" <- {NUMBERS.sub('#', _short(thrown, kind_chars_max))}"
            errors.append(_short(line if thrown is None else f"{line} <- {thrown}"))
        counts[f"{level} {kind}"] += 1
    return Digest(name, tuple(counts.most_common()), tuple(errors))


def _thrown(lines: list[str], index: int) -> str | None:
    """The exception of the stack trace at `index` (the line after an ERROR), if one is there."""
    if index >= len(lines) or not JAVA_EXCEPTION.match(lines[index]):
        return None
    return lines[index].strip()


def _lines(path: Path, start: int) -> Iterator[str]:
    if not path.is_file():
        return
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = start if start <= size else 0  # a log that started again since the mark
        handle.seek(max(start, size - log_read_bytes_max))
        text = handle.read().decode(errors="replace")
    yield from text.splitlines()


def _short(text: str, chars: int = line_chars_max) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"
