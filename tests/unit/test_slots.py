"""Tests of the group's send schedule and of the limiter that sends in a member's slots."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.scim.shared_limit import SharedRateLimiter, build_limiter
from consumer.scim.slots import SlotGrid
from consumer.scim.throttle import AdaptiveRateLimiter
from consumer.share import Share


class FakeTime:
    """One clock for monotonic and wall time, and a sleep that advances it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(grid: SlotGrid, time: FakeTime, share: Share | None) -> SharedRateLimiter:
    """A limiter on the fake clock."""
    return SharedRateLimiter(grid, share=share, clock=time, wall_clock=time, sleep=time.sleep)


def sends(members: list[SharedRateLimiter], time: FakeTime, seconds: float) -> list[float]:
    """The send times of members that always have work, merged in time order."""
    sent: list[float] = []
    end = time.now + seconds
    while time.now < end:
        waits = [member.try_acquire() for member in members]
        granted = [wait for wait in waits if wait <= 0]
        sent.extend(time.now for _ in granted)
        if not granted:
            time.now += min(waits)
    return sent


@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.sampled_from([0.0, 0.1, 0.25]),
)
def test_members_never_share_a_slot_and_together_keep_to_the_ceiling(
    owners: list[int], replay_share: float
) -> None:
    """However partitions are spread, the group's sends are at least one interval apart."""
    total = len(owners)
    grid = SlotGrid.per_minute(600, replay_share)
    time = FakeTime()
    members = [
        limiter(grid, time, Share.of((p for p in range(total) if owners[p] == m), total))
        for m in range(4)
    ]
    if replay_share:
        members.append(limiter(grid, time, None))
    sent = sends(members, time, 10.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert min(gaps) >= grid.interval - 1e-6
    # Every slot has an owner that always has work: the group sends at the full ceiling.
    assert len(sent) >= 10.0 / grid.interval - 2


@pytest.mark.parametrize(("owned", "expected"), [({0}, 150), ({0, 1}, 300), ({0, 1, 2, 3}, 600)])
def test_a_member_sends_its_share_of_the_ceiling(owned: set[int], expected: int) -> None:
    """Owning 1, 2 or 4 of 4 partitions under a 600/min ceiling: 150, 300 or 600 a minute."""
    time = FakeTime()
    member = limiter(SlotGrid.per_minute(600), time, Share.of(owned, 4))
    assert member.current_rate_per_minute == pytest.approx(expected)
    assert len(sends([member], time, 60.0)) == pytest.approx(expected, abs=1)


def test_a_rebalance_moves_the_member_into_its_new_slots() -> None:
    """From 1 of 4 partitions to 3 of 4: the rate triples from the next slot on."""
    time = FakeTime()
    member = limiter(SlotGrid.per_minute(600), time, Share.of({0}, 4))
    assert len(sends([member], time, 6.0)) == pytest.approx(15, abs=1)
    member.set_share(Share.of({0, 1, 2}, 4))
    assert len(sends([member], time, 6.0)) == pytest.approx(45, abs=1)


def test_a_member_without_partitions_sends_nothing() -> None:
    """Owning no partition, a member has no slot and waits to be given one."""
    time = FakeTime()
    member = limiter(SlotGrid.per_minute(600), time, Share.of((), 4))
    assert member.try_acquire() > 0
    assert member.current_rate_per_minute == 0.0


def test_a_429_honours_retry_after_and_uses_fewer_slots_until_success_returns() -> None:
    """A 429 blocks for Retry-After and cuts the used slots by a fifth, once per overload."""
    time = FakeTime()
    member = limiter(SlotGrid.per_minute(600), time, Share.whole())
    sent_at = time.now
    member.on_throttled(2.0, sent_at=sent_at)
    member.on_throttled(2.0, sent_at=sent_at)
    assert member.current_rate_per_minute == pytest.approx(480)
    assert member.try_acquire() == pytest.approx(2.0)
    time.now += 2.0
    for _ in range(400):
        member.on_success()
    assert member.current_rate_per_minute == pytest.approx(600)


def test_a_replay_sends_only_in_its_share_of_the_slots() -> None:
    """With a fifth of a 600/min ceiling set aside, a replay sends 120 a minute, the group 480."""
    grid = SlotGrid.per_minute(600, 0.2)
    time = FakeTime()
    replay = limiter(grid, time, None)
    group = limiter(grid, FakeTime(), Share.whole())
    assert (replay.current_rate_per_minute, group.current_rate_per_minute) == (
        pytest.approx(120),
        pytest.approx(480),
    )
    assert len(sends([replay], time, 60.0)) == pytest.approx(120, abs=1)


def test_without_a_ceiling_the_limiter_adapts_by_itself() -> None:
    """No ceiling: the adaptive limiter, unpaced until a 429; a ceiling: the group's slots."""
    assert isinstance(build_limiter(0), AdaptiveRateLimiter)
    shared = build_limiter(600, 0.1, replay=True)
    assert isinstance(shared, SharedRateLimiter)
    assert shared.share is None
    assert shared.current_rate_per_minute == pytest.approx(60)


@pytest.mark.parametrize(
    ("interval", "replay_share"), [(0.0, 0.0), (-1.0, 0.0), (1.0, 1.0), (1.0, -0.1)]
)
def test_impossible_grids_are_refused(interval: float, replay_share: float) -> None:
    """A grid needs a positive interval and a replay share in [0, 1)."""
    with pytest.raises(ValueError, match=r"interval|replay_share"):
        SlotGrid(interval, replay_share)


def test_a_late_member_skips_a_slot_whose_successor_is_anothers() -> None:
    """20 ms late into a 100 ms slot, a member owning 1 of 2 partitions waits for its next slot."""
    grid = SlotGrid.per_minute(600)
    assert grid.next_slot(1_000_000.02, Share.of({0}, 2)) == pytest.approx(1_000_000.2)
    # The same lateness is fine when the slot after is the member's own as well.
    assert grid.next_slot(1_000_000.02, Share.whole()) == pytest.approx(1_000_000.0)


def test_a_late_send_does_not_bring_the_next_one_closer() -> None:
    """A send 40 ms late in its slot: the next goes out a whole interval after it, not 60 ms."""
    time = FakeTime(1_000_000.04)
    member = limiter(SlotGrid.per_minute(600), time, Share.whole())
    assert member.try_acquire() == 0.0
    time.now = 1_000_000.1
    assert member.try_acquire() == pytest.approx(0.04)
