"""Tests of building the event `send` publishes from its flags, and of validating it first."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from consumer.errors import ConfigurationError, InvalidEvent
from consumer.events import EventType, parse_event
from consumer.send import (
    EventRequest,
    encode,
    event_document,
    parse_approval,
    parse_roles,
    validate,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_flags_build_a_roles_change_the_consumer_accepts() -> None:
    """--user/--roles/--primary/--approval become a valid roles.changed event with that primary."""
    request = EventRequest(
        user_id="u-1001",
        roles=("agent_voice", "reporting_viewer"),
        primary="reporting_viewer",
        approval="CHG-1:secops",
        event_id="evt-x",
    )
    event = parse_event(encode(event_document(request, now=NOW)))
    assert event.type is EventType.ROLES_CHANGED
    assert event.id == "evt-x"
    assert event.subject == "u-1001"
    assert event.time == NOW
    assert [(r.role_id, r.primary) for r in event.desired_roles] == [
        ("agent_voice", False),
        ("reporting_viewer", True),
    ]
    assert event.data.approval is not None
    assert (event.data.approval.ticket, event.data.approval.approved_by) == ("CHG-1", "secops")


def test_first_role_is_primary_by_default() -> None:
    """Without --primary, the first role listed is the primary one."""
    document = event_document(EventRequest(user_id="u-1", roles=("a", "b")), now=NOW)
    assert document["data"]["roles"] == [
        {"role_id": "a", "primary": True},
        {"role_id": "b", "primary": False},
    ]


def test_deactivate_builds_a_deactivation_without_roles() -> None:
    """--deactivate builds idp.user.deactivated carrying no roles."""
    document = event_document(EventRequest(user_id="u-1", deactivate=True), now=NOW)
    assert document["type"] == "idp.user.deactivated"
    assert "roles" not in document["data"]
    assert parse_event(encode(document)).is_deactivation


def test_reactivate_builds_a_reactivation_with_roles() -> None:
    """--reactivate builds idp.user.reactivated carrying the roles."""
    document = event_document(EventRequest(user_id="u-1", roles=("a",), reactivate=True), now=NOW)
    assert document["type"] == "idp.user.reactivated"
    assert parse_event(encode(document)).type is EventType.REACTIVATED


def test_each_event_gets_a_new_id() -> None:
    """Two events built from the same flags carry different ids."""
    request = EventRequest(user_id="u-1", roles=("a",))
    assert event_document(request)["id"] != event_document(request)["id"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (EventRequest(user_id="u-1", deactivate=True, reactivate=True), "exclude each other"),
        (EventRequest(user_id="u-1", roles=("a",), deactivate=True), "--deactivate takes no"),
        (EventRequest(user_id="u-1", roles=("a",), primary="b"), "--primary b is not one of"),
        (EventRequest(user_id="u-1", roles=("a",), approval="CHG-1"), "not TICKET:APPROVER"),
    ],
)
def test_contradictory_flags_are_refused(request_: EventRequest, message: str) -> None:
    """Flags that contradict each other raise one line saying which."""
    with pytest.raises(ConfigurationError, match=message):
        event_document(request_)


def test_approval_is_ticket_and_approver() -> None:
    """`CHG-1:secops` splits at the first colon into ticket and approver."""
    assert parse_approval("CHG-1:sec:ops") == {"ticket": "CHG-1", "approved_by": "sec:ops"}


def test_roles_list_drops_empty_items() -> None:
    """A comma list with blanks keeps only the role ids; an empty string means no roles."""
    assert parse_roles(" a, ,b,") == ("a", "b")
    assert parse_roles("") == ()


@pytest.mark.parametrize(
    "value",
    [
        b'{"specversion": "1.0", "id": ',
        json.dumps(
            {
                "specversion": "1.0",
                "id": "e",
                "source": "s",
                "type": "idp.user.roles.changed",
                "data": {"user_id": "../admin", "roles": []},
            }
        ).encode(),
    ],
)
def test_validation_says_what_the_consumer_would(value: bytes) -> None:
    """An invalid event is refused with the consumer's own reason code and detail."""
    with pytest.raises(InvalidEvent) as consumer_view:
        parse_event(value)
    with pytest.raises(ConfigurationError) as refused:
        validate(value)
    assert str(refused.value) == (
        f"invalid event ({consumer_view.value.reason}): {consumer_view.value.detail}"
    )
