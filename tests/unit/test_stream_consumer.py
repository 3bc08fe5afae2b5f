"""Tests of the stream consumer's accounting: every record gets a result, every partition commits.

The Kafka consumer and the audit producer are small in-memory stand-ins (the real ones are
exercised in tests/integration); the consumer loop, dispatcher and offset tracker are the real
ones, and the synchronizer is scripted per record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from consumer.events import Mode, Outcome, RoleChangeEvent, SourcePosition, SyncResult
from consumer.observability.metrics import REGISTRY
from consumer.results import Queued, WriteFailure, folded_results
from consumer.stream.consumer import FlowLimits, StreamConsumer
from consumer.stream.publisher import DEFAULT_MAX_RECORD_BYTES
from consumer.stream.work import read_record
from consumer.sync import Applied
from tests.integration.harness import wait_until

TOPIC = "input"
DEADLINE = 10.0

# What the synchronizer does with one record's event.
OUTCOMES = ("synced", "failed", "slow", "flaky", "crash")


def event_bytes(user_id: str, offset: int) -> bytes:
    """A valid role-change event of `user_id`, its id naming the offset."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"evt-{offset}",
            "source": "test",
            "type": "idp.user.roles.changed",
            "data": {"user_id": user_id, "user_name": f"{user_id}@example.com", "roles": []},
        }
    ).encode()


def consumer_record(
    partition: int, offset: int, key: str, value: bytes
) -> ConsumerRecord[Any, Any]:
    """A fetched record as aiokafka hands it over."""
    return ConsumerRecord(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=(),
    )


class InMemoryKafka:
    """The part of AIOKafkaConsumer the stream consumer calls, over fixed per-partition logs."""

    def __init__(self, logs: Mapping[int, list[ConsumerRecord[Any, Any]]]) -> None:
        self._logs = {TopicPartition(TOPIC, p): list(records) for p, records in logs.items()}
        self._positions = dict.fromkeys(self._logs, 0)
        self.paused: set[TopicPartition] = set()
        self.ever_paused: set[TopicPartition] = set()
        self.commits: dict[TopicPartition, int] = {}
        self.committed_more = asyncio.Event()

    def assignment(self) -> set[TopicPartition]:
        return set(self._logs)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)
        self.ever_paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        room = max_records
        for tp, records in self._logs.items():
            if tp in self.paused or room == 0:
                continue
            start = self._positions[tp]
            taken = records[start : start + room]
            if taken:
                batch[tp] = taken
                self._positions[tp] = start + len(taken)
                room -= len(taken)
        # A real fetch waits up to timeout_ms for data; yielding keeps the workers running.
        await asyncio.sleep(0 if batch else 0.001)
        return batch

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.update(offsets)
        self.committed_more.set()


@dataclass
class InMemoryPublisher:
    """Acknowledges every audit at once and keeps it."""

    results: list[SyncResult] = field(default_factory=list)
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    async def publish_result(self, result: SyncResult) -> None:
        self.results.append(result)

    async def publish_results(self, results: Sequence[SyncResult]) -> None:
        for result in results:
            await self.publish_result(result)

    async def publish_dead_letter(self, letter: object) -> None:
        return None


class ScriptedSynchronizer:
    """Does with each event what the script says for its offset."""

    def __init__(self, script: Mapping[tuple[int, int], str], failures_before_success: int) -> None:
        self._script = script
        self._failures_before_success = failures_before_success
        self._calls: dict[tuple[int, int], int] = defaultdict(int)

    async def apply(
        self,
        event: RoleChangeEvent,
        *,
        source: SourcePosition,
        received_at: float,
        mode: Mode = Mode.LIVE,
        earlier: Sequence[Queued] = (),
    ) -> Applied:
        where = (source.partition, source.offset)
        self._calls[where] += 1
        behaviour = self._script[where]
        if behaviour == "crash":
            raise ZeroDivisionError("a bug in the synchronizer")
        if behaviour == "flaky" and self._calls[where] <= self._failures_before_success:
            raise KeyError("unmapped response")
        if behaviour == "slow":
            # Transient trouble the client retries inside one call: a few waits, then success.
            for _ in range(3):
                await asyncio.sleep(0)
        failed = behaviour == "failed"
        result = SyncResult(
            event_id=event.id,
            user_id=event.user_id,
            outcome=Outcome.FAILED if failed else Outcome.SYNCED,
            reason="user_not_found" if failed else None,
            source=source,
            mode=mode,
            processed_at=datetime.now(UTC),
        )
        failure = WriteFailure(Outcome.FAILED, "user_not_found", "no such user") if failed else None
        return Applied(result, folded_results(earlier, None, result, failure=failure, now=0.0))


