"""Tests of consumer lag: the pure computation with Tansu's quirk, and the refresher's gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from consumer.observability.lag import LagRefresher, partition_lag
from consumer.observability.metrics import REGISTRY

offsets = st.integers(min_value=0, max_value=10**12)


class TP(NamedTuple):
    topic: str
    partition: int


def test_lag_is_end_minus_committed() -> None:
    """With a truthful end offset, lag is the log end minus the committed offset."""
    assert partition_lag(100, 40, 60) == 60


def test_tansu_end_offset_below_the_fetch_position_uses_the_position() -> None:
    """Tansu reports 3 for a log the consumer has fetched to 25: the log ends at least at 25."""
    assert partition_lag(3, 10, 25) == 15


def test_everything_committed_is_zero_lag_even_when_the_end_offset_lags_behind() -> None:
    """A commit beyond Tansu's under-counted end offset means nothing is left."""
    assert partition_lag(3, 25, 25) == 0


def test_without_a_commit_the_fetch_position_is_the_start() -> None:
    """A group that never committed resumes from its fetch position."""
    assert partition_lag(100, None, 30) == 70


def test_missing_end_offset_falls_back_to_what_the_consumer_saw() -> None:
    """Without an end offset, the fetch position bounds the log end."""
    assert partition_lag(None, 10, 12) == 2


def test_nothing_known_gives_no_lag() -> None:
    """Neither a commit nor a position: the lag is unknown, not zero."""
    assert partition_lag(100, None, None) is None
    assert partition_lag(None, None, None) is None


@given(end=offsets, committed=offsets, position=offsets)
def test_lag_is_never_negative_nor_below_any_known_gap(
    end: int, committed: int, position: int
) -> None:
    """Lag is the largest known end minus the commit: never negative, never under-counted."""
    lag = partition_lag(end, committed, position)
    assert lag == max(end, committed, position) - committed
    assert lag >= 0


class FakeOffsets:
    """In-memory broker answers for the refresher."""

    def __init__(self, ends: dict[TP, int], committed: dict[TP, int | None]) -> None:
        self.ends = ends
        self.remote_committed = committed
        self.positions: dict[TP, int] = {}
        self.failures = 0
        self.committed_calls: list[TP] = []
        self.answered = 0
        # Set when a round starts after a complete successful one.
        self.second_answer = asyncio.Event()

    async def end_offsets(self, partitions: list[TP]) -> Mapping[TP, int]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker went away")
        self.answered += 1
        if self.answered == 2:
            self.second_answer.set()
        return {tp: self.ends[tp] for tp in partitions}

    async def committed(self, partition: TP) -> int | None:
        self.committed_calls.append(partition)
        return self.remote_committed.get(partition)

    async def position(self, partition: TP) -> int:
        return self.positions.get(partition, 0)


def _lag(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "cxone_sync_consumer_lag", {"topic": topic, "partition": str(partition)}
    )


async def test_refresh_sets_the_gauge_per_tracked_partition() -> None:
    """Each tracked partition gets its lag; the local commit record wins over the broker's."""
    p0, p1 = TP("lag-a", 0), TP("lag-a", 1)
    source = FakeOffsets({p0: 50, p1: 3}, {p0: 10, p1: None})
    source.positions = {p0: 20, p1: 9}
    refresher = LagRefresher(source, committed={p0: 45})
    refresher.track([p0, p1])
    assert await refresher.refresh() == {("lag-a", 0): 5, ("lag-a", 1): 0}
    assert _lag("lag-a", 0) == 5.0
    assert _lag("lag-a", 1) == 0.0
    assert source.committed_calls == [p1]
    await refresher.stop()


async def test_revoked_partition_series_disappears() -> None:
    """A partition no longer tracked stops being reported by this consumer."""
    p0, p1 = TP("lag-b", 0), TP("lag-b", 1)
    source = FakeOffsets({p0: 10, p1: 10}, {p0: 5, p1: 5})
    refresher = LagRefresher(source)
    refresher.track([p0, p1])
    await refresher.refresh()
    refresher.track([p1])
    await refresher.refresh()
    assert _lag("lag-b", 0) is None
    assert _lag("lag-b", 1) == 5.0
    await refresher.stop()
    assert _lag("lag-b", 1) is None


async def test_background_loop_survives_a_failed_round() -> None:
    """A broker error in one round is logged and the next round updates the gauge."""
    p0 = TP("lag-c", 0)
    source = FakeOffsets({p0: 30}, {p0: 12})
    source.failures = 1
    refresher = LagRefresher(source, interval=0.01)
    refresher.track([p0])
    await refresher.start()
    await asyncio.wait_for(source.second_answer.wait(), 10)
    assert source.failures == 0
    assert _lag("lag-c", 0) == 18.0
    await refresher.stop()
    assert _lag("lag-c", 0) is None


async def test_stop_without_start_is_harmless() -> None:
    """Stopping a refresher that never ran leaves no series and raises nothing."""
    refresher = LagRefresher(FakeOffsets({}, {}))
    await refresher.stop()
    assert await refresher.refresh() == {}


async def test_slow_position_does_not_block_the_round() -> None:
    """A position call that hangs is given up on; the commit still yields a lag."""
    p0 = TP("lag-d", 0)

    class Hanging(FakeOffsets):
        async def position(self, partition: TP) -> int:
            await asyncio.Event().wait()
            return 0

    refresher = LagRefresher(Hanging({p0: 40}, {p0: 25}), interval=0.05)
    refresher.track([p0])
    assert await refresher.refresh() == {("lag-d", 0): 15}
    await refresher.stop()
