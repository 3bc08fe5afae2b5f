"""Tests of the offset tracker: commit values with gaps, any completion order, revocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from consumer.stream.offsets import OffsetTracker


def test_nothing_committable_before_the_first_record_finishes() -> None:
    """A partition whose first tracked record is unfinished has no commit value."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p0", 5)
    tracker.track("p0", 7)
    tracker.finish("p0", 7)
    assert tracker.committable() == {}
    assert tracker.finished_position("p0") is None


def test_commit_value_skips_gaps_to_the_lowest_unfinished_record() -> None:
    """With 5, 7, 9 tracked and 5, 7 finished, the commit value is 9, not 8."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (5, 7, 9):
        tracker.track("p0", offset)
    tracker.finish("p0", 5)
    tracker.finish("p0", 7)
    assert tracker.committable() == {"p0": 9}


def test_commit_value_is_last_plus_one_when_all_finished() -> None:
    """Once every tracked record is finished, the commit value is the last offset + 1."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in (5, 7, 9):
        tracker.track("p0", offset)
    for offset in (9, 5, 7):
        tracker.finish("p0", offset)
    assert tracker.committable() == {"p0": 10}
    assert tracker.finished_position("p0") == 10


def test_out_of_order_finish_holds_the_commit_point() -> None:
    """A later record finishing first does not move the commit point past an earlier one."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(3):
        tracker.track("p0", offset)
    tracker.finish("p0", 0)
    tracker.finish("p0", 2)
    assert tracker.committable() == {"p0": 1}
    tracker.finish("p0", 1)
    assert tracker.committable() == {"p0": 3}


def test_mark_committed_hides_partitions_until_they_advance() -> None:
    """After a commit, a partition is committable again only once its commit point moves."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(3):
        tracker.track("p0", offset)
        tracker.track("p1", offset)
    tracker.finish("p0", 0)
    tracker.finish("p1", 0)
    tracker.mark_committed(tracker.committable())
    assert tracker.committable() == {}
    tracker.finish("p1", 1)
    assert tracker.committable() == {"p1": 2}


def test_finishing_twice_is_an_error() -> None:
    """An offset finished twice raises ValueError."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p0", 1)
    tracker.track("p0", 2)
    tracker.finish("p0", 2)
    with pytest.raises(ValueError, match="already finished"):
        tracker.finish("p0", 2)
    tracker.finish("p0", 1)
    with pytest.raises(ValueError, match="already finished"):
        tracker.finish("p0", 1)


def test_finishing_an_untracked_offset_is_an_error() -> None:
    """Finishing an offset never tracked, or of a partition never tracked, raises ValueError."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p0", 1)
    with pytest.raises(ValueError, match="never tracked"):
        tracker.finish("p0", 3)
    with pytest.raises(ValueError, match="never tracked"):
        tracker.finish("p9", 1)
    assert tracker.pending("p0") == 1


def test_tracking_must_move_forward() -> None:
    """Tracking an offset not above the last tracked one of its partition raises ValueError."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p0", 4)
    with pytest.raises(ValueError, match="not above"):
        tracker.track("p0", 4)
    with pytest.raises(ValueError, match="negative"):
        tracker.track("p1", -1)
    assert tracker.total_pending() == 1


def test_pending_counts_unfinished_records() -> None:
    """Pending counts tracked-but-unfinished records per partition and in total."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(4):
        tracker.track("p0", offset)
    tracker.track("p1", 10)
    tracker.finish("p0", 2)
    assert tracker.pending("p0") == 3
    assert tracker.pending("p1") == 1
    assert tracker.pending("p2") == 0
    assert tracker.total_pending() == 4


def test_forget_drops_state_and_ignores_late_finishes() -> None:
    """After forget, the partition is gone and its in-flight records finishing late are ignored."""
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(3):
        tracker.track("p0", offset)
    tracker.track("p1", 0)
    tracker.finish("p0", 0)
    tracker.forget("p0")
    tracker.finish("p0", 1)
    tracker.finish("p0", 0)
    assert tracker.committable() == {}
    assert tracker.pending("p0") == 0
    assert tracker.total_pending() == 1
    assert tracker.finished_position("p0") is None


