"""`keep_recent`, the bound on what a process remembers of what it saw lately (a shard owner's transfers,
requests, tallies, markers, closed holds and escrows; the credentials it resolved): never more than its
bound, the newest kept, the oldest forgotten first, and no more than an eighth of the bound forgotten
beyond it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from jubao_server.bounded import keep_recent


@given(
    entries_max=st.integers(min_value=1, max_value=64),
    additions=st.lists(st.integers(min_value=0, max_value=40), max_size=30),
)
def test_the_newest_are_kept_within_the_bound(entries_max: int, additions: list[int]) -> None:
    recent: dict[str, int] = {}
    added: list[str] = []
    for count in additions:
        new = {f"k{len(added) + i}": len(added) + i for i in range(count)}
        added += new
        keep_recent(recent, new, entries_max)
        assert len(recent) <= entries_max
        assert len(recent) >= min(len(added), entries_max - entries_max // 8)
        assert list(recent) == added[len(added) - len(recent) :]
        assert all(recent[key] == int(key[1:]) for key in recent)


def test_an_entry_added_again_keeps_its_place_and_takes_its_new_value() -> None:
    recent = {"a": 1, "b": 2}
    keep_recent(recent, {"a": 3, "c": 4}, 3)
    assert recent == {"a": 3, "b": 2, "c": 4}
    assert list(recent) == ["a", "b", "c"]
