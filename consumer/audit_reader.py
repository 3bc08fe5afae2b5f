"""`audit`: read the audit topic, filter it, and render one line per result.

It reads outside any consumer group, so it commits nothing and never disturbs the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumer.events import AuditEvent, Outcome
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
    if data.reason:
        parts.append(data.reason)
    if data.escalation:
        parts.append(typer.style("ESCALATION", fg="red", bold=True) if colour else "ESCALATION")
    if data.roles_before is not None or data.roles_after is not None:
        parts.append(f"roles {_roles(data.roles_before)} -> {_roles(data.roles_after)}")
    if data.approval is not None:
        parts.append(f"approved {data.approval.ticket} by {data.approval.approved_by}")
    if data.detail and not data.reason:
        parts.append(data.detail)
    elif data.detail:
        parts.append(f"({data.detail})")
    source = data.source
    parts.append(
        f"event {data.event_id or '-'} at {source.topic}/{source.partition}@{source.offset}"
    )
    return "  ".join(parts)


def _roles(roles: tuple[str, ...] | None) -> str:
    if roles is None:
        return "?"
    return ",".join(roles) if roles else "(none)"


class AuditReadError(Exception):
    """The broker could not be read."""


async def read_audit(
    settings: KafkaSettings, selection: AuditFilter, *, follow: bool, stop: asyncio.Event
) -> AsyncIterator[AuditEvent]:
    """Yield the matching audit events in each partition's order; with `follow`, until `stop`."""
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
        while not stop.is_set():
            batch = await kafka.getmany(*partitions, timeout_ms=500, max_records=500)
            for records in batch.values():
                for record in records:
                    event = _parse(record.value)
                    if event is not None and selection.matches(event):
                        yield event
            # Some brokers under-report the end offset, so an empty fetch is what says "done".
            if not follow and not batch and await _caught_up(kafka, partitions, ends):
                return
    except (KafkaError, OSError) as error:
        reason = str(error) or type(error).__name__
        raise AuditReadError(
            f"could not read {settings.kafka_audit_topic} at "
            f"{settings.kafka_bootstrap_servers}: {reason}"
        ) from None
    finally:
        await kafka.stop()


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


async def _caught_up(
    kafka: AIOKafkaConsumer, partitions: list[TopicPartition], ends: dict[TopicPartition, int]
) -> bool:
    positions = [await kafka.position(tp) for tp in partitions]
    return all(
        position >= ends.get(tp, 0) for tp, position in zip(partitions, positions, strict=True)
    )