def test_epoch_keeps_a_late_finish_off_a_reassigned_partition() -> None:
    """A late finish from an earlier assignment does not finish the same offset fetched again."""
    tracker: OffsetTracker[str] = OffsetTracker()
    old_epoch = tracker.track("p0", 100)
    tracker.forget("p0")
    new_epoch = tracker.track("p0", 100)
    tracker.track("p0", 101)
    tracker.finish("p0", 100, old_epoch)
    assert new_epoch == old_epoch + 1
    assert tracker.pending("p0") == 2
    assert tracker.committable() == {}
    tracker.finish("p0", 100, new_epoch)
    assert tracker.committable() == {"p0": 101}


def test_an_epoch_never_issued_is_an_error() -> None:
    """Finishing with an epoch the partition never had raises ValueError."""
    tracker: OffsetTracker[str] = OffsetTracker()
    epoch = tracker.track("p0", 1)
    with pytest.raises(ValueError, match="never issued"):
        tracker.finish("p0", 1, epoch + 1)
    with pytest.raises(ValueError, match="never issued"):
        tracker.finish("p1", 1, 1)
    assert tracker.pending("p0") == 1


def test_a_long_run_finished_in_reverse_commits_once_the_head_finishes() -> None:
    """200k records finished newest first become committable only with the first, then all."""
    tracker: OffsetTracker[str] = OffsetTracker()
    count = 200_000
    for offset in range(count):
        tracker.track("p0", offset)
    for offset in range(count - 1, 0, -1):
        tracker.finish("p0", offset)
    assert tracker.committable() == {}
    tracker.finish("p0", 0)
    assert tracker.committable() == {"p0": count}
    assert tracker.total_pending() == 0


def test_a_stuck_head_holds_the_window_but_not_the_memory() -> None:
    """With the head unfinished and 100,000 records finished behind it, the window spans them all
    while the tracker keeps a handful of entries and names the head as the oldest."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p0", 0, at=5.0, note="u-stuck")
    for offset in range(1, 100_001):
        tracker.track("p0", offset, at=6.0)
        tracker.finish("p0", offset)
    assert tracker.uncommitted("p0") == 100_001
    assert tracker.retained("p0") <= 20
    assert tracker.oldest_unfinished("p0") == (0, 5.0, "u-stuck")
    assert tracker.finished_position("p0") is None
    tracker.finish("p0", 0)
    assert tracker.finished_position("p0") == 100_001
    assert tracker.uncommitted("p0") == 0
    assert tracker.oldest_unfinished("p0") is None


def test_an_untracked_partition_has_no_window() -> None:
    """A partition never tracked has an empty window and no oldest record."""
    tracker: OffsetTracker[str] = OffsetTracker()
    assert tracker.uncommitted("p9") == 0
    assert tracker.oldest_unfinished("p9") is None
    assert tracker.retained("p9") == 0


@st.composite
def offsets_and_order(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Increasing offsets with gaps, and an order in which to finish them."""
    start = draw(st.integers(min_value=0, max_value=1_000))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=80))
    offsets = [start]
    for gap in gaps[1:]:
        offsets.append(offsets[-1] + gap)
    return offsets, draw(st.permutations(offsets))


@given(offsets_and_order(), st.lists(st.booleans(), min_size=80, max_size=80))
def test_commits_never_pass_an_unfinished_record(
    case: tuple[list[int], list[int]], commit_after: list[bool]
) -> None:
    """In any completion order, commits stay at or below the lowest unfinished record and rise."""
    offsets, order = case
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in offsets:
        tracker.track("p0", offset)
    unfinished = set(offsets)
    last_commit = -1
    for step, offset in enumerate(order):
        tracker.finish("p0", offset)
        unfinished.discard(offset)
        commits = tracker.committable()
        if "p0" in commits:
            assert commits["p0"] > last_commit
            if unfinished:
                assert commits["p0"] <= min(unfinished)
            if commit_after[step]:
                tracker.mark_committed(commits)
                last_commit = commits["p0"]
    assert tracker.finished_position("p0") == offsets[-1] + 1
    assert tracker.total_pending() == 0


