"""`audit`: read the audit topic, filter it, and render one line per result.

It reads outside any consumer group, so it commits nothing and never disturbs the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

import typer
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumer.audit_order import PartitionMerge, time_order
from consumer.events import ApprovalReference, AuditEvent, EventType, Mode, Outcome, SyncResult
from consumer.settings import KafkaSettings
from consumer.stream.kafka import connection_options, partitions_of

if TYPE_CHECKING:
    from consumer.settings import Settings

_COLOURS = {
    Outcome.SYNCED: "green",
    Outcome.UNCHANGED: "bright_black",
    Outcome.REJECTED: "red",
    Outcome.FAILED: "red",
    Outcome.INVALID: "yellow",
    Outcome.SUPERSEDED: "bright_black",
    Outcome.DRY_RUN: "cyan",
}


@dataclass(frozen=True)
class AuditFilter:
    """Which audit results to show."""

    user_id: str | None = None
    since: datetime | None = None
    outcome: Outcome | None = None

    def matches(self, event: AuditEvent) -> bool:
        """Whether the result passes every filter given."""
        data = event.data
        if self.user_id is not None and data.user_id != self.user_id:
            return False
        if self.outcome is not None and data.outcome is not self.outcome:
            return False
        return self.since is None or data.processed_at >= self.since


def render_line(event: AuditEvent, *, colour: bool = False) -> str:
    """One readable line: when, who, what happened, why, the roles, and who approved it."""
    data = event.data
    outcome = f"{data.outcome.value:<10}"
    if colour:
        outcome = typer.style(outcome, fg=_COLOURS[data.outcome], bold=data.escalation)
    parts = [
        data.processed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{data.user_id or '-':<12}",
        outcome,
    ]
    if data.mode is Mode.REPLAY:
        parts.append("[replay]")
    if data.reason:
        parts.append(data.reason)
    if data.escalation:
        parts.append(typer.style("ESCALATION", fg="red", bold=True) if colour else "ESCALATION")
    if (lifecycle := _lifecycle(data)) is not None:
        parts.append(lifecycle)
    if data.roles_before is not None or data.roles_after is not None:
        after = "(not written)" if data.roles_after is None else _roles(data.roles_after)
        parts.append(f"roles {_roles(data.roles_before)} -> {after}")
    if (approval := data.approval) is not None:
        parts.append(_approval(approval))
    if data.detail and not data.reason:
        parts.append(data.detail)
    elif data.detail:
        parts.append(f"({data.detail})")
    source = data.source
    parts.append(
        f"event {data.event_id or '-'} at {source.topic}/{source.partition}@{source.offset}"
    )
    return "  ".join(parts)


# The results whose `active_after` is what this event's own decision left in CXone.
_OWN_STATE = frozenset({Outcome.SYNCED, Outcome.UNCHANGED, Outcome.REJECTED, Outcome.DRY_RUN})
_LIFECYCLE_EVENTS = {
    EventType.DEACTIVATED: "deactivation",
    EventType.REACTIVATED: "reactivation",
}


def _lifecycle(data: SyncResult) -> str | None:
    """Whether the result deactivated or reactivated the user, in words; None for neither."""
    before, after = data.active_before, data.active_after
    if data.outcome not in _OWN_STATE or after is None:
        return _LIFECYCLE_EVENTS.get(data.event_type) if data.event_type else None
    if before and not after:
        return "deactivated"
    if after and before is False:
        return "reactivated"
    if data.event_type is EventType.DEACTIVATED:
        return "deactivation (already inactive)"
    if data.event_type is EventType.REACTIVATED:
        return "reactivation (already active)" if after else "not reactivated: stays inactive"
    return None


def _approval(approval: ApprovalReference) -> str:
    """Who approved it, and whether the policy took the approval."""
    named = f"{approval.ticket} by {approval.approved_by}"
    if approval.accepted:
        return f"approved {named}"
    if approval.accepted is None:
        return f"approval {named} (not judged)"
    return f"approval {named} NOT ACCEPTED"


def _roles(roles: tuple[str, ...] | None) -> str:
    if roles is None:
        return "(unknown)"
    return ",".join(roles) if roles else "(none)"


class AuditReadError(Exception):
    """The broker could not be read."""


async def read_audit(
    settings: KafkaSettings, selection: AuditFilter, *, follow: bool, stop: asyncio.Event
) -> AsyncIterator[AuditEvent]:
    """Yield the matching audit events in time order across partitions; `follow`: until `stop`.

    What is on the topic when reading starts comes merged in `processed_at` order (each
    partition read in its own order). With `follow`, the results that arrive afterwards come as
    they are fetched, each fetch in `processed_at` order: one that reaches the broker late can
    come after a later one of another partition.
    """
    kafka = AIOKafkaConsumer(
        # connection_options reads only the Kafka fields, which KafkaSettings has.
        **connection_options(cast("Settings", settings)),
        group_id=None,
        enable_auto_commit=False,
    )
    try:
        await kafka.start()
        partitions = await _start_positions(kafka, settings.kafka_audit_topic, selection.since)
        ends = await kafka.end_offsets(partitions) if partitions else {}
        merge: PartitionMerge[TopicPartition] = PartitionMerge(partitions)
        while not stop.is_set() and not merge.done:
            starving = merge.starving()
            batch = await kafka.getmany(*starving, timeout_ms=500, max_records=500)
            for tp in starving:
                records = batch.get(tp, [])
                merge.add(tp, _matching(records, selection))
                # Some brokers under-report the end offset: an empty fetch is what says "done".
                if not records and await kafka.position(tp) >= ends.get(tp, 0):
                    merge.finish(tp)
            for event in merge.ready():
                yield event
        while follow and not stop.is_set():
            batch = await kafka.getmany(*partitions, timeout_ms=500, max_records=500)
            fetched = [
                event for records in batch.values() for event in _matching(records, selection)
            ]
            for event in sorted(fetched, key=time_order):
                yield event
    except (KafkaError, OSError) as error:
        reason = str(error) or type(error).__name__
        raise AuditReadError(
            f"could not read {settings.kafka_audit_topic} at "
            f"{settings.kafka_bootstrap_servers}: {reason}"
        ) from None
    finally:
        await kafka.stop()


def _matching(
    records: Iterable[ConsumerRecord[bytes, bytes]], selection: AuditFilter
) -> Iterator[AuditEvent]:
    for record in records:
        event = _parse(record.value)
        if event is not None and selection.matches(event):
            yield event


def _parse(value: bytes | None) -> AuditEvent | None:
    if value is None:
        return None
    try:
        return AuditEvent.model_validate_json(value)
    except ValidationError:
        return None  # not an audit event of this contract: nothing to show


async def _start_positions(
    kafka: AIOKafkaConsumer, topic: str, since: datetime | None
) -> list[TopicPartition]:
    chosen = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
    kafka.assign(chosen)
    if since is None:
        await kafka.seek_to_beginning(*chosen)
        return chosen
    # The record timestamp is when the result was published, never before it was processed;
    # AuditFilter still checks processed_at, since a broker may answer a time lookup loosely.
    found = await kafka.offsets_for_times(dict.fromkeys(chosen, int(since.timestamp() * 1000)))
    for tp in chosen:
        at = found.get(tp)
        if at is None:
            await kafka.seek_to_end(tp)
        else:
            kafka.seek(tp, at.offset)
    return chosen
