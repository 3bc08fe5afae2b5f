"""The ingress's durable state: one compacted Kafka topic, one record per resource or user.

Keys are `User/<id>` and `Group/<id>` (the resource as the IdP last left it; a tombstone once
deleted) and `Emitted/<id>` (the last event emitted for an IdP user). Every write is awaited
until the broker acknowledged it (acks=all) before the SCIM response is sent, and at start-up
the topic is read to its end, so what an IdP was told succeeded survives any restart. Kafka is
already the service's engine: no database to run, back up or secure besides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.errors import ConfigurationError
from consumer.stream.kafka import partitions_of, stop_consumer

__all__ = ["StateTopic"]

# A read of the topic's end waits this long for each batch, however slow the broker.
READ_TIMEOUT_MS = 500


class StateTopic:
    """Reads the whole state at start-up; writes one record at a time, acknowledged."""

    def __init__(
        self, producer: AIOKafkaProducer, *, connection: Mapping[str, Any], topic: str
    ) -> None:
        self._producer = producer
        self._connection = dict(connection)
        self.topic = topic

    async def put(self, key: str, document: Mapping[str, Any] | None) -> None:
        """Write a record (None: a tombstone); returns once the broker acknowledged it."""
        value = None if document is None else json.dumps(document, separators=(",", ":")).encode()
        await self._producer.send_and_wait(self.topic, value=value, key=key.encode())

    async def read_all(self) -> dict[str, dict[str, Any]]:
        """Every live record, the last of each key, as written; tombstoned keys are left out."""
        reader = AIOKafkaConsumer(
            **self._connection,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        found: dict[str, dict[str, Any]] = {}
        try:
            await reader.topics()
            numbers = await partitions_of(reader, self.topic)
            if len(numbers) != 1:
                raise ConfigurationError(
                    f"start-up error: INGRESS_STATE_TOPIC: {self.topic} has {len(numbers)} "
                    "partitions; it needs exactly one (its records are read in order)"
                )
            partition = TopicPartition(self.topic, numbers[0])
            reader.assign([partition])
            await reader.seek_to_beginning(partition)
            end = (await reader.end_offsets([partition]))[partition]
            # Tansu reports a batch's base offset + 1 as the end: the batch that holds the
            # reported last offset holds the rest of it, so reaching that offset is enough.
            while await reader.position(partition) < end:
                batch = await reader.getmany(partition, timeout_ms=READ_TIMEOUT_MS)
                for record in batch.get(partition, ()):
                    key = (record.key or b"").decode("utf-8", "replace")
                    if record.value is None:
                        found.pop(key, None)
                    else:
                        found[key] = json.loads(record.value)
        finally:
            await stop_consumer(reader)
        return found
