"""The audit and dead-letter producer: a record is finished only when the broker acknowledged it.

The publisher owns delivery. What Kafka calls retriable (a leader moving, a broker away, a
timeout) is retried with backoff for as long as it takes. What it does not (the topic refuses
us, the record is too large, the topic is gone) cannot be fixed by trying again soon: the record
stays unacknowledged, so its partition never commits past it, and the publisher reports itself
blocked (`/readyz` answers `publish_blocked`, `cxone_sync_publish_blocked` counts the records)
while it keeps trying slowly, until an operator fixes the cause.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from consumer.attempts import first_then_retried
from consumer.events import SyncResult, audit_event_of
from consumer.observability.metrics import DLQ, PUBLISH_BLOCKED

log = structlog.get_logger(__name__)

DEFAULT_MAX_RECORD_BYTES = 1_048_576
"""Kafka's default largest record (`max.message.bytes`, `max.request.size`)."""

MAX_DETAIL_HEADER = 1000
MAX_KEPT_KEY = 1024
"""A truncated dead letter keeps at most this much of the original key."""

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class DeliveryPolicy:
    """How long to wait between attempts: retriable errors back off, blocking ones wait long."""

    wait_initial: float = 0.2
    wait_max: float = 10.0
    blocked_wait: float = 30.0


def blocks_delivery(error: KafkaError) -> bool:
    """Whether retrying soon cannot help: the record is blocked until an operator acts."""
    # Kafka's own clients treat a timeout as retriable; aiokafka's class does not say so.
    if isinstance(error, KafkaTimeoutError):
        return False
    # Retriable to Kafka, but the producer raises it only after waiting its whole request
    # timeout for the topic to appear: the topic was deleted or never created.
    if isinstance(error, UnknownTopicOrPartitionError):
        return True
    return not error.retriable


def _retriable(error: Exception) -> bool:
    return isinstance(error, KafkaError) and not blocks_delivery(error)


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


@dataclass(frozen=True)
class Envelope:
    """The key, value and headers of one record as it will be sent."""

    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def size(self) -> int:
        """The most bytes the record can take in a batch of its own, as the producer counts."""
        size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            self.key, self.value, self.headers
        )
        return size


