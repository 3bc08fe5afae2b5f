"""Consumer lag per partition, and the one place that works around Tansu's high watermark.

Lag is the log end offset minus the committed offset. Tansu 0.6 reports a high watermark that
counts a multi-record batch as one record, so its end offset can sit below records the consumer
has already fetched or committed. Offsets the consumer has seen are facts about the log, so the
log end is taken as the largest of the reported end, the fetch position and the committed offset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping
from typing import Generic, Protocol, TypeVar

import structlog

from consumer.observability.metrics import CONSUMER_LAG

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_SECONDS = 5.0


class TopicPartitionLike(Protocol):
    """What lag needs from a partition: aiokafka's `TopicPartition` fits."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


P = TypeVar("P", bound=TopicPartitionLike)


class OffsetSource(Protocol[P]):
    """The broker-facing calls lag needs: an `AIOKafkaConsumer` provides all three."""

    async def end_offsets(self, partitions: list[P], /) -> Mapping[P, int]: ...

    async def committed(self, partition: P, /) -> int | None: ...

    async def position(self, partition: P, /) -> int: ...


def partition_lag(
    end_offset: int | None, committed: int | None, position: int | None
) -> int | None:
    """Records left to finish in one partition, or None when nothing is known about it."""
    known_ends = [offset for offset in (end_offset, position, committed) if offset is not None]
    # Without a commit, the fetch position is where the group would resume.
    start = committed if committed is not None else position
    if start is None or not known_ends:
        return None
    return max(0, max(known_ends) - start)


class LagRefresher(Generic[P]):
    """Keeps `cxone_sync_consumer_lag` current for the tracked partitions, every few seconds.

    `committed` is the consumer's own record of what it committed, read without a broker round
    trip; a partition missing from it (committed by its previous owner) is asked of the broker.
    """

    def __init__(
        self,
        source: OffsetSource[P],
        *,
        committed: Mapping[P, int] | None = None,
        interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self._source = source
        self._committed: Mapping[P, int] = committed if committed is not None else {}
        self.interval = interval
        self._partitions: frozenset[P] = frozenset()
        self._reported: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def track(self, partitions: Collection[P]) -> None:
        """Measure these partitions from now on (the consumer's assignment after a rebalance)."""
        self._partitions = frozenset(partitions)

    async def refresh(self) -> dict[tuple[str, int], int]:
        """Measure the lag of every tracked partition once, update the gauge and return it."""
        partitions = sorted(self._partitions, key=lambda tp: (tp.topic, tp.partition))
        ends = await self._source.end_offsets(partitions) if partitions else {}
        lags: dict[tuple[str, int], int] = {}
        for tp in partitions:
            lag = partition_lag(
                ends.get(tp), await self._committed_of(tp), await self._position(tp)
            )
            if lag is not None:
                lags[(tp.topic, tp.partition)] = lag
        current = {(topic, str(partition)) for topic, partition in lags}
        # A partition that moved to another consumer is that consumer's to report now.
        for labels in self._reported - current:
            CONSUMER_LAG.remove(*labels)
        for (topic, partition), lag in lags.items():
            CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)
        self._reported = current
        return lags

    async def _committed_of(self, tp: P) -> int | None:
        local = self._committed.get(tp)
        if local is not None:
            return local
        return await self._source.committed(tp)

    async def _position(self, tp: P) -> int | None:
        # aiokafka waits for a position that is being reset; lag can do without it meanwhile.
        try:
            async with asyncio.timeout(self.interval / 2):
                return await self._source.position(tp)
        except TimeoutError:
            return None

    async def run(self) -> None:
        """Refresh until cancelled; a failed round is logged and the next one tries again."""
        while True:
            try:
                async with asyncio.timeout(self.interval * 2):
                    await self.refresh()
            except TimeoutError:
                log.warning("lag.refresh_timeout", timeout_seconds=self.interval * 2)
            except Exception as error:
                # A rebalance can revoke a partition between two calls; the next round recovers.
                log.warning("lag.refresh_failed", error=type(error).__name__, detail=str(error))
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        """Run the refresh loop in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="lag-refresher")

    async def stop(self) -> None:
        """Stop refreshing and drop every series this refresher reported."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for labels in self._reported:
            CONSUMER_LAG.remove(*labels)
        self._reported = set()
