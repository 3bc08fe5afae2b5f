"""The offset tracker: which offset of each partition is safe to commit.

Records are tracked in fetch order and finish in any order. The commit value of a partition is
the offset to resume from after a crash, so it must never pass a record that is not finished:

* while some tracked record is unfinished, it is the lowest unfinished tracked offset;
* once every tracked record is finished, it is the last tracked offset + 1;
* before the first tracked record of a partition finishes, there is none.

Offsets may have gaps (compacted topics, transaction markers). A gap is not a record, so resuming
at the next unfinished record skips nothing: with offsets 5, 7, 9 tracked and 5 and 7 finished,
the commit value is 9, not 8. This relies on every fetched record being tracked.

Each assignment of a partition gets an epoch, returned by `track`. After `forget`, late finishes
of that partition's records are ignored; passing the epoch to `finish` keeps them harmless even
when the partition is assigned again and its records are fetched a second time.

Single event loop, no locks: every operation is amortized O(1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class _Partition:
    """The tracked records of one assignment of one partition."""

    __slots__ = ("committed", "epoch", "last_tracked", "order", "prefix_end", "unfinished")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        # Tracked offsets not yet folded into the finished prefix; the head is always unfinished.
        self.order: deque[int] = deque()
        self.unfinished: set[int] = set()
        self.last_tracked: int | None = None
        # Highest offset of the finished prefix, None until the first tracked record finishes.
        self.prefix_end: int | None = None
        self.committed: int | None = None

    def position(self) -> int | None:
        """The offset to resume from, or None when no leading record has finished yet."""
        if self.prefix_end is None:
            return None
        if self.order:
            return self.order[0]
        return self.prefix_end + 1


class OffsetTracker(Generic[P]):
    """Tracks records per partition and tells which offsets are safe to commit."""

    def __init__(self) -> None:
        self._partitions: dict[P, _Partition] = {}
        # Last epoch handed out per partition; kept after `forget` to recognise late finishes.
        self._epochs: dict[P, int] = {}
        self._pending = 0

    def track(self, tp: P, offset: int) -> int:
        """Record a fetched record; offsets must increase per partition. Returns its epoch."""
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
        part.unfinished.add(offset)
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
        try:
            part.unfinished.remove(offset)
        except KeyError:
            raise ValueError(
                f"offset {offset} of {tp!r} was never tracked or is already finished"
            ) from None
        self._pending -= 1
        order = part.order
        while order and order[0] not in part.unfinished:
            part.prefix_end = order.popleft()

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

    def total_pending(self) -> int:
        """How many tracked records of all partitions are not finished."""
        return self._pending

    def forget(self, tp: P) -> None:
        """Drop a revoked partition's state; its records finishing later are ignored."""
        part = self._partitions.pop(tp, None)
        if part is not None:
            self._pending -= len(part.unfinished)
