"""Replay: re-apply a range of the input topic to bring CXone back in line with the IdP.

Replay reads outside the consumer group (it commits nothing and disturbs no live consumer).
Per user only the newest event in the range matters: it is the complete desired state, so it is
applied and every older event of that user is audited as superseded. `--dry-run` writes nothing
and publishes nothing; it prints what would change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.catalog import load_policy
from consumer.errors import ConfigurationError, InvalidEvent
from consumer.events import Mode, Outcome, RoleChangeEvent, SourcePosition, SyncResult, parse_event
from consumer.observability.http import HealthState
from consumer.service import Tuning, build_gate, open_cxone
from consumer.settings import Settings
from consumer.stream.kafka import (
    build_producer,
    connection_options,
    partitions_of,
    stop_consumer,
)
from consumer.stream.publisher import AuditPublisher
from consumer.sync import Synchronizer, superseded_result

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReplayRange:
    """Where to start reading: the beginning, a time, or explicit offsets per partition."""

    from_beginning: bool = False
    since: datetime | None = None
    offsets: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        chosen = sum([self.from_beginning, self.since is not None, bool(self.offsets)])
        if chosen != 1:
            raise ConfigurationError(
                "replay needs exactly one of --from-beginning, --since or --offsets"
            )


def parse_offsets(text: str) -> dict[int, int]:
    """Parse `P:O,P:O` into {partition: offset}, or raise ConfigurationError saying why."""
    offsets: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        partition, sep, offset = item.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ConfigurationError(f"--offsets: {item!r} is not PARTITION:OFFSET")
        if int(partition) in offsets:
            raise ConfigurationError(f"--offsets: partition {partition} is given twice")
        offsets[int(partition)] = int(offset)
    if not offsets:
        raise ConfigurationError("--offsets: no PARTITION:OFFSET given")
    return offsets


@dataclass
class _Latest:
    """The newest event of one user in the range, and the older ones it supersedes."""

    event: RoleChangeEvent
    source: SourcePosition
    older: list[tuple[str, SourcePosition]] = field(default_factory=list)


@dataclass
class ReplaySummary:
    """What a replay read and did."""

    records: int = 0
    invalid: int = 0
    results: list[SyncResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many results had this outcome."""
        return sum(1 for result in self.results if result.outcome is outcome)


async def read_range(
    settings: Settings, selection: ReplayRange
) -> tuple[dict[str, _Latest], int, int]:
    """Read the chosen range up to the end of each partition; keep each user's newest event."""
    kafka = AIOKafkaConsumer(
        **connection_options(settings), group_id=None, enable_auto_commit=False
    )
    try:
        await kafka.start()
    except BaseException:
        # A broker that cannot be reached leaves a half-started client to close.
        await stop_consumer(kafka)
        raise
    latest: dict[str, _Latest] = {}
    records = invalid = 0
    try:
        partitions = await _start_positions(kafka, settings.kafka_input_topic, selection)
        # Some brokers answer a time lookup loosely (Tansu 0.6 may return an earlier offset),
        # so records older than --since are also skipped here.
        since_ms = int(selection.since.timestamp() * 1000) if selection.since else -1
        ends = await kafka.end_offsets(partitions) if partitions else {}
        while partitions:
            batch = await kafka.getmany(*partitions, timeout_ms=500, max_records=1000)
            for tp, fetched in batch.items():
                for record in fetched:
                    if record.timestamp < since_ms:
                        continue
                    records += 1
                    source = SourcePosition(
                        topic=tp.topic, partition=tp.partition, offset=record.offset
                    )
                    try:
                        event = parse_event(record.value)
                    except InvalidEvent:
                        invalid += 1
                        continue
                    _keep_newest(latest, event, source)
            # Some brokers under-report the end offset, so an empty fetch is what says "done".
            if not batch and all(
                [await kafka.position(tp) >= ends.get(tp, 0) for tp in partitions]
            ):
                break
    finally:
        await stop_consumer(kafka)
    return latest, records, invalid


async def _caught_up(
    kafka: AIOKafkaConsumer, partitions: list[TopicPartition], ends: dict[TopicPartition, int]
) -> bool:
    positions = [await kafka.position(tp) for tp in partitions]
    return all(
        position >= ends.get(tp, 0) for tp, position in zip(partitions, positions, strict=True)
    )


