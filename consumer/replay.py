"""Replay: re-apply a range of the input topic to bring CXone back in line with the IdP.

Replay reads outside the consumer group (it commits nothing and disturbs no live consumer), up
to the end offsets it captured when it started, and stops there. Records are validated exactly
as the live path validates them. Per user, the events of the range are folded into one write,
judged event by event as the live path does, and every older event is audited as superseded.
A user with an event beyond the range is left to the live consumer: replaying their older state
could put it back after the newer one was written.

The mass-revocation guard counts the revocations of the whole run; once it trips the replay
stops starting users and ends with exit code 3. `--dry-run` writes and publishes nothing and
prints what would change; `--max-writes N` runs a dry pass first and writes nothing when it would
write more than N users.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumer.catalog import Policy, load_policy
from consumer.errors import ConfigurationError
from consumer.events import Mode, Outcome, RoleChangeEvent, SourcePosition, SyncResult
from consumer.observability.http import HealthState
from consumer.progress import ReplayProgress
from consumer.scim.client import ScimClient
from consumer.service import Tuning, open_cxone
from consumer.settings import Settings
from consumer.stream.consumer import read_record
from consumer.stream.kafka import build_producer, connection_options, partitions_of
from consumer.stream.publisher import AuditPublisher
from consumer.sync import Synchronizer, superseded_result

log = structlog.get_logger(__name__)

# A fetch that returns nothing this many times in a row, short of the captured end, ends the
# partition anyway: the end offset may count records no fetch returns (transaction markers).
_EMPTY_FETCHES_AT_END = 10


class ExitCode(IntEnum):
    """How a replay ended, as the command's exit code."""

    OK = 0
    FAILED = 1
    GUARD_TRIPPED = 3
    TOO_MANY_WRITES = 4


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


Entry = tuple[RoleChangeEvent, SourcePosition]


@dataclass
class ReplayRead:
    """What reading the range found: each user's events, oldest first, and the counts."""

    users: dict[str, list[Entry]] = field(default_factory=dict)
    # The first event of a user beyond the range: that user is left to the live consumer.
    newer: dict[str, RoleChangeEvent] = field(default_factory=dict)
    records: int = 0
    invalid: int = 0


@dataclass
class ReplaySummary:
    """What a replay read and did."""

    records: int = 0
    invalid: int = 0
    users: int = 0
    results: list[SyncResult] = field(default_factory=list)
    # Revocations the guard refused to let through, and the users never started after it.
    held: int = 0
    not_started: int = 0
    revocation_limit: int | None = None
    # With --max-writes: how many writes the dry pass counted, when that was too many.
    refused_writes: int | None = None
    max_writes: int | None = None

    def count(self, outcome: Outcome) -> int:
        """How many results had this outcome."""
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def exit_code(self) -> ExitCode:
        """0 when everything was applied or rightly refused; non-zero otherwise."""
        if self.held:
            return ExitCode.GUARD_TRIPPED
        if self.refused_writes is not None:
            return ExitCode.TOO_MANY_WRITES
        if self.count(Outcome.FAILED):
            return ExitCode.FAILED
        return ExitCode.OK


class RevocationsHeld(Exception):
    """The replay's guard refused a revocation: the replay stops."""


