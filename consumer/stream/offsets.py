"""The offset tracker: which offset of each partition is safe to commit.

Records are tracked in fetch order and finish in any order. The commit value of a partition is
the offset to resume from after a crash, so it must never pass a record that is not finished:

* while some tracked record is unfinished, it is the lowest unfinished tracked offset;
* once every tracked record is finished, it is the last tracked offset + 1;
* before the first tracked record of a partition finishes, there is none.

Offsets may have gaps (compacted topics, transaction markers). A gap is not a record, so resuming
at the next unfinished record skips nothing: with offsets 5, 7, 9 tracked and 5 and 7 finished,
the commit value is 9, not 8. This relies on every fetched record being tracked. Gaps after the
last tracked record show only in the fetch position (`passed`): once everything is finished, the
commit value is that position, as a Java consumer would commit.

Each assignment of a partition gets an epoch, returned by `track`. After `forget`, late finishes
of that partition's records are ignored; passing the epoch to `finish` keeps them harmless even
when the partition is assigned again and its records are fetched a second time.

A record can also be held (`hold`): finished or not, the commit value stays at or below it until it
is released. The consumer holds a record whose write got no answer until its user is read again,
once that request can no longer land, so that a handover or a restart before that second look
redelivers the record and the next owner looks instead. A held record that is finished no longer
counts as pending work, but it still bounds the uncommitted window.

Memory follows the unfinished records, not the traffic: finished records behind an unfinished
head are dropped in amortized O(1), so one stuck record costs one entry however much is fetched
after it. The window between the head and the last fetched record is what the consumer bounds
(`uncommitted`), and `oldest_unfinished` says which record holds it and since when.

Single event loop, no locks: every operation is amortized O(1).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Mapping
from typing import Generic, NamedTuple, TypeVar

P = TypeVar("P", bound=Hashable)


class Unfinished(NamedTuple):
    """A tracked record not yet finished: where, since when, and whose."""

    offset: int
    tracked_at: float
    note: str | None


class _Partition:
    """The tracked records of one assignment of one partition."""

    __slots__ = (
        "committed",
        "epoch",
        "head_finished",
        "held",
        "holds",
        "last_tracked",
        "order",
        "passed",
        "unfinished",
    )

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        # Tracked offsets in fetch order, finished ones dropped lazily; the head is unfinished.
        self.order: deque[int] = deque()
        self.unfinished: dict[int, Unfinished] = {}
        self.last_tracked: int | None = None
        # The fetch position once it passed offsets that are no record (markers, aborted ones).
        self.passed: int | None = None
        # Whether the first tracked record has finished: until then there is nothing to commit.
        self.head_finished = False
        self.committed: int | None = None
        # Held offsets, and a heap of them (entries of released ones are dropped lazily).
        self.held: set[int] = set()
        self.holds: list[int] = []

    def lowest_hold(self) -> int | None:
        """The lowest held offset, or None."""
        holds = self.holds
        while holds and holds[0] not in self.held:
            heapq.heappop(holds)
        return holds[0] if holds else None

    def position(self) -> int | None:
        """The offset to resume from, or None when no leading record has finished yet."""
        if not self.head_finished:
            return None
        return self.resume_at()

    def resume_at(self) -> int | None:
        """The lowest unfinished or held offset, else past the last tracked record and the gaps
        the fetch passed after it (None when nothing tracked)."""
        if self.order:
            resume = self.order[0]
        elif self.last_tracked is None:
            return None
        else:
            resume = max(self.last_tracked + 1, self.passed or 0)
        held = self.lowest_hold()
        return resume if held is None else min(resume, held)

    def drop_finished(self) -> None:
        """Pop finished records off the head; compact when finished ones dominate the rest."""
        order = self.order
        while order and order[0] not in self.unfinished:
            order.popleft()
            self.head_finished = True
        if len(order) > 2 * len(self.unfinished) + 16:
            # Still in fetch order: a filter keeps a sorted deque sorted.
            self.order = deque(offset for offset in order if offset in self.unfinished)


class OffsetTracker(Generic[P]):
    """Tracks records per partition and tells which offsets are safe to commit."""

    def __init__(self) -> None:
        self._partitions: dict[P, _Partition] = {}
        # Last epoch handed out per partition; kept after `forget` to recognise late finishes.
        self._epochs: dict[P, int] = {}
        self._pending = 0

    def track(self, tp: P, offset: int, *, at: float = 0.0, note: str | None = None) -> int:
        """Record a fetched record (fetched `at`, about `note`); offsets must increase per
        partition. Returns its epoch."""
        part = self._partitions.get(tp)
        if part is None:
            epoch = self._epochs.get(tp, 0) + 1
            self._epochs[tp] = epoch
            part = self._partitions[tp] = _Partition(epoch)
        if offset < 0:
            raise ValueError(f"offset {offset} of {tp!r} is negative")
        if part.last_tracked is not None and offset <= part.last_tracked:
            raise ValueError(
                f"offset {offset} of {tp!r} is not above the last tracked one ({part.last_tracked})"
            )
        part.order.append(offset)
        part.unfinished[offset] = Unfinished(offset, at, note)
        part.last_tracked = offset
        self._pending += 1
        return part.epoch

    def finish(self, tp: P, offset: int, epoch: int | None = None) -> None:
        """Mark a tracked record finished; late finishes of a forgotten assignment are ignored."""
        part = self._partitions.get(tp)
        issued = self._epochs.get(tp)
        if epoch is not None and (part is None or epoch != part.epoch):
            if issued is not None and 0 < epoch <= issued:
                return
            raise ValueError(f"epoch {epoch} was never issued for {tp!r}")
        if part is None:
            if issued is not None:
                return
            raise ValueError(f"partition {tp!r} was never tracked")
        if part.unfinished.pop(offset, None) is None:
            raise ValueError(f"offset {offset} of {tp!r} was never tracked or is already finished")
        self._pending -= 1
        part.drop_finished()

    def hold(self, tp: P, offset: int, epoch: int) -> None:
        """Keep the commit value of `tp` at or below the unfinished record `offset`, even once it
        is finished, until `release`; a hold of a forgotten assignment is ignored."""
        part = self._current(tp, epoch)
        if part is None or offset in part.held:
            return
        if offset not in part.unfinished:
            raise ValueError(f"offset {offset} of {tp!r} is finished or was never tracked")
        part.held.add(offset)
        heapq.heappush(part.holds, offset)

    def release(self, tp: P, offset: int, epoch: int) -> None:
        """End the hold of a record; releasing one not held (or forgotten) does nothing."""
        part = self._current(tp, epoch)
        if part is None:
            return
        part.held.discard(offset)
        if len(part.holds) > 2 * len(part.held) + 16:
            part.holds = sorted(part.held)  # a sorted list is a heap

    def held(self, tp: P) -> int:
        """How many records of `tp` are held."""
        part = self._partitions.get(tp)
        return 0 if part is None else len(part.held)

    def _current(self, tp: P, epoch: int) -> _Partition | None:
        """The partition's state if `epoch` is its current assignment's, else None."""
        part = self._partitions.get(tp)
        return part if part is not None and part.epoch == epoch else None

    def passed(self, tp: P, position: int) -> None:
        """Note that the fetch of `tp` is at `position` and every record below it is tracked.

        Offsets between the last tracked record and `position` are then no records (transaction
        markers, aborted transactions), so once every tracked record is finished the commit
        value moves past them, and a transactional topic's lag reaches 0. A partition with no
        record tracked in this assignment is left alone.
        """
        part = self._partitions.get(tp)
        if part is None or part.last_tracked is None or position <= part.last_tracked + 1:
            return
        part.passed = max(part.passed or 0, position)

    def finished_position(self, tp: P) -> int | None:
        """The commit value of `tp` now (see the module docstring), or None if there is none."""
        part = self._partitions.get(tp)
        return None if part is None else part.position()

    def committable(self) -> dict[P, int]:
        """Commit values of the partitions whose commit point advanced since the last commit."""
        result: dict[P, int] = {}
        for tp, part in self._partitions.items():
            position = part.position()
            if position is not None and (part.committed is None or position > part.committed):
                result[tp] = position
        return result

    def mark_committed(self, offsets: Mapping[P, int]) -> None:
        """Record that these commit values reached Kafka; unknown partitions are ignored."""
        for tp, offset in offsets.items():
            part = self._partitions.get(tp)
            if part is not None and (part.committed is None or offset > part.committed):
                part.committed = offset

    def pending(self, tp: P) -> int:
        """How many tracked records of `tp` are not finished."""
        part = self._partitions.get(tp)
        return 0 if part is None else len(part.unfinished)

    def uncommitted(self, tp: P) -> int:
        """Offsets from the lowest unfinished record through the last fetched one (0 when none)."""
        part = self._partitions.get(tp)
        if part is None or part.last_tracked is None:
            return 0
        resume_at = part.resume_at()
        assert resume_at is not None
        return part.last_tracked + 1 - resume_at

    def oldest_unfinished(self, tp: P) -> Unfinished | None:
        """The record holding `tp`'s commit point, or None when every tracked one finished."""
        part = self._partitions.get(tp)
        if part is None or not part.order:
            return None
        return part.unfinished[part.order[0]]

    def retained(self, tp: P) -> int:
        """How many offsets of `tp` the tracker holds in memory (bounded by twice the pending)."""
        part = self._partitions.get(tp)
        return 0 if part is None else len(part.order) + len(part.unfinished)

    def partitions(self) -> list[P]:
        """The partitions tracked now."""
        return list(self._partitions)

    def total_pending(self) -> int:
        """How many tracked records of all partitions are not finished."""
        return self._pending

    def forget(self, tp: P) -> None:
        """Drop a revoked partition's state; its records finishing later are ignored."""
        part = self._partitions.pop(tp, None)
        if part is not None:
            self._pending -= len(part.unfinished)