class TrackerMachine(RuleBasedStateMachine):
    """Random tracks, finishes, holds, releases, commits, revocations and late finishes and
    releases against a simple model."""

    stale = Bundle("stale")

    def __init__(self) -> None:
        super().__init__()
        self.tracker: OffsetTracker[int] = OffsetTracker()
        self.tracked: dict[int, list[int]] = {}
        self.unfinished: dict[int, set[int]] = {}
        self.held: dict[int, set[int]] = {}
        self.epochs: dict[int, int] = {}
        self.next_offset: dict[int, int] = {}
        self.committed: dict[int, int] = {}

    @rule(tp=st.integers(0, 2), gap=st.integers(1, 3))
    def track(self, tp: int, gap: int) -> None:
        """Track the next offset of a partition, after a gap."""
        offset = self.next_offset.get(tp, 0) + gap - 1
        self.next_offset[tp] = offset + 1
        self.epochs[tp] = self.tracker.track(tp, offset)
        self.tracked.setdefault(tp, []).append(offset)
        self.unfinished.setdefault(tp, set()).add(offset)
        self.held.setdefault(tp, set())

    def draw_unfinished(self, data: st.DataObject) -> tuple[int, int]:
        """Any unfinished record of any partition."""
        tp = data.draw(st.sampled_from(sorted(tp for tp, u in self.unfinished.items() if u)))
        return tp, data.draw(st.sampled_from(sorted(self.unfinished[tp])))

    @precondition(lambda self: any(self.unfinished.values()))
    @rule(data=st.data())
    def hold(self, data: st.DataObject) -> None:
        """Hold any unfinished record of any partition (again: no change)."""
        tp, offset = self.draw_unfinished(data)
        self.tracker.hold(tp, offset, self.epochs[tp])
        self.held[tp].add(offset)

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """Release any held record, finished or not (twice: no change)."""
        tp = data.draw(st.sampled_from(sorted(tp for tp, h in self.held.items() if h)))
        offset = data.draw(st.sampled_from(sorted(self.held[tp])))
        self.tracker.release(tp, offset, self.epochs[tp])
        self.tracker.release(tp, offset, self.epochs[tp])
        self.held[tp].discard(offset)

    @precondition(lambda self: any(self.unfinished.values()))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """Finish any unfinished record of any partition."""
        tp, offset = self.draw_unfinished(data)
        self.tracker.finish(tp, offset, self.epochs[tp])
        self.unfinished[tp].discard(offset)

    @rule()
    def commit(self) -> None:
        """Commit what is committable; each value only ever rises."""
        commits = self.tracker.committable()
        for tp, value in commits.items():
            assert value > self.committed.get(tp, -1)
        self.tracker.mark_committed(commits)
        self.committed.update(commits)

    @precondition(lambda self: bool(self.tracked))
    @rule(target=stale, data=st.data())
    def forget(self, data: st.DataObject) -> list[tuple[int, int, int]]:
        """Revoke a partition, keeping its unfinished records to finish late."""
        tp = data.draw(st.sampled_from(sorted(self.tracked)))
        self.tracker.forget(tp)
        late = [(tp, offset, self.epochs[tp]) for offset in sorted(self.unfinished[tp])]
        late += [(tp, -1 - offset, self.epochs[tp]) for offset in sorted(self.held[tp])]
        del self.tracked[tp], self.unfinished[tp], self.held[tp], self.epochs[tp]
        # A reassigned partition is fetched again from its last commit, so offsets repeat.
        self.next_offset[tp] = self.committed.pop(tp, 0)
        return late

    @rule(late=consumes(stale))
    def finish_late(self, late: list[tuple[int, int, int]]) -> None:
        """Finish and release (negative offsets) the records of a revoked partition late;
        nothing the model knows changes (the invariant checks)."""
        before = self.tracker.total_pending()
        for tp, offset, epoch in late:
            if offset < 0:
                self.tracker.release(tp, -1 - offset, epoch)
            else:
                self.tracker.finish(tp, offset, epoch)
        assert self.tracker.total_pending() == before

    @invariant()
    def matches_the_model(self) -> None:
        """Commit values and pending counts equal the model's, never past an unfinished or held
        record; held records that are finished are not pending."""
        for tp, offsets in self.tracked.items():
            unfinished = self.unfinished[tp]
            blocking = unfinished | self.held[tp]
            position = self.tracker.finished_position(tp)
            if offsets[0] in unfinished:
                assert position is None
            elif blocking:
                assert position == min(blocking)
            else:
                assert position == offsets[-1] + 1
            assert self.tracker.pending(tp) == len(unfinished)
            assert self.tracker.held(tp) == len(self.held[tp])
            head = min(blocking) if blocking else offsets[-1] + 1
            assert self.tracker.uncommitted(tp) == offsets[-1] + 1 - head
            oldest = self.tracker.oldest_unfinished(tp)
            assert (oldest.offset if oldest else None) == (min(unfinished) if unfinished else None)
            # Memory follows the unfinished records, never the finished ones behind them.
            assert self.tracker.retained(tp) <= 3 * len(unfinished) + 17
        assert self.tracker.total_pending() == sum(len(u) for u in self.unfinished.values())