async def drive(
    logs: Mapping[int, list[ConsumerRecord[Any, Any]]],
    script: Mapping[tuple[int, int], str],
    *,
    limits: FlowLimits,
    attempts_to_fail: int = 1,
    kafka: InMemoryKafka | None = None,
    publisher: InMemoryPublisher | None = None,
) -> tuple[InMemoryKafka, InMemoryPublisher, StreamConsumer]:
    """Run the real consumer loop until every partition committed its end, then stop it."""
    kafka = kafka or InMemoryKafka(logs)
    publisher = publisher or InMemoryPublisher()
    stream = StreamConsumer(
        kafka,  # type: ignore[arg-type]
        ScriptedSynchronizer(script, attempts_to_fail),  # type: ignore[arg-type]
        publisher,  # type: ignore[arg-type]
        max_concurrency=4,
        limits=limits,
    )
    ends = {TopicPartition(TOPIC, p): len(records) for p, records in logs.items() if records}
    stop = asyncio.Event()
    task = asyncio.create_task(stream.run(stop))
    try:
        async with asyncio.timeout(DEADLINE):
            while kafka.commits != ends:
                kafka.committed_more.clear()
                await kafka.committed_more.wait()
    finally:
        stop.set()
        await task
    return kafka, publisher, stream


FAST = FlowLimits(
    commit_interval=0.0, internal_error_attempts=3, internal_error_wait=0.0001, fetch_batch=7
)