def dead_letter_envelope(letter: DeadLetter, *, max_record_bytes: int) -> Envelope:
    """The DLQ record of a letter: the original bytes when they fit, else a marked prefix."""
    headers: Headers = [
        ("x-error-reason", letter.reason.encode()),
        ("x-error-detail", letter.detail.encode()[:MAX_DETAIL_HEADER]),
        ("x-source-topic", letter.topic.encode()),
        ("x-source-partition", str(letter.partition).encode()),
        ("x-source-offset", str(letter.offset).encode()),
    ]
    whole = Envelope(letter.key, letter.value, headers)
    if whole.size <= max_record_bytes:
        return whole
    value = letter.value or b""
    key = letter.key
    headers = [
        *headers,
        ("x-truncated", b"true"),
        ("x-original-size", str(len(value)).encode()),
        ("x-original-sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    if key is not None and len(key) > MAX_KEPT_KEY:
        headers += [
            ("x-original-key-size", str(len(key)).encode()),
            ("x-original-key-sha256", hashlib.sha256(key).hexdigest().encode()),
        ]
        key = key[:MAX_KEPT_KEY]
    # The value's length prefix grows with the value: a few bytes of slack cover it.
    room = max_record_bytes - Envelope(key, b"", headers).size - 8
    return Envelope(key, value[: max(room, 0)], headers)


def audit_envelope(result: SyncResult, *, max_record_bytes: int) -> Envelope:
    """The audit record of a result, cut to fit in `max_record_bytes`, saying what was cut.

    `detail` is cut first (to the longest prefix that fits, then a note of how much was kept).
    Only when the record cannot fit even without it are `roles_before` and `roles_after` cut
    too, each to the same longest prefix that fits, and the note says so.
    """
    key = result.user_id.encode() if result.user_id is not None else None

    def envelope(fitted: SyncResult) -> Envelope:
        return Envelope(key, audit_event_of(fitted).model_dump_json().encode(), [])

    whole = envelope(result)
    if whole.size <= max_record_bytes:
        return whole
    detail = result.detail or ""

    def with_detail(kept: int) -> Envelope:
        note = f" [detail cut to fit KAFKA_MAX_RECORD_BYTES: {kept} of {len(detail)} characters]"
        return envelope(result.model_copy(update={"detail": detail[:kept] + note}))

    kept = _longest_fitting(len(detail), lambda n: with_detail(n).size <= max_record_bytes)
    if kept is not None:
        return with_detail(kept)
    before, after = result.roles_before or (), result.roles_after or ()

    def with_roles(count: int) -> Envelope:
        note = (
            "[detail and roles cut to fit KAFKA_MAX_RECORD_BYTES: detail of"
            f" {len(detail)} characters left out, roles_before {min(count, len(before))}"
            f" of {len(before)}, roles_after {min(count, len(after))} of {len(after)} kept]"
        )
        update: dict[str, object] = {"detail": note}
        if result.roles_before is not None:
            update["roles_before"] = before[:count]
        if result.roles_after is not None:
            update["roles_after"] = after[:count]
        return envelope(result.model_copy(update=update))

    longest = max(len(before), len(after))
    count = _longest_fitting(longest, lambda n: with_roles(n).size <= max_record_bytes)
    # Nothing else in a result grows with the input: with no roles it always fits.
    return with_roles(count or 0)


def _longest_fitting(most: int, fits: Callable[[int], bool]) -> int | None:
    """The largest n in 0..most for which `fits(n)` holds (it holds below any n it holds for)."""
    if not fits(0):
        return None
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


class AuditPublisher:
    """Publishes one audit event per input record, and undecodable records to the DLQ."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        audit_topic: str,
        dlq_topic: str,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self._producer = producer
        self._audit_topic = audit_topic
        self._dlq_topic = dlq_topic
        self._max_record_bytes = max_record_bytes
        self._policy = policy or DeliveryPolicy()
        self._blocked = 0

    @property
    def max_record_bytes(self) -> int:
        """The largest record this publisher sends, and so the largest input record it reads."""
        return self._max_record_bytes

    @property
    def blocked(self) -> bool:
        """Whether some record cannot be published for a reason retrying soon cannot fix."""
        return self._blocked > 0

    async def publish_result(self, result: SyncResult) -> None:
        """Send the audit event and return once the broker acknowledged it (acks=all)."""
        envelope = audit_envelope(result, max_record_bytes=self._max_record_bytes)
        await self._deliver(self._audit_topic, envelope)

    async def publish_results(self, results: Sequence[SyncResult]) -> None:
        """Send several audit events together; return once the broker acknowledged every one.

        Every record is handed to the producer before any acknowledgement is awaited, so they
        travel in the same requests, and no retry machinery is built for them; one whose send
        fails is then delivered as `publish_result` delivers it, until acknowledged.
        """
        topic = self._audit_topic
        sent: list[tuple[Envelope, asyncio.Future[object] | None]] = []
        for result in results:
            envelope = audit_envelope(result, max_record_bytes=self._max_record_bytes)
            try:
                delivery = await self._producer.send(topic, value=envelope.value, key=envelope.key)
            except KafkaError:
                delivery = None
            sent.append((envelope, delivery))
        for envelope, delivery in sent:
            if delivery is not None:
                try:
                    await delivery
                    continue
                except KafkaError:
                    pass
            await self._deliver(topic, envelope)

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        """Send the original key and bytes (a marked prefix if too large) to the DLQ."""
        envelope = dead_letter_envelope(letter, max_record_bytes=self._max_record_bytes)
        await self._deliver(self._dlq_topic, envelope)
        DLQ.labels(reason=letter.reason).inc()

    async def _deliver(self, topic: str, envelope: Envelope) -> None:
        """Send until acknowledged: a record is never dropped, only delayed."""

        async def send() -> None:
            await self._producer.send_and_wait(
                topic, value=envelope.value, key=envelope.key, headers=envelope.headers or None
            )

        await self._until_acknowledged(topic, send)

    async def _until_acknowledged(self, topic: str, send: Callable[[], Awaitable[None]]) -> None:
        blocked = False
        try:
            while True:
                try:
                    await first_then_retried(
                        lambda _: send(),
                        on=_retriable,
                        attempts=None,
                        wait_initial=self._policy.wait_initial,
                        wait_max=self._policy.wait_max,
                    )
                except KafkaError as error:
                    if not blocked:
                        blocked = True
                        self._set_blocked(+1)
                        log.error("publish.blocked", topic=topic, error=type(error).__name__)
                    else:
                        log.warning(
                            "publish.still_blocked", topic=topic, error=type(error).__name__
                        )
                    await asyncio.sleep(self._policy.blocked_wait)
                    continue
                if blocked:
                    log.info("publish.unblocked", topic=topic)
                return
        finally:
            if blocked:
                self._set_blocked(-1)

    def _set_blocked(self, change: int) -> None:
        self._blocked += change
        PUBLISH_BLOCKED.inc(change)
