"""One writer among ingress instances: the member of a consumer group that owns the state topic.

Every instance joins `<KAFKA_GROUP_ID>.ingress`, subscribed to the one-partition state topic;
Kafka gives that partition to one member at a time. The owner rebuilds the state from the topic
and serves; the others answer 503 (not ready) and take over when the owner leaves or dies (after
its session times out), rebuilding from the topic first, so they serve what it acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from consumer.stream.kafka import stop_consumer

__all__ = ["WriterLease"]

log = structlog.get_logger(__name__)


class WriterLease:
    """Holds the state topic's partition through the group; says when it is won and lost."""

    def __init__(
        self,
        *,
        connection: Mapping[str, Any],
        topic: str,
        group_id: str,
        on_won: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
    ) -> None:
        self._topic = topic
        self._on_won = on_won
        self._on_lost = on_lost
        self.held = False
        self._consumer = AIOKafkaConsumer(
            **connection,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Join the group; the listener says whether this member won."""
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=_Listener(self))
        self._task = asyncio.create_task(self._keep_membership(), name="ingress-writer-lease")

    async def _keep_membership(self) -> None:
        # Polling keeps the member in the group and runs its rebalances; the records are the
        # instance's own writes, already applied, so they are dropped.
        while True:
            try:
                await self._consumer.getmany(timeout_ms=1000)
            except KafkaError as error:
                log.warning("ingress.lease_poll_failed", error=type(error).__name__)
                await asyncio.sleep(1.0)

    async def won(self, assigned: set[TopicPartition]) -> None:
        """Called on assignment: rebuild and serve when the state partition is ours."""
        if any(tp.topic == self._topic for tp in assigned) and not self.held:
            await self._on_won()
            self.held = True
            log.info("ingress.writer", held=True)

    def lost(self, revoked: set[TopicPartition]) -> None:
        """Called on revocation: stop serving at once."""
        if any(tp.topic == self._topic for tp in revoked) and self.held:
            self.held = False
            self._on_lost()
            log.info("ingress.writer", held=False)

    async def stop(self) -> None:
        """Leave the group (another member takes over at once) and stop polling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await stop_consumer(self._consumer)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lease: WriterLease) -> None:
        self._lease = lease

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._lease.lost(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._lease.won(assigned)
