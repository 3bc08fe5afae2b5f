"""The audit topic's partitions merged into one sequence in time order (`processed_at`).

Pure. Each partition is read in its own order, and a partition's results come in about the
order they were processed. A result is let out only while every partition that still has
results to read has one buffered: the smallest head is then the earliest of all, so lines
come in time order across partitions, holding at most one fetch per partition in memory.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

from consumer.events import AuditEvent

P = TypeVar("P", bound=Hashable)


def time_order(event: AuditEvent) -> tuple[datetime, int, int]:
    """The sort key of a result: when it was processed, then where its input was read."""
    data = event.data
    return (data.processed_at, data.source.partition, data.source.offset)


class PartitionMerge(Generic[P]):
    """Buffers each partition's results and lets them out in time order across partitions."""

    def __init__(self, partitions: Iterable[P]) -> None:
        self._buffers: dict[P, deque[AuditEvent]] = {p: deque() for p in partitions}
        self._finished: set[P] = set()

    def starving(self) -> list[P]:
        """The partitions to read before anything more can be let out."""
        return [p for p, buffer in self._buffers.items() if not buffer and p not in self._finished]

    def add(self, partition: P, events: Iterable[AuditEvent]) -> None:
        """Buffer a partition's next results, in its order."""
        self._buffers[partition].extend(events)

    def finish(self, partition: P) -> None:
        """Note that a partition has nothing more to read."""
        self._finished.add(partition)

    def ready(self) -> Iterator[AuditEvent]:
        """Let out results in time order while no partition with more to read is empty."""
        heads = [
            (time_order(buffer[0]), index, p)
            for index, (p, buffer) in enumerate(self._buffers.items())
            if buffer
        ]
        heapq.heapify(heads)
        while heads and not self.starving():
            _, index, partition = heapq.heappop(heads)
            buffer = self._buffers[partition]
            yield buffer.popleft()
            if buffer:
                heapq.heappush(heads, (time_order(buffer[0]), index, partition))

    @property
    def done(self) -> bool:
        """Whether every partition is finished and every result let out."""
        return len(self._finished) == len(self._buffers) and not any(self._buffers.values())
