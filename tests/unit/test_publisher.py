"""Tests of the delivery policy: which Kafka errors block, dead letters that fit, the size limit."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from consumer.events import Outcome, SourcePosition, SyncResult
from consumer.observability.http import HealthState
from consumer.stream.publisher import (
    MAX_KEPT_KEY,
    AuditPublisher,
    DeadLetter,
    Envelope,
    blocks_delivery,
    dead_letter_envelope,
)
from consumer.stream.work import read_record
from tests.hostile import consumer_record

MIB = 1 << 20


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError(),
        NotLeaderForPartitionError(),
        RequestTimedOutError(),
        KafkaTimeoutError(),
    ],
    ids=type,
)
def test_retriable_errors_do_not_block(error: KafkaError) -> None:
    """A broker away, a leader moving or a timeout is retried with backoff, never blocked."""
    assert blocks_delivery(error) is False


@pytest.mark.parametrize(
    "error",
    [
        TopicAuthorizationFailedError(),
        MessageSizeTooLargeError(),
        RecordListTooLargeError(),
        UnknownTopicOrPartitionError(),
    ],
    ids=type,
)
def test_permanent_errors_block(error: KafkaError) -> None:
    """A refused topic, a record too large, or a topic that does not exist block delivery."""
    assert blocks_delivery(error) is True


def letter(key: bytes | None, value: bytes | None) -> DeadLetter:
    """A dead letter of the given bytes from partition 3, offset 7."""
    return DeadLetter("idp.role-changes", 3, 7, key, value, "too_large", "record is too large")


def headers_of(envelope: Envelope) -> dict[str, bytes]:
    """The envelope's headers as a dict."""
    return dict(envelope.headers)


def test_a_small_dead_letter_keeps_the_original_bytes() -> None:
    """A record that fits goes to the DLQ unchanged, with the five headers and no truncation."""
    envelope = dead_letter_envelope(letter(b"u-1", b"{bad json"), max_record_bytes=MIB)
    assert (envelope.key, envelope.value) == (b"u-1", b"{bad json")
    assert headers_of(envelope) == {
        "x-error-reason": b"too_large",
        "x-error-detail": b"record is too large",
        "x-source-topic": b"idp.role-changes",
        "x-source-partition": b"3",
        "x-source-offset": b"7",
    }


