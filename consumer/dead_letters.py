"""`dlq`: read the dead-letter topic, and re-drive a record to the input topic once it is fixed.

Reading is outside any consumer group, like `audit`: it commits nothing. A re-drive validates the
event exactly as the consumer reads it, publishes it to the input topic keyed by its user id, and
marks it with `x-redriven-from: <dlq topic>/<partition>@<offset>`, so the audit of the re-driven
record (whose `source` names the input record) leads back to the dead letter. Nothing is ever
written to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumer.errors import ConfigurationError
from consumer.events import RoleChangeEvent
from consumer.send import validate
from consumer.settings import KafkaSettings
from consumer.stream.kafka import connection_options, partitions_of, producer_for_broker

if TYPE_CHECKING:
    from consumer.settings import Settings

REDRIVEN_FROM = "x-redriven-from"
REDRIVEN_REASON = "x-redriven-reason"
FETCH_WITHIN_SECONDS = 15.0


class DeadLetterError(Exception):
    """The broker could not be read or written; one line says which and why."""


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, with what its headers say."""

    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        """The reason code the consumer gave, e.g. `invalid_json`."""
        return self.headers.get("x-error-reason", "?")

    @property
    def truncated(self) -> bool:
        """Whether the record holds only a prefix of the original, which was too large."""
        return self.headers.get("x-truncated") == "true"

    @property
    def source(self) -> str:
        """Where the original record was: `topic/partition@offset`."""
        topic = self.headers.get("x-source-topic", "?")
        partition = self.headers.get("x-source-partition", "?")
        return f"{topic}/{partition}@{self.headers.get('x-source-offset', '?')}"

    def as_json(self) -> dict[str, Any]:
        """The record as `dlq list --json` prints it; key and value as text (bad UTF-8 replaced)."""
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "key": _text(self.key),
            "value": _text(self.value),
            "headers": self.headers,
        }


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def dead_letter_of(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    """A dead letter from the record the broker returned."""
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        key=record.key,
        value=record.value,
        headers={name: value.decode("utf-8", "replace") for name, value in record.headers},
    )


def render_line(letter: DeadLetter) -> str:
    """One line: where it is, when, why, whose, where it came from, and the detail."""
    parts = [
        f"{letter.partition}:{letter.offset}",
        letter.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{letter.reason:<16}",
        f"key {_text(letter.key) if letter.key is not None else '(none)'}",
        f"from {letter.source}",
    ]
    if letter.truncated:
        parts.append(f"TRUNCATED (original {letter.headers.get('x-original-size', '?')} bytes)")
    detail = letter.headers.get("x-error-detail")
    if detail:
        parts.append(detail)
    return "  ".join(parts)


