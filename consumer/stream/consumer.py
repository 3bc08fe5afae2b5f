"""The Kafka side of the service: fetch, dispatch by user, publish results, commit what is done.

The fetch loop is the only code that touches the consumer's assignment and pauses; workers never
block it, so the poll interval stays short however slow CXone is. A record's offset is committed
only after its audit event (and DLQ copy) was acknowledged, and every earlier record of its
partition was too.

A newly assigned partition is read ahead before any of it is dispatched: from the committed
offset up to its end at assignment time, bounded by the partition's uncommitted window plus a
fetch batch less one record (the most an owner fetches past the commit before it pauses). That is
every record a previous owner may have written beyond the commit, so each user's queued events
fold into one write of their newest state, and no older state is written after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from consumer.attempts import first_then_retried
from consumer.errors import InvalidEvent
from consumer.events import (
    Mode,
    Outcome,
    RoleChangeEvent,
    SyncResult,
)
from consumer.observability.metrics import LATE_WRITES_REPAIRED, OLDEST_UNFINISHED_AGE
from consumer.observability.outcomes import record_result
from consumer.results import WriteFailure, folded_results
from consumer.stream.broker_profile import APACHE_KAFKA, BrokerProfile
from consumer.stream.dispatcher import KeyedDispatcher
from consumer.stream.kafka import LogEnd, fetch_positions, log_ends
from consumer.stream.lease import MembershipLease
from consumer.stream.offsets import OffsetTracker
from consumer.stream.publisher import AuditPublisher, DeadLetter
from consumer.stream.settle import LateWriteWatch
from consumer.stream.work import (
    WorkItem,
    fold_items,
    internal_error_result,
    read_record,
    user_id_of_key,
)
from consumer.sync import Applied, Synchronizer

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FlowLimits:
    """Bounds on fetched-but-unfinished records.

    A fetch takes no more than the room `total` has left, except for one partition being read
    ahead after its assignment, which reads on to its window (plus a batch less one) however
    full the process is: held records stay within `total` plus one such read-ahead. A partition
    at `per_partition` is paused, so it passes that by at most one fetch batch; a partition
    being read ahead is bounded by its window instead.
    """

    per_partition: int = 2_000
    total: int = 10_000
    # Offsets from a partition's oldest unfinished record through its last fetched one: at this
    # window the partition pauses, so one stuck user bounds redelivery and memory, not traffic.
    max_uncommitted: int = 10_000
    # Most records one fetch hands over; a partition may pass `per_partition` by up to this many.
    fetch_batch: int = 500
    commit_interval: float = 1.0
    revoke_grace: float = 10.0
    shutdown_grace: float = 30.0
    final_commit_timeout: float = 2.0
    # An exception escaping the synchronizer: this many attempts, backing off from this many
    # seconds, before the record is audited `failed`, `internal_error`.
    internal_error_attempts: int = 3
    internal_error_wait: float = 1.0
    # A partition whose oldest unfinished record is this old is reported (user, offset, age)
    # at WARNING, at most once per `stuck_report_interval` seconds.
    stuck_after: float = 60.0
    stuck_report_interval: float = 60.0


@dataclass
class _CatchUp:
    """A newly assigned partition read ahead to its end at assignment, not dispatched yet."""

    # None until the fetch loop has asked the broker; records fetched before that are held.
    end: LogEnd | None = None
    held: list[WorkItem] = field(default_factory=list)


class StreamConsumer:
    """Runs the consumer group member: fetch, dispatch, publish, commit, rebalance, pause."""

    def __init__(
        self,
        kafka: AIOKafkaConsumer,
        synchronizer: Synchronizer,
        publisher: AuditPublisher,
        *,
        max_concurrency: int,
        limits: FlowLimits | None = None,
        mode: Mode = Mode.LIVE,
        hold_reason: Callable[[], str | None] = lambda: None,
        on_inflight_change: Callable[[int], None] | None = None,
        on_assignment_change: Callable[[frozenset[TopicPartition]], None] | None = None,
        on_result: Callable[[SyncResult], None] | None = None,
        lease: MembershipLease | None = None,
        late_writes: LateWriteWatch[WorkItem] | None = None,
        clock: Callable[[], float] = time.monotonic,
        broker: BrokerProfile = APACHE_KAFKA,
    ) -> None:
        self._kafka = kafka
        self._broker = broker
        self._lease = lease
        self._late_writes = late_writes
        self._sync = synchronizer
        self._publisher = publisher
        self._limits = limits or FlowLimits()
        self._mode = mode
        self._hold_reason = hold_reason
        self._on_assignment_change = on_assignment_change
        self._on_result = on_result
        self._clock = clock
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._dispatcher: KeyedDispatcher[WorkItem] = KeyedDispatcher(
            self._handle,
            _superseded_after_the_write,
            max_concurrency,
            fold=fold_items,
            on_inflight_change=on_inflight_change,
        )
        self._paused: set[TopicPartition] = set()
        self._full: set[TopicPartition] = set()
        self._stuck_reported: dict[TopicPartition, float] = {}
        self._held: str | None = None
        # The CXone work of each running handler, by (partition, offset, epoch): a revocation
        # cancels it at once.
        self._applying: dict[tuple[TopicPartition, int, int], asyncio.Task[Applied]] = {}
        # Partitions being revoked: no CXone work starts for them any more.
        self._revoking: set[TopicPartition] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._catching_up: dict[TopicPartition, _CatchUp] = {}
        self.committed: dict[TopicPartition, int] = {}

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        """The listener to pass to `subscribe`; it shares no lock with the fetch loop."""
        return _RebalanceListener(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and dispatch until `stop` is set, then finish in-flight work and commit.

        The stop ends the fetch loop at once, wherever it waits: aiokafka's getmany and commit
        wait, past any timeout, for a rebalance in progress to end, and a member told to stop
        must not wait for the group (its shutdown grace starts with the signal). Records fetched
        but not dispatched stay uncommitted, read again by the partition's next owner.
        """
        fetching = asyncio.ensure_future(self._fetch_until(stop))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not fetching.done():
                fetching.cancel()
                await asyncio.wait({fetching})
            if not fetching.cancelled():
                fetching.result()  # what the loop raised, raised here
        finally:
            for task in (fetching, stopping):
                task.cancel()
            await self._shutdown()

    async def _fetch_until(self, stop: asyncio.Event) -> None:
        """Fetch, dispatch and commit periodically until `stop` is set."""
        last_commit = self._clock()
        while not stop.is_set():
            await self._take_catch_up_ends()
            self._apply_pauses()
            batch = await self._kafka.getmany(timeout_ms=200, max_records=self._fetch_size())
            now = self._clock()
            for records in batch.values():
                for record in records:
                    self._accept(record, now)
            # Every record below each fetch position is tracked now: offsets the position passed
            # untracked are gaps (transaction markers, aborted records).
            for tp, position in fetch_positions(self._kafka).items():
                self._tracker.passed(tp, position)
            await self._end_catch_ups()
            self._look_again()
            if batch:
                log.debug(
                    "stream.fetched",
                    records=sum(len(records) for records in batch.values()),
                    pending=self._tracker.total_pending(),
                    busiest=max(self._tracker.pending(tp) for tp in batch),
                    paused=len(self._paused),
                )
            if now - last_commit >= self._limits.commit_interval:
                await self._commit()
                self._report_oldest(now)
                last_commit = now

    def _fetch_size(self) -> int:
        """Fetch no more than the total limit has room for, or the leading read-ahead's window.

        Nor more than a partition being read ahead has left of its window, so a read-ahead stops
        exactly where the previous owner's fetching had to stop.
        """
        room = self._limits.total - self._tracker.total_pending()
        leader = self._read_ahead_leader()
        if room <= 0 and leader is not None and leader not in self._paused:
            # Over `total`, only the leading read-ahead fetches, up to the end of its window.
            room = self._window(leader) - self._tracker.uncommitted(leader)
        for tp in self._catching_up:
            if tp not in self._paused:
                room = min(room, self._window(tp) - self._tracker.uncommitted(tp))
        return max(1, min(self._limits.fetch_batch, room))

    def _read_ahead_leader(self) -> TopicPartition | None:
        """The read-ahead that goes on past `total`: the one holding the most records.

        A read-ahead that ended early would give up no-going-back for its partition, so none
        ends for lack of room: past `total` the leader alone reads on, to its end or window,
        while the others wait paused; the next one leads once what the others hold is below
        `total` again (what was dispatched drains; what the others hold was read within
        `total`). So held records stay within `total` plus one read-ahead.
        """
        assignment = self._kafka.assignment()
        reading = [tp for tp in self._catching_up if tp in assignment]
        if not reading:
            return None
        leader = max(reading, key=lambda tp: len(self._catching_up[tp].held))
        others = self._tracker.total_pending() - len(self._catching_up[leader].held)
        return leader if others < self._limits.total else None

    def _accept(self, record: ConsumerRecord[bytes, bytes], now: float) -> None:
        tp = TopicPartition(record.topic, record.partition)
        # The key names the user for the stuck-record report; bounded, since any bytes can come.
        note = record.key[:128].decode(errors="replace") if record.key is not None else None
        epoch = self._tracker.track(tp, record.offset, at=now, note=note)
        item = read_record(record, epoch=epoch, now=now, max_bytes=self._publisher.max_record_bytes)
        catch_up = self._catching_up.get(tp)
        if catch_up is not None:
            if catch_up.end is None or catch_up.end.holds(record.offset, record.timestamp):
                catch_up.held.append(item)
                return
            self._release(tp, "end")
        self._dispatcher.submit(item.dispatch_key, item)

    async def _take_catch_up_ends(self) -> None:
        """Ask the broker where the partitions assigned since the last fetch end."""
        unknown = [tp for tp, catch_up in self._catching_up.items() if catch_up.end is None]
        if not unknown:
            return
        try:
            ends = await log_ends(self._kafka, unknown, self._broker)
        except KafkaError as error:
            # Asked again before the next fetch; the records fetched meanwhile are held.
            log.warning("stream.end_offsets_failed", error=type(error).__name__)
            return
        for tp, end in ends.items():
            if (catch_up := self._catching_up.get(tp)) is not None:
                catch_up.end = end

    async def _end_catch_ups(self) -> None:
        """Dispatch the read-ahead of each partition that reached its end or a flow limit."""
        if not self._catching_up:
            return
        assignment = self._kafka.assignment()
        for tp in list(self._catching_up):
            if tp not in self._catching_up:
                continue  # revoked while an earlier partition was being looked at
            if self._tracker.uncommitted(tp) >= self._window(tp):
                # The previous owner paused at its window, fetching at most one batch past it:
                # it wrote nothing beyond what is read ahead now.
                self._release(tp, "window_full")
            elif tp in assignment and await self._read_to_log_end(tp):
                self._release(tp, "log_end")

    def _window(self, tp: TopicPartition) -> int:
        """The uncommitted window of `tp`, wider by a fetch batch less one while read ahead.

        A partition pauses once its window is reached, so its owner can have fetched (and
        written) up to one batch less one record past it: the read-ahead covers exactly that.
        """
        extra = self._limits.fetch_batch - 1 if tp in self._catching_up else 0
        return self._limits.max_uncommitted + extra

    async def _read_to_log_end(self, tp: TopicPartition) -> bool:
        """Whether every record of `tp` there at assignment was fetched: nothing left to read.

        The last fetch response's stable end is right on every broker (Tansu's undercount is in
        ListOffsets only); before any response it is unknown, and so is this.
        """
        catch_up = self._catching_up.get(tp)
        # Read committed, the fetch stops at the last stable offset (an open transaction's
        # records wait there); Tansu's is the high watermark, as its ListOffsets undercounts.
        if self._broker.end_undercounted:
            highwater = self._kafka.highwater(tp)
        else:
            highwater = self._kafka.last_stable_offset(tp)
        if catch_up is None or catch_up.end is None or highwater is None:
            return False
        try:
            # Valid once a fetch response came, so this does not wait for a reset.
            async with asyncio.timeout(1.0):
                position = await self._kafka.position(tp)
        except (TimeoutError, KafkaError):
            return False
        # A rebalance while waiting may have revoked the partition or begun a new read-ahead.
        if self._catching_up.get(tp) is not catch_up:
            return False
        return bool(position >= max(highwater, catch_up.end.offset))

    def _release(self, tp: TopicPartition, reason: str) -> None:
        """End a partition's read-ahead: dispatch every held record at once, in offset order.

        Submitted without a pause in between, so each user's worker finds all of that user's
        held events queued and folds them into one write of the newest state.
        """
        catch_up = self._catching_up.pop(tp)
        for item in catch_up.held:
            self._dispatcher.submit(item.dispatch_key, replace(item, redelivered=True))
        held = catch_up.held
        log.info(
            "stream.caught_up",
            topic=tp.topic,
            partition=tp.partition,
            records=len(held),
            users=len({item.dispatch_key for item in held}),
            first_offset=held[0].offset if held else None,
            last_offset=held[-1].offset if held else None,
            end_offset=catch_up.end.offset if catch_up.end else None,
            reason=reason,
        )

    def _apply_pauses(self) -> None:
        """Pause what is over its limits or held by the circuit or the guard; resume the rest."""
        assignment = self._kafka.assignment()
        held = self._hold_reason()
        if held != self._held:
            log.warning("stream.hold", reason=held) if held else log.info("stream.release")
            self._held = held
            if held:
                self._dispatcher.pause()
            else:
                self._dispatcher.resume()
        over_total = self._tracker.total_pending() >= self._limits.total
        leader = self._read_ahead_leader() if over_total else None
        full = {tp for tp in assignment if self._tracker.uncommitted(tp) >= self._window(tp)}
        for tp in full - self._full:
            oldest = self._tracker.oldest_unfinished(tp)
            log.warning(
                "stream.window_full",
                topic=tp.topic,
                partition=tp.partition,
                uncommitted=self._tracker.uncommitted(tp),
                oldest_offset=oldest.offset if oldest else None,
                oldest_user_id=oldest.note if oldest else None,
                # Records kept uncommitted until their user's second look (see settle.py).
                held=self._tracker.held(tp),
            )
        self._full = full
        wanted = full | {
            tp
            for tp in assignment
            if held
            or (over_total and tp != leader)
            # A partition reading ahead holds its records until the read ends: its window bounds it.
            or (
                tp not in self._catching_up
                and self._tracker.pending(tp) >= self._limits.per_partition
            )
        }
        if to_pause := wanted - self._paused:
            self._kafka.pause(*to_pause)
        if to_resume := (self._paused - wanted) & assignment:
            self._kafka.resume(*to_resume)
        self._paused = wanted

    def _report_oldest(self, now: float) -> None:
        """Update the oldest-unfinished age of each partition; name a stuck one's user."""
        limits = self._limits
        for tp in self._tracker.partitions():
            oldest = self._tracker.oldest_unfinished(tp)
            age = 0.0 if oldest is None else max(0.0, now - oldest.tracked_at)
            OLDEST_UNFINISHED_AGE.labels(topic=tp.topic, partition=str(tp.partition)).set(age)
            if oldest is None or age < limits.stuck_after:
                self._stuck_reported.pop(tp, None)
                continue
            last = self._stuck_reported.get(tp)
            if last is not None and now - last < limits.stuck_report_interval:
                continue
            self._stuck_reported[tp] = now
            # The runbook starts here: the user and offset, then that user's `scim.retry` lines.
            log.warning(
                "stream.oldest_unfinished",
                topic=tp.topic,
                partition=tp.partition,
                offset=oldest.offset,
                user_id=oldest.note,
                age_seconds=round(age, 1),
                uncommitted=self._tracker.uncommitted(tp),
                pending=self._tracker.pending(tp),
                tracked=self._tracker.retained(tp),
            )

    def _drop_reports(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop reporting partitions this member no longer owns."""
        for tp in partitions:
            self._stuck_reported.pop(tp, None)
            self._full.discard(tp)
            with contextlib.suppress(KeyError):
                OLDEST_UNFINISHED_AGE.remove(tp.topic, str(tp.partition))

    async def _handle(self, item: WorkItem) -> None:
        """Produce, publish and account for the result of one record."""
        with structlog.contextvars.bound_contextvars(
            topic=item.tp.topic,
            partition=item.tp.partition,
            offset=item.offset,
            event_id=item.event.id if item.event else None,
            user_id=item.event.user_id if item.event else None,
        ):
            if item.settle:
                await self._settle(item)
                return
            if item.event is None:
                assert item.invalid is not None
                result = await self._dead_letter(item, item.invalid)
            else:
                applied = await self._apply(item, item.event)
                if applied is None:
                    # Revoked half-way: the partition's next owner applies the record again.
                    return
                result = applied.result
                self._watch_late_writes(item, item.event.user_id)
                self._publish_folded(list(zip(item.folded, applied.folded, strict=True)))
            await self._publish(item, result)

    async def _apply(self, item: WorkItem, event: RoleChangeEvent) -> Applied | None:
        """Apply the event to CXone; None when a revocation cancelled the work.

        Whatever escapes the synchronizer is a bug or a fault nothing maps yet: it is retried a
        few times with backoff, then audited `failed`, `internal_error`, so that one record can
        never stop its partition's commits. Cancellation is never caught.
        """
        key = (item.tp, item.offset, item.epoch)
        limits = self._limits
        attempts = 0

        async def attempt(number: int) -> Applied | None:
            nonlocal attempts
            attempts = number
            try:
                return await self._apply_once(item, event, key)
            except Exception as error:
                log.warning(
                    "stream.apply_crashed",
                    error=type(error).__name__,
                    attempt=number,
                    of=limits.internal_error_attempts,
                )
                raise

        try:
            return await first_then_retried(
                attempt,
                on=Exception,
                attempts=limits.internal_error_attempts,
                wait_initial=limits.internal_error_wait,
                wait_max=limits.internal_error_wait * 8,
                wait_jitter=limits.internal_error_wait,
            )
        except Exception as error:
            log.exception("stream.internal_error", error=type(error).__name__, attempts=attempts)
            result = internal_error_result(
                event,
                error,
                source=item.source,
                mode=self._mode,
                attempts=attempts,
                latency_ms=(self._clock() - item.received_at) * 1000.0,
            )
            # Nothing was judged or written for the events folded into it either.
            assert result.detail is not None
            failure = WriteFailure(Outcome.FAILED, result.reason, result.detail)
            return Applied(
                result,
                folded_results(item.earlier, None, result, failure=failure, now=self._clock()),
            )

    async def _apply_once(
        self, item: WorkItem, event: RoleChangeEvent, key: tuple[TopicPartition, int, int]
    ) -> Applied | None:
        """One attempt at the event, cancellable by a revocation without ending the worker."""
        if item.tp in self._revoking:
            return None
        work = asyncio.ensure_future(
            self._sync.apply(
                event,
                source=item.source,
                received_at=item.received_at,
                mode=self._mode,
                earlier=item.earlier,
            )
        )
        self._applying[key] = work
        try:
            return await work
        except asyncio.CancelledError:
            worker = asyncio.current_task()
            # Only the work was cancelled, not this worker (as a shutdown past its grace does).
            if work.cancelled() and worker is not None and not worker.cancelling():
                return None
            raise
        finally:
            del self._applying[key]

    def _watch_late_writes(self, item: WorkItem, user_id: str) -> None:
        """Look at the user again later if a request given up on may still land there.

        After a write of this process got no answer, the record is also held uncommitted until
        that look is done, so that a handover or a restart before it redelivers the record and
        the next owner reads the user again instead.
        """
        watch = self._late_writes
        if watch is None:
            return
        abandoned = watch.take_abandoned(user_id)
        if abandoned or item.redelivered:
            if abandoned:
                self._tracker.hold(item.tp, item.offset, item.epoch)
            self._unhold(watch.expect(user_id, item))
        else:
            self._unhold(watch.applied(user_id, item))

    def _unhold(self, held: WorkItem | None) -> None:
        """Let the commit pass a record whose user's second look is done."""
        if held is not None:
            self._tracker.release(held.tp, held.offset, held.epoch)

    def _look_again(self) -> None:
        """Start the second look at each user whose given-up requests can no longer land."""
        if self._late_writes is None:
            return
        for user_id, item in self._late_writes.take_due():
            if self._dispatcher.queued_for(user_id):
                continue  # queued work of the user reads it after the bound, and ends the look
            self._dispatcher.submit(user_id, replace(item, folded=(), settle=True))

    async def _settle(self, item: WorkItem) -> None:
        """Read the user again; write the newest event's state back if CXone holds another."""
        assert item.event is not None
        applied = await self._apply(item, item.event)
        if applied is None:
            return  # revoked: the record stays held, and the next owner reads the user again
        if self._late_writes is not None:
            self._unhold(self._late_writes.looked(item.event.user_id))
        result = applied.result
        if result.payload_sha256 is None or result.outcome is Outcome.DRY_RUN:
            return
        LATE_WRITES_REPAIRED.inc()
        log.warning(
            "stream.late_write_repaired",
            roles_found=list(result.roles_before or ()),
            roles_written=list(result.roles_after or ()),
            settle_after_seconds=self._late_writes.settle_after if self._late_writes else None,
        )

    def _publish_folded(self, folded: list[tuple[WorkItem, SyncResult]]) -> None:
        """Publish the results of the events folded into a newer one's write, now it is done."""
        if not folded:
            return

        async def publish() -> None:
            # One batch: sent together, each finished only once every one is acknowledged.
            await self._publisher.publish_results([result for _, result in folded])
            for older, result in folded:
                # Its own position and id in its log line, not the newer event's.
                with structlog.contextvars.bound_contextvars(
                    partition=older.tp.partition, offset=older.offset, event_id=result.event_id
                ):
                    self._account(older, result)

        # Published in the background: awaiting the acknowledgements here would hold the
        # newest event's slot, and a burst of a user's events makes many of these at once.
        task = asyncio.create_task(publish())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle_background(self, within: float) -> None:
        """Wait (bounded) for superseded audits still being published."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=within)

    async def _dead_letter(self, item: WorkItem, error: InvalidEvent) -> SyncResult:
        letter = DeadLetter(
            topic=item.tp.topic,
            partition=item.tp.partition,
            offset=item.offset,
            key=item.key,
            value=item.value,
            reason=error.reason,
            detail=error.detail,
        )
        await self._publisher.publish_dead_letter(letter)
        return SyncResult(
            event_id=error.event_id,
            user_id=user_id_of_key(item.key),
            outcome=Outcome.INVALID,
            reason=error.reason,
            detail=error.detail,
            source=item.source,
            mode=self._mode,
            latency_ms=round((self._clock() - item.received_at) * 1000.0, 3),
            processed_at=datetime.now(UTC),
        )

    async def _publish(self, item: WorkItem, result: SyncResult) -> None:
        await self._publisher.publish_result(result)
        self._account(item, result)

    def _account(self, item: WorkItem, result: SyncResult) -> None:
        """Count and log a result whose audit the broker acknowledged; its record is finished."""
        record_result(result, latency_seconds=self._clock() - item.received_at)
        self._tracker.finish(item.tp, item.offset, item.epoch)
        if self._on_result is not None:
            self._on_result(result)

    async def _commit(self, only: Iterable[TopicPartition] | None = None) -> None:
        """Commit the finished prefix of each partition (offset + 1 of the last finished)."""
        offsets = self._tracker.committable()
        if only is not None:
            keep = set(only)
            offsets = {tp: offset for tp, offset in offsets.items() if tp in keep}
        if not offsets:
            return
        try:
            await self._kafka.commit(offsets)
        except (CommitFailedError, KafkaError) as error:
            # The group moved on; the next owner re-reads from the last commit (at-least-once).
            log.warning("stream.commit_failed", error=type(error).__name__)
            return
        self._tracker.mark_committed(offsets)
        self.committed.update(offsets)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Stop work on revoked partitions at once, publish what is done (bounded), commit.

        CXone work still running is cancelled, not waited for: this member may be learning
        only now that it was expelled (paused past its session), its partitions already moved,
        and a write of ours landing after the next owner's would put an older state back. What
        finished is still published and committed; the rest goes to the next owner.
        """
        if not revoked:
            return
        # The revocation may wait up to its grace for audits being published: say when it starts.
        log.info("stream.revoking", partitions=len(revoked), grace=self._limits.revoke_grace)
        self._revoking |= revoked
        if self._late_writes is not None:
            # The next owner reads these users again: their records are redelivered to it.
            self._late_writes.forget(lambda item: item.tp in revoked)
        dropped = self._dispatcher.discard(lambda item: item.tp in revoked)
        for tp in revoked:
            if (catch_up := self._catching_up.pop(tp, None)) is not None:
                dropped.extend(catch_up.held)
        cancelled = 0
        for (tp, _, _), work in self._applying.items():
            if tp in revoked and not work.done():
                work.cancel()
                cancelled += 1
        # Left to wait for: audits of finished work being published.
        settled = await self._dispatcher.wait_for(
            lambda item: item.tp in revoked, self._limits.revoke_grace
        )
        await self._settle_background(self._limits.revoke_grace)
        await self._commit(only=revoked)
        self._drop_reports(revoked)
        for tp in revoked:
            self._tracker.forget(tp)
            # Lag then asks the broker, where the partition's next owner commits.
            self.committed.pop(tp, None)
        self._paused -= revoked
        log.info(
            "stream.revoked",
            partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in revoked),
            dropped=len(dropped),
            settled=settled,
            cancelled=cancelled,
        )

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Note a new assignment; each partition is read ahead from its committed offset."""
        if self._lease is not None:
            # The group just gave this member its partitions: it is a member until its session
            # runs out, as after a heartbeat.
            self._lease.renew(self._clock())
        self._revoking -= assigned
        for tp in assigned:
            self._catching_up[tp] = _CatchUp()
        log.info(
            "stream.assigned", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)
        )
        if self._on_assignment_change is not None:
            self._on_assignment_change(frozenset(self._kafka.assignment()))

    async def _shutdown(self) -> None:
        """Finish or bound in-flight work, then commit what is finished (bounded too).

        One budget: running work and the superseded audits still being published share
        `shutdown_grace`; the final commit gets `final_commit_timeout` on top, whatever is left.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.shutdown_grace
        abandoned = await self._dispatcher.close(self._limits.shutdown_grace)
        # Held read-ahead was never started: uncommitted, so the next owner reads it again.
        for catch_up in self._catching_up.values():
            abandoned.extend(catch_up.held)
        self._catching_up.clear()
        await self._settle_background(max(0.0, deadline - loop.time()))
        for task in set(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await asyncio.wait_for(self._commit(), self._limits.final_commit_timeout)
        except TimeoutError:
            # Uncommitted records are redelivered after restart: duplicates, never losses.
            log.warning("stream.final_commit_timed_out")
        self._drop_reports(self._tracker.partitions())
        log.info("stream.stopped", abandoned=len(abandoned), committed=len(self.committed))


async def _superseded_after_the_write(older: WorkItem, folded: WorkItem) -> None:
    """Nothing yet: `_handle` audits the folded items once their write is done."""


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: StreamConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.on_assigned(set(assigned))