@pytest.mark.parametrize("size", [MIB - 90, MIB, 2 * MIB])
def test_a_dead_letter_that_would_not_fit_carries_a_marked_prefix(size: int) -> None:
    """Above the limit the value is cut to fit, and the headers say how big and what it was."""
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    envelope = dead_letter_envelope(letter(b"u-1", value), max_record_bytes=MIB)
    headers = headers_of(envelope)
    assert envelope.size <= MIB
    assert envelope.value is not None
    assert value.startswith(envelope.value)
    assert len(envelope.value) > MIB - 2048
    assert headers["x-truncated"] == b"true"
    assert headers["x-original-size"] == str(size).encode()
    assert headers["x-original-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert envelope.key == b"u-1"


def test_a_huge_key_is_cut_too_and_described() -> None:
    """A key above 1 KiB is cut to 1 KiB, with its size and digest in headers."""
    key = b"k" * (MIB // 2)
    value = b"v" * MIB
    envelope = dead_letter_envelope(letter(key, value), max_record_bytes=MIB)
    headers = headers_of(envelope)
    assert envelope.size <= MIB
    assert envelope.key == key[:MAX_KEPT_KEY]
    assert headers["x-original-key-size"] == str(len(key)).encode()
    assert headers["x-original-key-sha256"] == hashlib.sha256(key).hexdigest().encode()


def test_a_record_above_the_limit_is_too_large_unparsed() -> None:
    """Key plus value above max_bytes is invalid, too_large, whatever the bytes are."""
    item = read_record(consumer_record(b"x" * 1000, b"u-1"), epoch=0, now=0.0, max_bytes=1000)
    assert item.event is None
    assert item.invalid is not None
    assert item.invalid.reason == "too_large"
    assert item.invalid.detail == "record is 1003 bytes, above KAFKA_MAX_RECORD_BYTES=1000"


def test_a_record_at_the_limit_is_parsed() -> None:
    """A record exactly at the limit is parsed (and here found to be invalid JSON)."""
    item = read_record(consumer_record(b"x" * 997, b"u-1"), epoch=0, now=0.0, max_bytes=1000)
    assert item.invalid is not None
    assert item.invalid.reason == "invalid_json"


def test_readiness_says_publish_blocked_while_the_publisher_is_blocked() -> None:
    """/readyz's reason is publish_blocked while the probe says so, and clears after."""
    state = HealthState()
    state.joined = True
    blocked = [True]
    state.publish_blocked_probe = lambda: blocked[0]
    assert state.not_ready_reason() == "publish_blocked"
    blocked[0] = False
    assert state.not_ready_reason() is None


class BatchProducer:
    """An in-memory producer: `send` queues a delivery future, `send_and_wait` delivers at once.

    Sends of the offsets in `refused` raise; deliveries of the offsets in `lost` fail.
    """

    def __init__(
        self, *, queued: int, refused: set[int] = frozenset(), lost: set[int] = frozenset()
    ) -> None:
        self.refused = set(refused)
        # Set once `queued` deliveries wait for their acknowledgement.
        self.all_queued = asyncio.Event()
        self.queued = queued
        self.lost = set(lost)
        self.calls: list[tuple[str, int]] = []
        self.pending: list[tuple[int, asyncio.Future[object]]] = []

    @staticmethod
    def offset_of(value: bytes | None) -> int:
        assert value is not None
        return int(json.loads(value)["data"]["source"]["offset"])

    async def send(
        self, topic: str, value: bytes | None = None, **_: object
    ) -> asyncio.Future[object]:
        offset = self.offset_of(value)
        self.calls.append(("send", offset))
        if offset in self.refused:
            raise KafkaTimeoutError()
        delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.pending.append((offset, delivery))
        if len(self.pending) == self.queued:
            self.all_queued.set()
        return delivery

    async def send_and_wait(self, topic: str, value: bytes | None = None, **_: object) -> None:
        self.calls.append(("send_and_wait", self.offset_of(value)))

    def acknowledge_all(self) -> None:
        """Resolve every queued delivery, newest first; the lost ones fail."""
        for offset, delivery in reversed(self.pending):
            self.calls.append(("ack", offset))
            if offset in self.lost:
                delivery.set_exception(RequestTimedOutError())
            else:
                delivery.set_result(None)


def audit_result(offset: int) -> SyncResult:
    """A superseded result of the record at `offset`."""
    return SyncResult(
        event_id=f"evt-{offset}",
        user_id="u-1",
        outcome=Outcome.SUPERSEDED,
        source=SourcePosition(topic="input", partition=0, offset=offset),
        processed_at=datetime.now(UTC),
    )


async def test_a_batch_is_sent_whole_before_any_acknowledgement_is_awaited() -> None:
    """Every record of a batch reaches the producer first; the call returns once all are acked."""
    producer = BatchProducer(queued=3)
    publisher = AuditPublisher(producer, audit_topic="audit", dlq_topic="dlq")  # type: ignore[arg-type]
    task = asyncio.create_task(publisher.publish_results([audit_result(n) for n in range(3)]))
    await asyncio.wait_for(producer.all_queued.wait(), 5.0)
    assert producer.calls == [("send", 0), ("send", 1), ("send", 2)]
    assert not task.done()
    producer.acknowledge_all()
    await asyncio.wait_for(task, 5.0)
    assert producer.calls[3:] == [("ack", 2), ("ack", 1), ("ack", 0)]


async def test_a_refused_send_and_a_lost_delivery_are_delivered_again() -> None:
    """A send that raises and a delivery that fails both go out again until acknowledged."""
    producer = BatchProducer(queued=3, refused={1}, lost={2})
    publisher = AuditPublisher(producer, audit_topic="audit", dlq_topic="dlq")  # type: ignore[arg-type]
    task = asyncio.create_task(publisher.publish_results([audit_result(n) for n in range(4)]))
    await asyncio.wait_for(producer.all_queued.wait(), 5.0)
    producer.acknowledge_all()
    await asyncio.wait_for(task, 5.0)
    again = [offset for kind, offset in producer.calls if kind == "send_and_wait"]
    assert again == [1, 2]
    assert not publisher.blocked