class _RunGate:
    """The replay's mass-revocation guard: at most `limit` revocations in the whole run."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.admitted = 0
        self.held = 0

    @property
    def tripped(self) -> bool:
        """Whether a revocation was refused; no new user starts after that."""
        return self.held > 0

    async def admit(self) -> bool:
        """Let one revocation through, or refuse it once the limit is reached."""
        if self.limit is None:
            return False
        if self.tripped or self.admitted >= self.limit:
            self.held += 1
            raise RevocationsHeld
        self.admitted += 1
        return False


async def read_range(
    settings: Settings, selection: ReplayRange, progress: ReplayProgress | None = None
) -> ReplayRead:
    """Read the chosen range up to the end offsets captured now; note users with later events."""
    progress = progress or ReplayProgress(interactive=False)
    kafka = AIOKafkaConsumer(
        **connection_options(settings), group_id=None, enable_auto_commit=False
    )
    await kafka.start()
    found = ReplayRead()
    try:
        partitions = await _start_positions(kafka, settings.kafka_input_topic, selection)
        # Some brokers answer a time lookup loosely (Tansu 0.6 may return an earlier offset),
        # so records older than --since are also skipped here.
        since_ms = int(selection.since.timestamp() * 1000) if selection.since else -1
        ends = await kafka.end_offsets(partitions) if partitions else {}
        starts = {tp: await kafka.position(tp) for tp in partitions}
        progress.records_expected = sum(max(0, ends[tp] - starts[tp]) for tp in partitions)

        def in_range(record_timestamp: int, entry: Entry | None) -> None:
            if record_timestamp < since_ms:
                return
            found.records += 1
            progress.read()
            if entry is None:
                found.invalid += 1
                return
            event, _ = entry
            found.users.setdefault(event.user_id, []).append(entry)

        def beyond(record_timestamp: int, entry: Entry | None) -> None:
            if entry is not None:
                found.newer.setdefault(entry[0].user_id, entry[0])

        await _read_to_end(kafka, partitions, ends, on_record=in_range, on_beyond=beyond)
        # The rest of each partition, up to its end now: which users the live consumer has
        # newer events for. Bounded: traffic arriving from here on is not read.
        tail = await kafka.end_offsets(partitions) if partitions else {}
        await _read_to_end(kafka, partitions, tail, on_record=beyond, on_beyond=beyond)
    finally:
        await kafka.stop()
    return found


async def _read_to_end(
    kafka: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    ends: dict[TopicPartition, int],
    *,
    on_record: Callable[[int, Entry | None], None],
    on_beyond: Callable[[int, Entry | None], None],
) -> None:
    """Hand every record below `ends` to `on_record`; stop each partition at its end.

    Tansu 0.6 reports an end offset that counts a multi-record batch as one record (see
    observability/lag.py), so records past the reported end that were written before the read
    started still belong to the range; the first record written after it ends the partition.
    """
    started_ms = int(time.time() * 1000)
    active = set(partitions)
    empty = 0
    while active:
        batch = await kafka.getmany(*active, timeout_ms=500, max_records=1000)
        for tp, fetched in batch.items():
            for record in fetched:
                entry = _entry(record)
                if record.offset >= ends.get(tp, 0) and record.timestamp > started_ms:
                    on_beyond(record.timestamp, entry)
                    # Read again from here by the next pass over the partition.
                    kafka.seek(tp, record.offset)
                    active.discard(tp)
                    break
                on_record(record.timestamp, entry)
        if batch:
            empty = 0
            continue
        empty += 1
        for tp in list(active):
            if await kafka.position(tp) >= ends.get(tp, 0) or empty >= _EMPTY_FETCHES_AT_END:
                active.discard(tp)


def _entry(record: ConsumerRecord[bytes, bytes]) -> Entry | None:
    """The valid event of a record with where it was read, or None for an invalid record."""
    # The live path's own validation, the record key check included.
    item = read_record(record, epoch=0, now=time.monotonic())
    if item.event is None:
        return None
    return item.event, item.source


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
    max_revocations: int | None = None,
    max_writes: int | None = None,
    progress: ReplayProgress | None = None,
) -> ReplaySummary:
    """Re-apply each user's events in the range, folded; audit everything unless dry-running."""
    policy = load_policy(settings.policy_file)
    progress = progress or ReplayProgress(interactive=False)
    found = await read_range(settings, selection, progress)
    guard = policy.mass_revocation_guard
    limit = max_revocations
    if limit is None and guard is not None:
        limit = guard.max_revocations
    summary = ReplaySummary(
        records=found.records,
        invalid=found.invalid,
        users=len(found.users),
        revocation_limit=limit,
        max_writes=max_writes,
    )
    progress.start_applying(len(found.users))
    async with AsyncExitStack() as stack:
        cxone = await open_cxone(settings, stack, tuning=tuning or Tuning(), health=HealthState())
        if max_writes is not None and not dry_run:
            dry = ReplaySummary()
            await _apply_all(settings, policy, cxone.scim, found, dry, dry_run=True)
            writes = sum(1 for result in dry.results if result.payload_sha256 is not None)
            if writes > max_writes:
                summary.refused_writes = writes
                progress.finish()
                return summary
        publisher: AuditPublisher | None = None
        if not dry_run:
            producer = build_producer(settings, client_id="cxone-role-sync-replay")
            await producer.start()
            stack.push_async_callback(producer.stop)
            publisher = AuditPublisher(
                producer, audit_topic=settings.kafka_audit_topic, dlq_topic=settings.kafka_dlq_topic
            )
        await _apply_all(
            settings,
            policy,
            cxone.scim,
            found,
            summary,
            dry_run=dry_run,
            gate=None if dry_run else _RunGate(limit),
            publisher=publisher,
            echo=echo,
            progress=progress,
        )
    progress.finish()
    return summary