record_plans = st.lists(
    st.tuples(
        st.integers(0, 2), st.sampled_from(["u-1", "u-2", "u-3", "u-4"]), st.sampled_from(OUTCOMES)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=record_plans)
def test_every_partition_commits_its_end_whatever_the_handlers_do(
    plan: list[tuple[int, str, str]],
) -> None:
    """For any mix of success, permanent failure, transient trouble and crashes, every partition
    commits its last offset + 1 and every record gets exactly one audit."""
    logs: dict[int, list[ConsumerRecord[Any, Any]]] = defaultdict(list)
    script: dict[tuple[int, int], str] = {}
    for partition, user, behaviour in plan:
        offset = len(logs[partition])
        logs[partition].append(consumer_record(partition, offset, user, event_bytes(user, offset)))
        script[(partition, offset)] = behaviour

    # Captured, so the default console renderer spends no time drawing tracebacks.
    with capture_logs():
        kafka, publisher, _ = asyncio.run(drive(logs, script, limits=FAST))

    assert kafka.commits == {TopicPartition(TOPIC, p): len(r) for p, r in logs.items()}
    audited = sorted((r.source.partition, r.source.offset) for r in publisher.results)
    assert audited == sorted(script)
    for result in publisher.results:
        behaviour = script[(result.source.partition, result.source.offset)]
        # A record folded into a newer one's write is audited with that write's outcome.
        folded = (result.detail or "").startswith(("folded into", "superseded_by"))
        if behaviour == "crash" and not folded:
            assert (result.outcome, result.reason) == (Outcome.FAILED, "internal_error")
            assert result.detail == "builtins.ZeroDivisionError"
            assert result.attempts == FAST.internal_error_attempts


async def test_an_unexpected_exception_is_retried_then_audited_internal_error() -> None:
    """A crash is attempted `internal_error_attempts` times, then audited failed with its type,
    the traceback logged at ERROR, and the partition commits past it."""
    records = [
        consumer_record(0, 0, "u-1", event_bytes("u-1", 0)),
        consumer_record(0, 1, "u-2", event_bytes("u-2", 1)),
    ]
    with capture_logs() as logs:
        kafka, publisher, _ = await drive(
            {0: records}, {(0, 0): "crash", (0, 1): "synced"}, limits=FAST
        )
    assert kafka.commits == {TopicPartition(TOPIC, 0): 2}
    by_offset = {r.source.offset: r for r in publisher.results}
    assert (by_offset[0].outcome, by_offset[0].reason) == (Outcome.FAILED, "internal_error")
    assert by_offset[1].outcome is Outcome.SYNCED
    crashed = [e for e in logs if e["event"] == "stream.apply_crashed"]
    assert [e["attempt"] for e in crashed] == [1, 2, 3]
    final = [e for e in logs if e["event"] == "stream.internal_error"]
    assert len(final) == 1
    assert final[0]["log_level"] == "error"
    assert final[0]["exc_info"] is True


async def test_a_flaky_exception_that_clears_within_the_attempts_is_synced() -> None:
    """An exception that stops before the attempts run out ends in the synchronizer's own result."""
    records = [consumer_record(0, 0, "u-1", event_bytes("u-1", 0))]
    _, publisher, _ = await drive({0: records}, {(0, 0): "flaky"}, limits=FAST, attempts_to_fail=2)
    assert [(r.outcome, r.attempts) for r in publisher.results] == [(Outcome.SYNCED, 0)]


async def test_cancellation_is_never_turned_into_a_result() -> None:
    """A worker cancelled mid-apply (shutdown past its grace) publishes nothing for its record."""
    started = asyncio.Event()

    class Hanging(ScriptedSynchronizer):
        async def apply(self, event: RoleChangeEvent, **_: Any) -> SyncResult:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("never released")

    kafka = InMemoryKafka({0: [consumer_record(0, 0, "u-1", event_bytes("u-1", 0))]})
    publisher = InMemoryPublisher()
    stream = StreamConsumer(
        kafka,  # type: ignore[arg-type]
        Hanging({}, 0),  # type: ignore[arg-type]
        publisher,  # type: ignore[arg-type]
        max_concurrency=1,
        limits=FlowLimits(commit_interval=0.0, shutdown_grace=0.01, internal_error_wait=0.0001),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(stream.run(stop))
    async with asyncio.timeout(DEADLINE):
        await started.wait()
    stop.set()
    async with asyncio.timeout(DEADLINE):
        await task
    assert publisher.results == []
    assert kafka.commits == {}


async def test_a_stuck_head_pauses_its_partition_at_the_window_and_drains_once_it_clears() -> None:
    """One user held: its partition pauses at `max_uncommitted`, the tracker stays small, the age
    gauge grows and the stuck record is reported; released, everything commits."""
    release = asyncio.Event()
    limits = FlowLimits(commit_interval=0.0, max_uncommitted=50, fetch_batch=10, stuck_after=0.0)

    class StuckFirst(ScriptedSynchronizer):
        async def apply(self, event: RoleChangeEvent, **kwargs: Any) -> Applied:
            if event.user_id == "u-stuck":
                await release.wait()
            return await super().apply(event, **kwargs)

    records = [consumer_record(0, 0, "u-stuck", event_bytes("u-stuck", 0))]
    records += [
        consumer_record(0, offset, f"u-{offset}", event_bytes(f"u-{offset}", offset))
        for offset in range(1, 500)
    ]
    kafka = InMemoryKafka({0: records})
    tp = TopicPartition(TOPIC, 0)
    stream = StreamConsumer(
        kafka,  # type: ignore[arg-type]
        StuckFirst(dict.fromkeys(((0, o) for o in range(500)), "synced"), 0),  # type: ignore[arg-type]
        InMemoryPublisher(),  # type: ignore[arg-type]
        max_concurrency=8,
        limits=limits,
    )
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(stream.run(stop))
        await wait_until(
            lambda: tp in kafka.paused and stream._tracker.pending(tp) == 1,
            within=DEADLINE,
            what="the partition to pause with only the stuck record unfinished",
        )
        age = REGISTRY.get_sample_value(
            "cxone_sync_oldest_unfinished_age_seconds", {"topic": TOPIC, "partition": "0"}
        )
        window = stream._tracker.uncommitted(tp)
        retained = stream._tracker.retained(tp)
        release.set()
        async with asyncio.timeout(DEADLINE):
            while kafka.commits.get(tp) != 500:
                kafka.committed_more.clear()
                await kafka.committed_more.wait()
        stop.set()
        await task
    assert limits.max_uncommitted <= window < limits.max_uncommitted + limits.fetch_batch
    assert retained <= 20
    assert age is not None
    assert age >= 0.0
    reported = [e for e in logs if e["event"] == "stream.oldest_unfinished"]
    assert reported[0]["user_id"] == "u-stuck"
    assert reported[0]["offset"] == 0
    full = [e for e in logs if e["event"] == "stream.window_full"]
    assert (full[0]["oldest_user_id"], full[0]["oldest_offset"]) == ("u-stuck", 0)


def keyed(key: bytes | None, value: bytes) -> ConsumerRecord[Any, Any]:
    """A fetched record with exactly this key (None: no key)."""
    return dataclasses.replace(consumer_record(0, 7, "", value), key=key)


def test_a_record_keyed_by_its_user_is_read_as_its_event() -> None:
    """The key equals data.user_id: the record becomes an event to apply."""
    item = read_record(
        keyed(b"u-7", event_bytes("u-7", 7)), epoch=0, now=0.0, max_bytes=DEFAULT_MAX_RECORD_BYTES
    )
    assert (item.invalid, item.event is not None, item.dispatch_key) == (None, True, "u-7")


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (None, "record has no key"),
        (b"u-8", "record has a key other than data.user_id"),
        (b"", "record has a key other than data.user_id"),
        (b"U-7", "record has a key other than data.user_id"),
        (b"u-7 ", "record has a key other than data.user_id"),
    ],
)
def test_a_record_without_its_user_as_key_is_a_key_mismatch(key: bytes | None, why: str) -> None:
    """No key, or any other key, makes the record invalid (key_mismatch): it is never applied."""
    item = read_record(
        keyed(key, event_bytes("u-7", 7)), epoch=0, now=0.0, max_bytes=DEFAULT_MAX_RECORD_BYTES
    )
    assert item.event is None
    assert item.invalid is not None
    assert (item.invalid.reason, item.invalid.event_id) == ("key_mismatch", "evt-7")
    assert item.invalid.detail == f"{why}; the key must be the user id"
    assert item.dispatch_key == "invalid/0/7"


