"""The open loop's schedule: arrivals follow the profile, shared out among the workers."""

from __future__ import annotations

import collections

import pytest

from loadtest.scenario import Phase, Profile
from loadtest.schedule import arrival_offset_s, total_arrivals, worker_offsets_s

RAMP = Profile(
    (
        Phase("warm-up", 2, 10, 10),
        Phase("up", 4, 10, 50),
        Phase("peak", 3, 50, 50),
        Phase("down", 2, 50, 0),
    )
)


def test_a_constant_rate_is_evenly_spaced() -> None:
    offsets = list(worker_offsets_s(Profile.constant(4, 2), 0, 1))
    assert offsets == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_the_arrivals_of_each_second_follow_the_target_rate() -> None:
    assert total_arrivals(RAMP) == 20 + 120 + 150 + 50
    per_second = collections.Counter(int(offset) for offset in worker_offsets_s(RAMP, 0, 1))
    for second in range(11):
        assert per_second[second] == pytest.approx(RAMP.rate_at(second + 0.5), abs=1)


def test_arrivals_are_in_order_and_within_the_profile() -> None:
    offsets = list(worker_offsets_s(RAMP, 0, 1))
    assert offsets == sorted(offsets)
    assert offsets[0] == 0 and offsets[-1] <= RAMP.duration_s
    assert arrival_offset_s(RAMP, total_arrivals(RAMP) + 1) is None


def test_a_ramp_from_zero_starts_slowly() -> None:
    profile = Profile((Phase("from zero", 10, 0, 100),))
    offsets = list(worker_offsets_s(profile, 0, 1))
    assert len(offsets) == 500
    assert offsets[1] == pytest.approx((2 * 1 / 10) ** 0.5)  # t^2 * 10 / 2 = 1 arrival


def test_workers_share_the_arrivals_interleaved() -> None:
    shares = [list(worker_offsets_s(RAMP, worker, 3)) for worker in range(3)]
    assert sorted(offset for share in shares for offset in share) == list(worker_offsets_s(RAMP, 0, 1))
    assert [len(share) for share in shares] == [114, 113, 113]
    assert shares[0][0] < shares[1][0] < shares[2][0] < shares[0][1]