TestTrackerMachine = TrackerMachine.TestCase


def test_a_held_record_keeps_the_commit_value_until_released() -> None:
    """A record held for a second look stops the commit value at it, finished or not, and keeps
    the uncommitted window open; it is not pending work once finished."""
    tracker: OffsetTracker[str] = OffsetTracker()
    epoch = tracker.track("p0", 0)
    for offset in (1, 2):
        tracker.track("p0", offset)
    tracker.hold("p0", 1, epoch)
    for offset in (0, 1, 2):
        tracker.finish("p0", offset, epoch)

    assert tracker.committable() == {"p0": 1}
    assert tracker.pending("p0") == 0
    assert tracker.uncommitted("p0") == 2
    assert tracker.oldest_unfinished("p0") is None
    tracker.release("p0", 1, epoch)
    assert tracker.committable() == {"p0": 3}


def test_only_an_unfinished_record_can_be_held() -> None:
    """Holding a finished or untracked record is an error: the commit may have passed it."""
    tracker: OffsetTracker[str] = OffsetTracker()
    epoch = tracker.track("p0", 0)
    tracker.finish("p0", 0, epoch)
    with pytest.raises(ValueError, match="finished or was never tracked"):
        tracker.hold("p0", 0, epoch)
    with pytest.raises(ValueError, match="finished or was never tracked"):
        tracker.hold("p0", 5, epoch)


def test_holds_of_a_forgotten_assignment_are_ignored() -> None:
    """After a revocation and a new assignment, the old assignment's hold and release do nothing."""
    tracker: OffsetTracker[str] = OffsetTracker()
    old = tracker.track("p0", 0)
    tracker.forget("p0")
    new = tracker.track("p0", 0)
    tracker.hold("p0", 0, old)
    tracker.finish("p0", 0, new)
    assert tracker.committable() == {"p0": 1}
    tracker.hold("p0", 1, old)
    tracker.release("p0", 0, old)
    assert tracker.held("p0") == 0


def test_a_marker_after_the_last_record_is_passed_once_everything_is_finished() -> None:
    """A fetch position past trailing markers becomes the commit value, not before."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p", 10)
    tracker.track("p", 11)
    tracker.passed("p", 13)  # offset 12: the transaction's commit marker
    tracker.finish("p", 10)
    assert tracker.committable() == {"p": 11}
    tracker.finish("p", 11)
    assert tracker.committable() == {"p": 13}


def test_a_fetch_position_never_moves_the_commit_back_or_past_an_unfinished_record() -> None:
    """Lower positions change nothing; records tracked after a gap keep their own order."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p", 4)
    tracker.passed("p", 9)
    tracker.passed("p", 3)
    tracker.track("p", 9)
    tracker.finish("p", 4)
    assert tracker.committable() == {"p": 9}
    tracker.finish("p", 9)
    assert tracker.committable() == {"p": 10}


def test_a_partition_with_nothing_tracked_is_not_committed_by_its_position() -> None:
    """Without a tracked record in this assignment, a fetch position alone commits nothing."""
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.passed("p", 7)
    assert tracker.committable() == {}