async def test_a_folded_records_log_line_names_its_own_event_and_offset() -> None:
    """A record folded into a newer one's write logs its sync.result with its own id and offset."""
    records = [consumer_record(0, offset, "u-1", event_bytes("u-1", offset)) for offset in range(3)]
    with capture_logs() as logs:
        _, publisher, _ = await drive(
            {0: records}, {(0, offset): "slow" for offset in range(3)}, limits=FAST
        )
    lines = [entry for entry in logs if entry["event"] == "sync.result"]
    assert sorted((line["offset"], line["event_id"]) for line in lines) == [
        (0, "evt-0"),
        (1, "evt-1"),
        (2, "evt-2"),
    ]
    by_offset = {line["offset"]: line["outcome"] for line in lines}
    assert by_offset[2] == "synced"
    assert "superseded" in by_offset.values()
    assert sorted(r.source.offset for r in publisher.results) == [0, 1, 2]


async def test_a_stop_during_a_rebalance_does_not_wait_for_the_group() -> None:
    """A fetch held by a rebalance (aiokafka's getmany waits for the new assignment) does not
    hold the stop: the member stops and commits what it finished."""
    published = asyncio.Event()
    waiting_for_assignment = asyncio.Event()

    class Rebalancing(InMemoryKafka):
        """After its first batch, every fetch waits for an assignment that never comes."""

        fetched = False

        async def getmany(
            self, *, timeout_ms: int, max_records: int
        ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
            if self.fetched:
                waiting_for_assignment.set()
                await asyncio.Event().wait()
            self.fetched = True
            return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)

    class Announcing(InMemoryPublisher):
        async def publish_result(self, result: SyncResult) -> None:
            await super().publish_result(result)
            published.set()

    kafka = Rebalancing({0: [consumer_record(0, 0, "u-1", event_bytes("u-1", 0))]})
    publisher = Announcing()
    stream = StreamConsumer(
        kafka,  # type: ignore[arg-type]
        ScriptedSynchronizer({(0, 0): "synced"}, 0),  # type: ignore[arg-type]
        publisher,  # type: ignore[arg-type]
        max_concurrency=1,
        # No periodic commit: only the final one can commit the finished record.
        limits=FlowLimits(commit_interval=3600.0),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(stream.run(stop))
    async with asyncio.timeout(DEADLINE):
        await published.wait()
        await waiting_for_assignment.wait()
    stop.set()
    async with asyncio.timeout(DEADLINE):
        await task
    assert [result.outcome for result in publisher.results] == [Outcome.SYNCED]
    assert kafka.commits == {TopicPartition(TOPIC, 0): 1}


@dataclass
class LateAcks(InMemoryPublisher):
    """Acknowledges each audit after a drawn number of loop turns, batches record by record."""

    turns: list[int] = field(default_factory=list)
    acknowledged: set[tuple[int, int]] = field(default_factory=set)

    async def publish_result(self, result: SyncResult) -> None:
        for _ in range(self.turns.pop() if self.turns else 0):
            await asyncio.sleep(0)
        self.acknowledged.add((result.source.partition, result.source.offset))
        self.results.append(result)

    async def publish_results(self, results: Sequence[SyncResult]) -> None:
        # Acknowledgements of one batch arrive in any order, as the broker's may.
        await asyncio.gather(*(self.publish_result(result) for result in results))


class CheckedCommits(InMemoryKafka):
    """Notes every commit that passes a record whose audit was not acknowledged yet."""

    def __init__(self, logs: Mapping[int, list[ConsumerRecord[Any, Any]]]) -> None:
        super().__init__(logs)
        self.publisher: LateAcks | None = None
        self.premature: list[tuple[int, int]] = []

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        assert self.publisher is not None
        for tp, offset in offsets.items():
            self.premature += [
                (tp.partition, earlier)
                for earlier in range(offset)
                if (tp.partition, earlier) not in self.publisher.acknowledged
            ]
        await super().commit(offsets)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from(["u-1", "u-2"]), st.sampled_from(["slow"])),
        min_size=2,
        max_size=30,
    ),
    turns=st.lists(st.integers(0, 6), max_size=60),
)
def test_batched_folded_audits_are_never_committed_past_before_acknowledged(
    plan: list[tuple[int, str, str]], turns: list[int]
) -> None:
    """Folded events' audits go out as one batch acknowledged in any order: no commit ever
    passes a record whose audit is not acknowledged, and every record ends audited once."""
    logs: dict[int, list[ConsumerRecord[Any, Any]]] = defaultdict(list)
    script: dict[tuple[int, int], str] = {}
    for partition, user, behaviour in plan:
        offset = len(logs[partition])
        logs[partition].append(consumer_record(partition, offset, user, event_bytes(user, offset)))
        script[(partition, offset)] = behaviour
    kafka = CheckedCommits(logs)
    publisher = LateAcks(turns=list(turns))
    kafka.publisher = publisher

    with capture_logs():
        asyncio.run(drive(logs, script, limits=FAST, kafka=kafka, publisher=publisher))

    assert kafka.premature == []
    assert kafka.commits == {TopicPartition(TOPIC, p): len(r) for p, r in logs.items()}
    assert sorted(publisher.acknowledged) == sorted(script)
    assert len(publisher.results) == len(script)
