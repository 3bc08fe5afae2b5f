"""The group's mass-revocation ledger: what each input partition spent in the guard's window.

One small compacted topic (`KAFKA_GUARD_TOPIC`), keyed by group, input topic and partition; the
value is the wall-clock times of the revocations charged to that partition in the window. A
member writes a partition's entry before it applies the revocation charged to it, and a member
that is given a partition reads the topic to its end before it lets any revocation through: the
previous owner's writes were acknowledged before its revocation handler returned (or before it
died), so the window's history is there to read, and a handover can neither forget nor double it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from consumer.errors import ConfigurationError
from consumer.stream.kafka import partitions_of

log = structlog.get_logger(__name__)

TOPIC_ALREADY_EXISTS = 36
# Replicated like any topic the service depends on, on a cluster big enough for it.
MAX_REPLICATION = 3
# Reading the ledger is a handful of small records; this bounds one read however slow the broker.
READ_TIMEOUT_MS = 500


class GuardLedger:
    """Reads and writes the spent budget of this group's partitions on the guard topic."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        connection: Mapping[str, Any],
        topic: str,
        group_id: str,
        input_topic: str,
    ) -> None:
        self._producer = producer
        self._connection = dict(connection)
        self.topic = topic
        self._prefix = f"{group_id}/{input_topic}/"

    def key(self, partition: int) -> bytes:
        """The ledger key of an input partition."""
        return f"{self._prefix}{partition}".encode()

    async def write(self, spends: Mapping[int, Iterable[float]]) -> None:
        """Record what each partition has spent; returns once the broker acknowledged all."""
        for partition, times in spends.items():
            value = json.dumps({"spent": [round(at, 3) for at in times]}).encode()
            await self._producer.send_and_wait(self.topic, value=value, key=self.key(partition))

    async def read(self, partitions: Iterable[int]) -> dict[int, list[float]]:
        """What each of `partitions` spent, as last written (empty for one never written)."""
        wanted = {self.key(partition): partition for partition in partitions}
        found: dict[int, list[float]] = {partition: [] for partition in wanted.values()}
        if not wanted:
            return found
        reader = AIOKafkaConsumer(
            **self._connection,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            # Asks the broker, so a topic created a moment ago is seen (on Apache Kafka too).
            ids = await partitions_of(reader, self.topic, within=5.0)
            assigned = [TopicPartition(self.topic, number) for number in ids]
            reader.assign(assigned)
            await reader.seek_to_beginning(*assigned)
            ends = await reader.end_offsets(assigned)
            left = {tp for tp in assigned if ends[tp] > 0}
            while left:
                batch = await reader.getmany(*left, timeout_ms=READ_TIMEOUT_MS)
                for records in batch.values():
                    for record in records:
                        partition = wanted.get(record.key or b"")
                        if partition is not None:
                            found[partition] = _spent(record.value)
                # Tansu reports a batch's base offset + 1 as the end: the batch that holds the
                # reported last offset holds the rest of it, so reaching that offset is enough.
                left = {tp for tp in left if await reader.position(tp) < ends[tp]}
        finally:
            await reader.stop()
        return found


def _spent(value: bytes | None) -> list[float]:
    """The times of a ledger value; an unreadable value counts as nothing spent, and says so."""
    try:
        document = json.loads(value or b"")
        return [float(at) for at in document["spent"]]
    except (ValueError, TypeError, KeyError):
        log.warning("guard.ledger_unreadable")
        return []


async def ensure_ledger_topic(
    connection: Mapping[str, Any], topic: str, *, setting: str = "KAFKA_GUARD_TOPIC"
) -> None:
    """Create a compacted one-partition topic (the guard's, or `setting`'s) unless it exists."""
    try:
        await _ensure_topic(connection, topic, setting)
    except KafkaError as error:
        raise ConfigurationError(
            f"start-up error: {setting}: could not check or create {topic}: "
            f"{type(error).__name__}; create it, compacted, with one partition, and let the "
            "service read and write it"
        ) from None


async def _ensure_topic(connection: Mapping[str, Any], topic: str, setting: str) -> None:
    admin = AIOKafkaAdminClient(**connection)
    await admin.start()
    try:
        if topic in set(await admin.list_topics()):
            return
        cluster = await admin.describe_cluster()
        replicas = max(1, min(MAX_REPLICATION, len(cluster.get("brokers", ()))))
        response = await admin.create_topics(
            [NewTopic(topic, 1, replicas, topic_configs={"cleanup.policy": "compact"})]
        )
        for entry in getattr(response, "topic_errors", []):
            code = int(entry[1])
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise ConfigurationError(
                    f"start-up error: {setting}: {topic} does not exist and could not be "
                    f"created (error code {code}): create it, compacted, with one partition"
                )
        log.info("topic.created", topic=topic, setting=setting, replicas=replicas)
    finally:
        await admin.close()
