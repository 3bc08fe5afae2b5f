"""Feeding a topic and reading results back: used by the demo, the benchmark and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.events import AuditEvent
from consumer.stream.broker_profile import idempotence_at
from consumer.stream.kafka import partitions_of


async def produce(
    bootstrap_servers: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    headers: Sequence[tuple[str, bytes]] = (),
) -> int:
    """Produce (key, value) records and wait until the broker acknowledged all of them."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=await idempotence_at(bootstrap_servers),
        linger_ms=5,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=list(headers))
            for key, value in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(futures)


class TopicReader:
    """Reads every partition of a topic from the beginning, outside any consumer group."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
        )
        self.records: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        partitions = [
            TopicPartition(self._topic, number)
            for number in await partitions_of(self._consumer, self._topic)
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    async def poll(self) -> int:
        """Fetch what arrived; return how many records are held in all."""
        batch = await self._consumer.getmany(timeout_ms=100)
        for records in batch.values():
            for record in records:
                headers = {name: value for name, value in record.headers}
                self.records.append((record.key, record.value, headers))
        return len(self.records)

    async def wait_until(
        self, condition: Callable[[TopicReader], bool], *, within: float, what: str
    ) -> None:
        """Poll until `condition(self)` holds; after `within` seconds raise TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not condition(self):
            if loop.time() > deadline:
                raise TimeoutError(f"timed out after {within}s waiting for {what}")
            await self.poll()


class AuditReader(TopicReader):
    """Reads audit events; `results` keeps the newest audit per input record."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        super().__init__(bootstrap_servers, topic)
        self.events: list[AuditEvent] = []
        self.results: dict[tuple[int, int], AuditEvent] = {}

    async def poll(self) -> int:
        """Fetch and parse what arrived; return how many audit events are held in all."""
        seen = len(self.records)
        await super().poll()
        for _, value, _ in self.records[seen:]:
            if value:
                event = AuditEvent.model_validate_json(value)
                self.events.append(event)
                self.results[(event.data.source.partition, event.data.source.offset)] = event
        return len(self.events)

    async def wait_for_results(
        self, count: int, *, within: float
    ) -> dict[tuple[int, int], AuditEvent]:
        """Wait until `count` distinct input records have an audit event."""
        await self.wait_until(
            lambda _: len(self.results) >= count, within=within, what=f"{count} audit results"
        )
        return self.results
