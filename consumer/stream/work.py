"""A fetched record on its way to a result: decoded once, folded with its user's queued records.

A work item is what the dispatcher runs: a record read from the input topic (its event, or why it
is not one), the older queued records of its user folded into its write, and, for a second look
at a user after a request given up on could still land, no record at all (`settle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from aiokafka import ConsumerRecord, TopicPartition

from consumer.errors import InvalidEvent
from consumer.events import (
    MAX_USER_ID,
    Mode,
    Outcome,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
    is_valid_user_id,
    parse_event,
)
from consumer.results import Queued


@dataclass(frozen=True)
class WorkItem:
    """One fetched record on its way to a result."""

    tp: TopicPartition
    offset: int
    epoch: int
    key: bytes | None
    value: bytes | None = field(repr=False)
    received_at: float
    event: RoleChangeEvent | None
    invalid: InvalidEvent | None
    # Older queued items of the same user folded into this one's write, oldest first. They are
    # audited, each with its own decision, only once that write is done: until then they stay
    # unfinished, so a handover that cancels the write hands all of them to the next owner.
    folded: tuple[WorkItem, ...] = ()
    # Read ahead after an assignment: a previous owner may have left a request behind.
    redelivered: bool = False
    # A second look at the user once requests given up on can no longer land: not a record,
    # never audited or committed.
    settle: bool = False

    @property
    def earlier(self) -> tuple[Queued, ...]:
        """The folded items' events, oldest first, with where and when each was read."""
        return tuple(
            Queued(item.event, item.source, item.received_at)
            for item in self.folded
            if item.event is not None
        )

    @property
    def source(self) -> SourcePosition:
        """Where the record was read."""
        return SourcePosition(topic=self.tp.topic, partition=self.tp.partition, offset=self.offset)

    @property
    def dispatch_key(self) -> str:
        """Per-user key; an unreadable record gets a key of its own (user ids never hold '/')."""
        if self.event is not None:
            return self.event.user_id
        return f"invalid/{self.tp.partition}/{self.offset}"


def internal_error_result(
    event: RoleChangeEvent,
    error: BaseException,
    *,
    source: SourcePosition,
    mode: Mode,
    attempts: int,
    latency_ms: float,
) -> SyncResult:
    """The result of an event whose processing kept raising what nothing maps: audited failed."""
    return SyncResult(
        event_id=event.id,
        user_id=event.user_id,
        outcome=Outcome.FAILED,
        reason="internal_error",
        # The type only: a message may quote a response body or a secret-bearing URL.
        detail=f"{type(error).__module__}.{type(error).__qualname__}",
        attempts=attempts,
        source=source,
        mode=mode,
        latency_ms=round(latency_ms, 3),
        processed_at=datetime.now(UTC),
    )


def read_record(
    record: ConsumerRecord[bytes, bytes], *, epoch: int, now: float, max_bytes: int
) -> WorkItem:
    """Decode a record into a work item; a bad one carries the reason instead of an event.

    A record above `max_bytes` (key and value) is refused before any of it is parsed; one whose
    key is missing or is not `data.user_id` is refused too (`key_mismatch`).
    """
    tp = TopicPartition(record.topic, record.partition)
    event: RoleChangeEvent | None = None
    invalid: InvalidEvent | None = None
    size = len(record.key or b"") + len(record.value or b"")
    try:
        if size > max_bytes:
            raise InvalidEvent(
                "too_large", f"record is {size} bytes, above KAFKA_MAX_RECORD_BYTES={max_bytes}"
            )
        event = parse_event(record.value)
        if record.key != event.user_id.encode():
            # The key is what keeps one user's events in one partition, in order: a record
            # without it, or keyed for another user, could overtake or be overtaken.
            missing = "has no key" if record.key is None else "has a key other than data.user_id"
            raise InvalidEvent(
                "key_mismatch", f"record {missing}; the key must be the user id", event_id=event.id
            )
    except InvalidEvent as error:
        event, invalid = None, error
    return WorkItem(tp, record.offset, epoch, record.key, record.value, now, event, invalid)


def fold_items(newest: WorkItem, older: list[WorkItem]) -> WorkItem:
    """The newest item carrying every older queued item of its user, to be written as one.

    A second look queued before newer records of its user is dropped: their write reads the
    user after the bound anyway.
    """
    records = [item for item in (*older, newest) if not item.settle]
    if not records:
        return newest
    last = records[-1]
    return replace(last, folded=(*records[:-1], *last.folded))


def user_id_of_key(key: bytes | None) -> str | None:
    """The key of an invalid record as the audit's user id, only when it is a valid one.

    Anything else stays out of the audit event: an unbounded or hostile key would make the
    audit record itself too large, and the DLQ copy keeps the key anyway.
    """
    if key is None or len(key) > MAX_USER_ID:
        return None
    text = key.decode("ascii", errors="replace")
    return text if is_valid_user_id(text) else None
