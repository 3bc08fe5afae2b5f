"""The range a replay reads: where it starts, where it ends, and reading it.

The end is each partition's end offset captured when the read starts, so the read ends however
much traffic keeps arriving. Records are validated exactly as the live path validates them.
After the range, the rest of each partition up to its end at that moment is read for one thing
only: which users already have a newer event, which the live consumer will write.

Memory follows the users, not the range: the first read keeps each user's newest event only
(`ReplayRead.last`); the events themselves are read again, window by window (`RangeReader.windows`),
so at most a window of them is held however long the range.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumer.errors import ConfigurationError
from consumer.events import RoleChangeEvent, SourcePosition
from consumer.progress import ReplayProgress
from consumer.settings import Settings
from consumer.stream.broker_credentials import verify_broker_credentials
from consumer.stream.broker_profile import BrokerProfile, probe_broker
from consumer.stream.kafka import (
    INPUT_ISOLATION_LEVEL,
    LogEnd,
    connection_options,
    log_ends,
    partitions_of,
    stop_consumer,
)
from consumer.stream.work import read_record

# A fetch that returns nothing this many times in a row, short of the captured end, ends the
# partition anyway: the end offset may count records no fetch returns (transaction markers).
_EMPTY_FETCHES_AT_END = 10


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


WINDOW_EVENTS = 10_000
"""The most events a replay holds at once (one fetch more at most): the window it applies."""

Window = dict[str, list[Entry]]
"""Each user's events of one window, oldest first."""


@dataclass
class ReplayRead:
    """What reading the range found: each user's newest event in it, and the counts."""

    last: dict[str, Entry] = field(default_factory=dict)
    # The first event of a user beyond the range: that user is left to the live consumer.
    newer: dict[str, RoleChangeEvent] = field(default_factory=dict)
    # Users with an event in the range at or past the live group's committed offset: the live
    # consumer has not finished it and will write it, so the user is left to it too.
    owed_to_live: set[str] = field(default_factory=set)
    records: int = 0
    invalid: int = 0


async def read_range(
    settings: Settings, selection: ReplayRange, progress: ReplayProgress | None = None
) -> ReplayRead:
    """Read the chosen range up to the end offsets captured now; note users with later events."""
    async with open_range(settings, selection, progress) as reader:
        return reader.found


class RangeReader:
    """A read range, and a look past it for newer events that can be taken again and again."""

    def __init__(
        self,
        kafka: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        settings: Settings,
        since_ms: int,
        profile: BrokerProfile,
    ) -> None:
        self.found = ReplayRead()
        self._kafka = kafka
        self._profile = profile
        self._partitions = partitions
        self._settings = settings
        self._max_bytes = settings.kafka_max_record_bytes
        self._since_ms = since_ms
        self._lock = asyncio.Lock()
        self._started = 0
        self._finished = 0
        # Where the range starts, and where the first read of it ended each partition.
        self.starts: dict[TopicPartition, int] = {}
        self.ends: dict[TopicPartition, LogEnd] = {}

    async def windows(
        self, apply: Callable[[Window], Awaitable[None]], *, size: int = WINDOW_EVENTS
    ) -> None:
        """Read the range again and hand its events to `apply`, at most about `size` at a time.

        In order: a user's events of one window all come before any of theirs in the next.
        """
        kafka = AIOKafkaConsumer(
            **connection_options(self._settings), group_id=None, enable_auto_commit=False
        )
        window: Window = {}
        held = 0

        def in_range(record_timestamp: int, entry: Entry | None) -> None:
            nonlocal held
            if record_timestamp < self._since_ms or entry is None:
                return
            window.setdefault(entry[0].user_id, []).append(entry)
            held += 1

        async def after_batch() -> None:
            nonlocal window, held
            if held >= size:
                full, window, held = window, {}, 0
                await apply(full)

        try:
            await kafka.start()
            kafka.assign(self._partitions)
            for tp, offset in self.starts.items():
                kafka.seek(tp, offset)
            await _read_to_end(
                kafka,
                self.ends,
                max_bytes=self._max_bytes,
                on_record=in_range,
                on_beyond=lambda _timestamp, _entry: None,
                after_batch=after_batch,
                max_records=max(1, min(1000, size)),
            )
        finally:
            await stop_consumer(kafka)
        if window:
            await apply(window)

    def beyond(self, record_timestamp: int, entry: Entry | None) -> None:
        """Note a record past the range: its user has a newer event, the live consumer's."""
        if entry is not None:
            self.found.newer.setdefault(entry[0].user_id, entry[0])

    async def look_for_newer(self) -> None:
        """Return once a look begun after this call read each partition to its end then.

        Looks run one at a time and callers waiting together share the next one, so many users
        about to be written cost one read of what arrived meanwhile, not one each.
        """
        wanted = self._started + 1
        async with self._lock:
            if self._finished >= wanted:
                return
            self._started += 1
            number = self._started
            ends = await log_ends(self._kafka, self._partitions, self._profile)
            await _read_to_end(
                self._kafka,
                ends,
                max_bytes=self._max_bytes,
                on_record=self.beyond,
                on_beyond=self.beyond,
            )
            self._finished = number


