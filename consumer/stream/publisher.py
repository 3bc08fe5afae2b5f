"""The audit and dead-letter producer: a record is finished only when the broker acknowledged it."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from consumer.events import SyncResult, audit_event_of
from consumer.observability.metrics import DLQ


@dataclass(frozen=True)
class DeadLetter:
    """An input record that could not be read as an event, with why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str


class AuditPublisher:
    """Publishes one audit event per input record, and undecodable records to the DLQ."""

    def __init__(self, producer: AIOKafkaProducer, *, audit_topic: str, dlq_topic: str) -> None:
        self._producer = producer
        self._audit_topic = audit_topic
        self._dlq_topic = dlq_topic

    async def publish_result(self, result: SyncResult) -> None:
        """Send the audit event and wait for the broker's acknowledgement (acks=all)."""
        event = audit_event_of(result)
        key = result.user_id.encode() if result.user_id is not None else None
        await self._producer.send_and_wait(
            self._audit_topic, value=event.model_dump_json().encode(), key=key
        )

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Send the original key and bytes to the DLQ with headers saying where and why."""
        headers = [
            ("x-error-reason", letter.reason.encode()),
            ("x-error-detail", letter.detail.encode()[:1000]),
            ("x-source-topic", letter.topic.encode()),
            ("x-source-partition", str(letter.partition).encode()),
            ("x-source-offset", str(letter.offset).encode()),
        ]
        await self._producer.send_and_wait(
            self._dlq_topic, value=letter.value, key=letter.key, headers=headers
        )
        DLQ.labels(reason=letter.reason).inc()
