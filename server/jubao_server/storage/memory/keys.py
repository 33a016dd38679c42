"""`SortedKeys`: a partition's clustering keys in order, kept in chunks so that adding or removing one
moves at most a chunk (a flat sorted list moves everything after it: a shard partition of a long run
holds hundreds of thousands of rows, and its markers and closed items land in the middle)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from jubao_server import limits
from jubao_server.storage.contract import Key

Find = Callable[..., int]


class SortedKeys:
    """Distinct keys in order: `chunks` of at most `memory_keys_chunk_max` keys, each chunk's last key
    in `lasts` (sorted too), so a key's chunk is a bisection of `lasts`."""

    __slots__ = ("_chunks", "_lasts")

    def __init__(self) -> None:
        self._chunks: list[list[Key]] = []
        self._lasts: list[Key] = []

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def add(self, key: Key) -> None:
        """Add a key that is not there."""
        if not self._chunks:
            self._chunks.append([key])
            self._lasts.append(key)
            return
        index = min(bisect.bisect_left(self._lasts, key), len(self._chunks) - 1)
        chunk = self._chunks[index]
        bisect.insort(chunk, key)
        self._lasts[index] = chunk[-1]
        if len(chunk) > limits.memory_keys_chunk_max:
            half = len(chunk) // 2
            self._chunks.insert(index + 1, chunk[half:])
            del chunk[half:]
            self._lasts.insert(index, chunk[-1])

    def remove(self, key: Key) -> None:
        """Remove a key that is there."""
        index = bisect.bisect_left(self._lasts, key)
        chunk = self._chunks[index]
        del chunk[bisect.bisect_left(chunk, key)]
        if chunk:
            self._lasts[index] = chunk[-1]
        else:
            del self._chunks[index]
            del self._lasts[index]

    def between(
        self, lower: tuple[Key, bool] | None, upper: tuple[Key, bool] | None, reverse: bool
    ) -> Iterator[Key]:
        """The keys within the bounds (a bound: a key prefix and whether it is inclusive; a key is compared
        on the bound's length), in order or reversed."""
        start = (
            self._position(lower[0], bisect.bisect_left if lower[1] else bisect.bisect_right)
            if lower
            else (0, 0)
        )
        end = (
            self._position(upper[0], bisect.bisect_right if upper[1] else bisect.bisect_left)
            if upper
            else (len(self._chunks), 0)
        )
        if start >= end:
            return iter(())
        indexes = range(start[0], min(end[0] + 1, len(self._chunks)))
        if reverse:
            return (key for index in reversed(indexes) for key in reversed(self._slice(index, start, end)))
        return (key for index in indexes for key in self._slice(index, start, end))

    def _slice(self, index: int, start: tuple[int, int], end: tuple[int, int]) -> list[Key]:
        """The keys of chunk `index` between the positions `start` and `end` (a chunk at a time, as the
        reader gets to it: a page of a long range copies no more than it reads, and a chunk)."""
        chunk = self._chunks[index]
        first = start[1] if index == start[0] else 0
        last = end[1] if index == end[0] else len(chunk)
        return chunk[first:last]

    def _position(self, prefix: Key, find: Find) -> tuple[int, int]:
        """Where `find` (bisect_left or bisect_right) puts `prefix` among the keys cut to its length:
        (chunk, offset), or (number of chunks, 0) past the last key."""
        size = len(prefix)

        def cut(key: Key) -> Key:
            return key[:size]

        index = find(self._lasts, prefix, key=cut)
        if index == len(self._chunks):
            return index, 0
        return index, find(self._chunks[index], prefix, key=cut)