def parse_position(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` as numbers, or ConfigurationError saying what is wrong."""
    partition, sep, offset = text.strip().partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ConfigurationError(f"--offset {text!r} is not PARTITION:OFFSET, e.g. 0:42")
    return int(partition), int(offset)


def redrive_value(
    letter: DeadLetter, fixed: bytes | None, *, max_record_bytes: int
) -> tuple[RoleChangeEvent, bytes]:
    """The event and bytes to re-drive: the fix when given, else the record as it is; validated."""
    if fixed is None and letter.truncated:
        raise ConfigurationError(
            f"dead letter {letter.partition}:{letter.offset} holds only a prefix of the original "
            "record: give the whole, fixed event with --from-file"
        )
    value = fixed if fixed is not None else (letter.value or b"")
    if len(value) > max_record_bytes:
        raise ConfigurationError(
            f"invalid event (too_large): {len(value)} bytes, above KAFKA_MAX_RECORD_BYTES="
            f"{max_record_bytes}"
        )
    return validate(value), value


async def read_dead_letters(
    settings: KafkaSettings, *, reason: str | None = None
) -> AsyncIterator[DeadLetter]:
    """Every dead letter there is now, partition by partition, oldest first."""
    topic = settings.kafka_dlq_topic
    kafka = _reader(settings)
    try:
        await kafka.start()
        partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        kafka.assign(partitions)
        await kafka.seek_to_beginning(*partitions)
        ends = await kafka.end_offsets(partitions)
        remaining = set(partitions)
        while remaining:
            batch = await kafka.getmany(*remaining, timeout_ms=500, max_records=500)
            for records in batch.values():
                for record in records:
                    letter = dead_letter_of(record)
                    if reason is None or letter.reason == reason:
                        yield letter
            # Some brokers report the end short of a batch's last records: a partition is done
            # when a fetch from it comes back empty at or past the end reported.
            for tp in list(remaining):
                if not batch.get(tp) and await kafka.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    except (KafkaError, OSError) as error:
        raise DeadLetterError(_broker_failure("read", topic, settings, error)) from None
    finally:
        await kafka.stop()


async def fetch_dead_letter(settings: KafkaSettings, partition: int, offset: int) -> DeadLetter:
    """The dead letter at one position, or ConfigurationError when there is none."""
    topic = settings.kafka_dlq_topic
    kafka = _reader(settings)
    try:
        await kafka.start()
        if partition not in await partitions_of(kafka, topic):
            raise ConfigurationError(
                f"--offset {partition}:{offset}: {topic} has no partition {partition}"
            )
        tp = TopicPartition(topic, partition)
        kafka.assign([tp])
        kafka.seek(tp, offset)
        empty_fetches = 0
        async with asyncio.timeout(FETCH_WITHIN_SECONDS):
            while True:
                batch = await kafka.getmany(tp, timeout_ms=500, max_records=1)
                records = batch.get(tp) or []
                if records:
                    break
                empty_fetches += 1
                end = (await kafka.end_offsets([tp]))[tp]
                # Some brokers report the end short of a batch's last records: believe the end
                # only once fetching from the offset has come back empty more than once.
                if offset >= end and empty_fetches > 1:
                    raise ConfigurationError(
                        f"--offset {partition}:{offset}: {topic} partition {partition} ends "
                        f"at {end}"
                    )
    except TimeoutError:
        raise ConfigurationError(
            f"--offset {partition}:{offset}: no record there in {topic}"
        ) from None
    except (KafkaError, OSError) as error:
        raise DeadLetterError(_broker_failure("read", topic, settings, error)) from None
    finally:
        await kafka.stop()
    record = records[0]
    if record.offset != offset:
        # Compaction, retention or a transaction marker left no record at that offset.
        raise ConfigurationError(f"--offset {partition}:{offset}: no record there in {topic}")
    return dead_letter_of(record)


@dataclass(frozen=True)
class Redriven:
    """Where a re-driven event went."""

    event: RoleChangeEvent
    partition: int
    offset: int


async def redrive(
    settings: KafkaSettings, letter: DeadLetter, event: RoleChangeEvent, value: bytes
) -> Redriven:
    """Publish the validated event to the input topic, keyed by its user id, marked as re-driven."""
    topic = settings.kafka_input_topic
    headers = [
        (REDRIVEN_FROM, f"{settings.kafka_dlq_topic}/{letter.partition}@{letter.offset}".encode()),
        (REDRIVEN_REASON, letter.reason.encode()),
    ]
    # producer_for_broker reads only the Kafka fields, which KafkaSettings has.
    producer: AIOKafkaProducer | None = None
    try:
        async with asyncio.timeout(30.0):
            producer, _ = await producer_for_broker(
                cast("Settings", settings), client_id="cxone-role-sync-dlq"
            )
            await producer.start()
            metadata = await producer.send_and_wait(
                topic, value=value, key=event.user_id.encode(), headers=headers
            )
    except (KafkaError, OSError, TimeoutError) as error:
        raise DeadLetterError(_broker_failure("write", topic, settings, error)) from None
    finally:
        if producer is not None:
            await producer.stop()
    return Redriven(event, metadata.partition, metadata.offset)


def _reader(settings: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        # connection_options reads only the Kafka fields, which KafkaSettings has.
        **connection_options(cast("Settings", settings)),
        group_id=None,
        enable_auto_commit=False,
    )


def _broker_failure(verb: str, topic: str, settings: KafkaSettings, error: BaseException) -> str:
    reason = str(error) or type(error).__name__
    return f"could not {verb} {topic} at {settings.kafka_bootstrap_servers}: {reason}"


def letter_json(letter: DeadLetter) -> str:
    """The dead letter as one line of JSON."""
    return json.dumps(letter.as_json(), separators=(",", ":"))
