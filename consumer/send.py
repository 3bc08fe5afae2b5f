"""`send`: publish one event of the input contract, validated exactly as the consumer reads it."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.errors import ConfigurationError, InvalidEvent
from consumer.events import EventType, RoleChangeEvent, parse_event
from consumer.settings import KafkaSettings
from consumer.stream.kafka import producer_for_broker

if TYPE_CHECKING:
    from consumer.settings import Settings

DEFAULT_SOURCE = "cxone-role-sync/send"


@dataclass(frozen=True)
class EventRequest:
    """What the flags of `send` ask for, before it becomes an event."""

    user_id: str
    roles: tuple[str, ...] = ()
    primary: str | None = None
    deactivate: bool = False
    reactivate: bool = False
    approval: str | None = None
    user_name: str | None = None
    source: str = DEFAULT_SOURCE
    event_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored the event."""

    event: RoleChangeEvent
    topic: str
    partition: int
    offset: int


def event_document(request: EventRequest, *, now: datetime | None = None) -> dict[str, Any]:
    """The CloudEvents document the flags describe; raise ConfigurationError on a contradiction."""
    if request.deactivate and request.reactivate:
        raise ConfigurationError("--deactivate and --reactivate exclude each other")
    if request.deactivate and (request.roles or request.primary or request.approval):
        raise ConfigurationError("--deactivate takes no --roles, --primary or --approval")
    if request.primary is not None and request.primary not in request.roles:
        raise ConfigurationError(f"--primary {request.primary} is not one of --roles")
    data: dict[str, Any] = {"user_id": request.user_id}
    if request.user_name is not None:
        data["user_name"] = request.user_name
    if not request.deactivate:
        # CXone wants one primary role; without --primary the first role listed is it.
        primary = request.primary or (request.roles[0] if request.roles else None)
        data["roles"] = [
            {"role_id": role_id, "primary": role_id == primary} for role_id in request.roles
        ]
    if request.approval is not None:
        data["approval"] = parse_approval(request.approval)
    if request.deactivate:
        kind = EventType.DEACTIVATED
    elif request.reactivate:
        kind = EventType.REACTIVATED
    else:
        kind = EventType.ROLES_CHANGED
    return {
        "specversion": "1.0",
        "id": request.event_id or f"evt-{uuid.uuid4().hex[:12]}",
        "source": request.source,
        "type": kind.value,
        "time": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "subject": request.user_id,
        "data": data,
    }


def parse_approval(text: str) -> dict[str, str]:
    """`TICKET:APPROVER` as the event's approval object."""
    ticket, sep, approved_by = text.partition(":")
    if not sep or not ticket.strip() or not approved_by.strip():
        raise ConfigurationError(f"--approval {text!r} is not TICKET:APPROVER, e.g. CHG-1:secops")
    return {"ticket": ticket.strip(), "approved_by": approved_by.strip()}


def parse_roles(text: str | None) -> tuple[str, ...]:
    """A comma-separated role list; empty items are dropped, so `--roles ""` means no roles."""
    if text is None:
        return ()
    return tuple(role for role in (part.strip() for part in text.split(",")) if role)


def encode(document: dict[str, Any]) -> bytes:
    """The record value of a document built from flags."""
    return json.dumps(document, separators=(",", ":")).encode()


def validate(value: bytes) -> RoleChangeEvent:
    """The event the consumer would read from these bytes, or ConfigurationError saying why not."""
    try:
        return parse_event(value)
    except InvalidEvent as error:
        # The same reason code and detail the consumer would audit for this record.
        raise ConfigurationError(f"invalid event ({error.reason}): {error.detail}") from None


class DeliveryError(Exception):
    """The broker did not acknowledge the event."""


async def send_event(settings: KafkaSettings, value: bytes, *, within: float = 30.0) -> Delivery:
    """Validate the bytes and publish them, keyed by user id, once the broker acknowledged them."""
    event = validate(value)
    # producer_for_broker reads only the Kafka fields, which KafkaSettings has.
    kafka_settings = cast("Settings", settings)
    producer: AIOKafkaProducer | None = None
    try:
        async with asyncio.timeout(within):
            producer, _ = await producer_for_broker(
                kafka_settings, client_id="cxone-role-sync-send"
            )
            await producer.start()
            metadata = await producer.send_and_wait(
                settings.kafka_input_topic, value=value, key=event.user_id.encode()
            )
    except (KafkaError, OSError, TimeoutError) as error:
        reason = str(error) or type(error).__name__
        raise DeliveryError(
            f"could not send to {settings.kafka_input_topic} at "
            f"{settings.kafka_bootstrap_servers}: {reason}"
        ) from None
    finally:
        if producer is not None:
            await producer.stop()
    return Delivery(event, metadata.topic, metadata.partition, metadata.offset)