def _keep_newest(
    latest: dict[str, _Latest], event: RoleChangeEvent, source: SourcePosition
) -> None:
    current = latest.get(event.user_id)
    if current is None:
        latest[event.user_id] = _Latest(event, source)
        return
    older = [*current.older, (current.event.id, current.source)]
    latest[event.user_id] = _Latest(event, source, older)


async def _start_positions(
    kafka: AIOKafkaConsumer, topic: str, selection: ReplayRange
) -> list[TopicPartition]:
    available = await partitions_of(kafka, topic)
    if selection.offsets:
        unknown = sorted(set(selection.offsets) - set(available))
        if unknown:
            raise ConfigurationError(f"--offsets: topic {topic} has no partition {unknown[0]}")
        chosen = [TopicPartition(topic, p) for p in sorted(selection.offsets)]
        kafka.assign(chosen)
        for tp in chosen:
            kafka.seek(tp, selection.offsets[tp.partition])
        return chosen
    chosen = [TopicPartition(topic, p) for p in available]
    if selection.from_beginning:
        kafka.assign(chosen)
        await kafka.seek_to_beginning(*chosen)
        return chosen
    assert selection.since is not None
    timestamp = int(selection.since.timestamp() * 1000)
    found = await kafka.offsets_for_times(dict.fromkeys(chosen, timestamp))
    # A partition with nothing at or after the time has nothing to replay.
    starting = {tp: at.offset for tp, at in found.items() if at is not None}
    kafka.assign(list(starting))
    for tp, offset in starting.items():
        kafka.seek(tp, offset)
    return list(starting)


async def replay(
    settings: Settings,
    selection: ReplayRange,
    *,
    dry_run: bool,
    echo: Callable[[str], None],
    tuning: Tuning | None = None,
) -> ReplaySummary:
    """Re-apply each user's newest event in the range; audit everything unless dry-running."""
    policy = load_policy(settings.policy_file)
    latest, records, invalid = await read_range(settings, selection)
    summary = ReplaySummary(records=records, invalid=invalid)
    async with AsyncExitStack() as stack:
        cxone = await open_cxone(settings, stack, tuning=tuning or Tuning(), health=HealthState())
        synchronizer = Synchronizer(policy, cxone.scim, dry_run=dry_run, gate=build_gate(policy))
        publisher: AuditPublisher | None = None
        if not dry_run:
            producer = build_producer(settings, client_id="cxone-role-sync-replay")
            await producer.start()
            stack.push_async_callback(producer.stop)
            publisher = AuditPublisher(
                producer, audit_topic=settings.kafka_audit_topic, dlq_topic=settings.kafka_dlq_topic
            )
        slots = asyncio.Semaphore(settings.sync_max_concurrency)

        async def one(user: _Latest) -> None:
            async with slots:
                result = await synchronizer.apply(
                    user.event, source=user.source, received_at=time.monotonic(), mode=Mode.REPLAY
                )
            summary.results.append(result)
            if publisher is not None:
                await publisher.publish_result(result)
                for event_id, source in user.older:
                    superseded = superseded_result(
                        event_id, user.event, source=source, mode=Mode.REPLAY
                    )
                    summary.results.append(superseded)
                    await publisher.publish_result(superseded)
            echo(describe(result))

        await asyncio.gather(*(one(user) for user in latest.values()))
    return summary


def describe(result: SyncResult) -> str:
    """One line: the user, what happened, and the role diff."""
    before = set(result.roles_before or ())
    after = set(result.roles_after or ())
    diff = " ".join(
        [f"+{role}" for role in sorted(after - before)]
        + [f"-{role}" for role in sorted(before - after)]
    )
    why = f" ({result.reason})" if result.reason else ""
    return f"{result.user_id}: {result.outcome.value}{why} {diff}".rstrip()


def summary_lines(
    summary: ReplaySummary, outcomes: Sequence[Outcome] = tuple(Outcome)
) -> list[str]:
    """The closing summary of a replay."""
    lines = [f"read {summary.records} records ({summary.invalid} invalid, skipped)"]
    lines += [
        f"  {outcome.value:<11} {summary.count(outcome):>5}"
        for outcome in outcomes
        if summary.count(outcome)
    ]
    return lines