@contextlib.asynccontextmanager
async def open_range(
    settings: Settings, selection: ReplayRange, progress: ReplayProgress | None = None
) -> AsyncIterator[RangeReader]:
    """Read the chosen range up to the end offsets captured now, and the rest of each partition
    up to its end after that (users with newer events); keep reading past it on request."""
    progress = progress or ReplayProgress(interactive=False)
    await verify_broker_credentials(settings)
    kafka = AIOKafkaConsumer(
        **connection_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level=INPUT_ISOLATION_LEVEL,
    )
    try:
        await kafka.start()
    except BaseException:
        # A broker that cannot be reached leaves a half-started client to close.
        await stop_consumer(kafka)
        raise
    try:
        partitions = await _start_positions(kafka, settings.kafka_input_topic, selection)
        profile = await probe_broker(connection_options(settings))
        # Some brokers answer a time lookup loosely (Tansu 0.6 may return an earlier offset),
        # so records older than --since are also skipped here.
        since_ms = int(selection.since.timestamp() * 1000) if selection.since else -1
        reader = RangeReader(kafka, partitions, settings, since_ms, profile)
        found = reader.found
        ends = await log_ends(kafka, partitions, profile)
        starts = {tp: await kafka.position(tp) for tp in partitions}
        reader.starts = starts
        progress.records_expected = sum(max(0, ends[tp].offset - starts[tp]) for tp in partitions)

        def in_range(record_timestamp: int, entry: Entry | None) -> None:
            if record_timestamp < since_ms:
                return
            found.records += 1
            progress.read()
            if entry is None:
                found.invalid += 1
                return
            found.last[entry[0].user_id] = entry

        await _read_to_end(
            kafka,
            ends,
            max_bytes=settings.kafka_max_record_bytes,
            on_record=in_range,
            on_beyond=reader.beyond,
        )
        # Where this read ended each partition, exactly: the windows read again up to there, by
        # offset alone, so they hold the very records read here whatever arrived since.
        reader.ends = {tp: LogEnd(await kafka.position(tp)) for tp in partitions}
        found.owed_to_live = await _owed_to_live(settings, found)
        # The rest of each partition, up to its end now: which users the live consumer has
        # newer events for. Bounded: traffic arriving from here on is read only by later looks.
        await reader.look_for_newer()
        yield reader
    finally:
        await stop_consumer(kafka)


async def _owed_to_live(settings: Settings, found: ReplayRead) -> set[str]:
    """The users with an event in the range that the live group has not committed past.

    Read after the range: an offset below the group's commit then was finished (written or
    audited) by the live consumer, so writing the user cannot come before a live write of it. A
    partition the group never committed has no live consumer behind it, and owes nothing.
    """
    probe = AIOKafkaConsumer(
        **connection_options(settings), group_id=settings.kafka_group_id, enable_auto_commit=False
    )
    try:
        await probe.start()
        partitions = {
            TopicPartition(source.topic, source.partition) for _, source in found.last.values()
        }
        committed = {tp: await probe.committed(tp) for tp in partitions}
    finally:
        await stop_consumer(probe)
    # A user's events share a partition (keyed by user), so their newest has the highest offset.
    return {
        user_id
        for user_id, (_, source) in found.last.items()
        if (at := committed.get(TopicPartition(source.topic, source.partition))) is not None
        and source.offset >= at
    }


async def _read_to_end(
    kafka: AIOKafkaConsumer,
    ends: dict[TopicPartition, LogEnd],
    *,
    max_bytes: int,
    on_record: Callable[[int, Entry | None], None],
    on_beyond: Callable[[int, Entry | None], None],
    after_batch: Callable[[], Awaitable[None]] | None = None,
    max_records: int = 1000,
) -> None:
    """Hand every record below `ends` to `on_record`; stop each partition at its end.

    The end is read as `LogEnd.holds` says (a record past Tansu's reported end offset that was
    written before the end was taken still belongs); the first record it does not hold ends the
    partition.
    """
    active = {tp for tp in ends if not await _read_to_highwater(kafka, tp, ends[tp])}
    empty = 0
    while active:
        batch = await kafka.getmany(*active, timeout_ms=500, max_records=max_records)
        for tp, fetched in batch.items():
            for record in fetched:
                entry = _entry(record, max_bytes=max_bytes)
                if not ends[tp].holds(record.offset, record.timestamp):
                    on_beyond(record.timestamp, entry)
                    # Read again from here by the next pass over the partition.
                    kafka.seek(tp, record.offset)
                    active.discard(tp)
                    break
                on_record(record.timestamp, entry)
        if after_batch is not None:
            await after_batch()
        if batch:
            empty = 0
            # Read to the high watermark of the last fetch (right on every broker): done, without
            # waiting for an empty fetch to say so.
            for tp in list(active):
                if await _read_to_highwater(kafka, tp, ends[tp]):
                    active.discard(tp)
            continue
        empty += 1
        for tp in list(active):
            if await kafka.position(tp) >= ends[tp].offset or empty >= _EMPTY_FETCHES_AT_END:
                active.discard(tp)


async def _read_to_highwater(kafka: AIOKafkaConsumer, tp: TopicPartition, end: LogEnd) -> bool:
    """Whether `tp` is read to the high watermark of its last fetch and past `end`.

    The watermark in fetch responses is right on every broker (Tansu's undercount is in
    ListOffsets only); before any fetch of `tp` it is unknown, and this is False.
    """
    highwater = kafka.highwater(tp)
    return highwater is not None and await kafka.position(tp) >= max(highwater, end.offset)


def _entry(record: ConsumerRecord[bytes, bytes], *, max_bytes: int) -> Entry | None:
    """The valid event of a record with where it was read, or None for an invalid record."""
    # The live path's own validation, the record key check included.
    item = read_record(record, epoch=0, now=time.monotonic(), max_bytes=max_bytes)
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