async def _apply_all(
    settings: Settings,
    policy: Policy,
    scim: ScimClient,
    found: ReplayRead,
    summary: ReplaySummary,
    *,
    dry_run: bool,
    gate: _RunGate | None = None,
    publisher: AuditPublisher | None = None,
    echo: Callable[[str], None] = lambda _: None,
    progress: ReplayProgress | None = None,
) -> None:
    """Apply every user's folded events, at most SYNC_MAX_CONCURRENCY at once."""
    synchronizer = Synchronizer(
        policy,
        scim,
        dry_run=dry_run,
        gate=gate,
        approval_key=settings.approval_hmac_key,
    )
    slots = asyncio.Semaphore(settings.sync_max_concurrency)

    async def record(result: SyncResult) -> None:
        summary.results.append(result)
        if publisher is not None:
            await publisher.publish_result(result)

    async def one(user_id: str, entries: list[Entry]) -> None:
        *older, (event, source) = entries
        newer = found.newer.get(user_id)
        async with slots:
            if gate is not None and gate.tripped:
                summary.not_started += 1
                return
            if newer is not None:
                # The live consumer owns this user's newer state; writing ours could undo it.
                superseding = newer
                older = entries
            else:
                try:
                    result = await synchronizer.apply(
                        event,
                        source=source,
                        received_at=time.monotonic(),
                        mode=Mode.REPLAY,
                        earlier=[old for old, _ in older],
                    )
                except RevocationsHeld:
                    return
                await record(result)
                echo(describe(result))
                if progress is not None:
                    progress.applied(result)
                superseding = event
        for old, position in older:
            await record(superseded_result(old.id, superseding, source=position, mode=Mode.REPLAY))

    await asyncio.gather(*(one(user_id, entries) for user_id, entries in found.users.items()))
    if gate is not None:
        summary.held = gate.held


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
    """The closing summary of a replay: what was read, a table of outcomes, and why it stopped."""
    lines = [
        f"read {summary.records} records ({summary.invalid} invalid, skipped),"
        f" {summary.users} users",
        f"  {'outcome':<11} {'count':>5}",
    ]
    lines += [
        f"  {outcome.value:<11} {summary.count(outcome):>5}"
        for outcome in outcomes
        if summary.count(outcome)
    ]
    lines.append(f"  {'total':<11} {len(summary.results):>5}")
    if summary.held:
        lines.append(
            f"replay stopped: the mass-revocation guard held {summary.held} revocation(s)"
            f" after {summary.revocation_limit} in this run ({summary.not_started} users not"
            " started). Check the IdP, then re-run; to allow more for this run:"
            " --max-revocations N"
        )
    if summary.refused_writes is not None:
        lines.append(
            f"replay refused: it would write {summary.refused_writes} users, more than"
            f" --max-writes {summary.max_writes}; nothing was written"
        )
    return lines
