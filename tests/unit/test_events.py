"""Tests of the input and audit event models: what is valid, and how bad input is classified."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from consumer.errors import InvalidEvent
from consumer.events import (
    AuditEvent,
    EventType,
    Mode,
    Outcome,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
    audit_event_of,
    is_valid_user_id,
    parse_event,
)

DESIGN_EXAMPLE = """
{"specversion": "1.0", "id": "evt-7f3a", "source": "okta/acme-prod",
 "type": "idp.user.roles.changed", "time": "2026-11-28T15:00:00Z", "subject": "u-1001",
 "data": {"user_id": "u-1001", "user_name": "jdoe@example.com",
          "roles": [{"role_id": "agent_basic", "primary": true},
                    {"role_id": "admin_support", "display_name": "Support Admin",
                     "inherits_from": ["agent_basic"]}],
          "approval": {"ticket": "CHG-1234", "approved_by": "secops"}}}
"""


def event_document(**data: Any) -> dict[str, Any]:
    """A valid role-change event as a dict; `data` fields override the defaults."""
    return {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "subject": data.get("user_id", "u-1"),
        "data": {"user_id": "u-1", "roles": [{"role_id": "agent_basic", "primary": True}], **data},
    }


def encoded(document: dict[str, Any]) -> bytes:
    """The JSON bytes of a document, as a producer would send them."""
    return json.dumps(document).encode()


def schema_violation(document: dict[str, Any]) -> str:
    """Parse a document that must be refused as a schema violation; return the detail."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(encoded(document))
    assert caught.value.reason == "schema_violation"
    return caught.value.detail


def test_design_example_parses() -> None:
    """The example event of DESIGN.md is a valid event with every field read."""
    event = parse_event(DESIGN_EXAMPLE.encode())
    assert event.id == "evt-7f3a"
    assert event.source == "okta/acme-prod"
    assert event.type is EventType.ROLES_CHANGED
    assert event.time == datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    assert event.user_id == "u-1001"
    assert event.data.user_name == "jdoe@example.com"
    assert event.is_deactivation is False
    assert [role.role_id for role in event.desired_roles] == ["agent_basic", "admin_support"]
    assert [role.primary for role in event.desired_roles] == [True, False]
    assert event.desired_roles[1].display_name == "Support Admin"
    assert event.desired_roles[1].inherits_from == ("agent_basic",)
    assert event.data.approval is not None
    assert (event.data.approval.ticket, event.data.approval.approved_by) == ("CHG-1234", "secops")


@pytest.mark.parametrize(
    "user_id",
    ["u-1", "A", "jdoe@example.com", "urn:okta:123", "a.b_c-d", "x" * 128, "0", "_x", "a.b.c"],
)
def test_valid_user_ids(user_id: str) -> None:
    """User ids of 1-128 allowed characters, not starting with a dot, are accepted."""
    assert is_valid_user_id(user_id) is True
    assert parse_event(encoded(event_document(user_id=user_id))).user_id == user_id


@pytest.mark.parametrize(
    "user_id",
    [
        "",
        ".hidden",
        ".",
        "..",
        "a..b",
        "../admin",
        "a/b",
        "/etc/passwd",
        "a b",
        " u-1",
        "u-1\n",
        "a%2Fb",
        "a?b",
        "a#b",
        "a\\b",
        "ü-1",
        "x" * 129,
    ],
)
def test_invalid_user_ids(user_id: str) -> None:
    """A user id with a slash, '..', a space, a leading dot or over 128 characters is refused."""
    assert is_valid_user_id(user_id) is False
    document = event_document(user_id=user_id)
    assert schema_violation(document).startswith("data.user_id: ")


def test_subject_must_equal_user_id() -> None:
    """A subject naming another user than data.user_id is refused."""
    document = event_document()
    document["subject"] = "u-2"
    assert "subject must equal data.user_id" in schema_violation(document)


def test_subject_may_be_absent() -> None:
    """Without a subject the event is about data.user_id."""
    document = event_document()
    del document["subject"]
    event = parse_event(encoded(document))
    assert event.subject is None
    assert event.user_id == "u-1"


def test_duplicate_role_ids_are_refused() -> None:
    """The same role_id twice in one event is refused, naming it."""
    document = event_document(
        roles=[{"role_id": "agent_basic", "primary": True}, {"role_id": "agent_basic"}]
    )
    assert "duplicate role_id: agent_basic" in schema_violation(document)


def test_two_primary_roles_are_refused() -> None:
    """CXone has one primary role; two roles marked primary are refused."""
    document = event_document(
        roles=[
            {"role_id": "agent_basic", "primary": True},
            {"role_id": "agent_voice", "primary": True},
        ]
    )
    assert "more than one role is marked primary" in schema_violation(document)


def test_unknown_top_level_field_is_refused() -> None:
    """A top-level field CloudEvents and the contract do not define is refused."""
    document = event_document()
    document["priority"] = "high"
    assert schema_violation(document).startswith("priority: ")


@pytest.mark.parametrize("where", ["data", "role", "approval"])
def test_unknown_nested_field_is_refused(where: str) -> None:
    """Unknown fields inside data, a role or the approval are refused as well."""
    document = event_document(approval={"ticket": "CHG-1", "approved_by": "secops"})
    target = {
        "data": document["data"],
        "role": document["data"]["roles"][0],
        "approval": document["data"]["approval"],
    }[where]
    target["extra"] = 1
    assert "extra" in schema_violation(document)


def test_deactivation_without_roles_is_valid() -> None:
    """A deactivation needs no roles, and asks for none."""
    document = event_document()
    document["type"] = "idp.user.deactivated"
    del document["data"]["roles"]
    event = parse_event(encoded(document))
    assert event.type is EventType.DEACTIVATED
    assert event.is_deactivation is True
    assert event.data.roles is None
    assert event.desired_roles == ()


def test_deactivation_ignores_listed_roles() -> None:
    """A deactivation removes every role, whatever roles it lists."""
    document = event_document()
    document["type"] = "idp.user.deactivated"
    event = parse_event(encoded(document))
    assert event.data.roles is not None
    assert event.desired_roles == ()


def test_roles_changed_without_roles_is_refused() -> None:
    """idp.user.roles.changed must carry the complete role set."""
    document = event_document()
    del document["data"]["roles"]
    assert "data.roles is required" in schema_violation(document)


def test_roles_changed_with_empty_roles_removes_all() -> None:
    """An empty role list is valid and asks for no roles at all."""
    event = parse_event(encoded(event_document(roles=[])))
    assert event.desired_roles == ()
    assert event.is_deactivation is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("specversion", "0.3"),
        ("type", "idp.user.created"),
        ("id", ""),
        ("source", ""),
        ("time", "yesterday"),
        ("datacontenttype", "text/plain"),
    ],
)
def test_envelope_fields_are_checked(field: str, value: str) -> None:
    """CloudEvents envelope fields with a wrong value are refused, naming the field."""
    document = event_document()
    document[field] = value
    assert schema_violation(document).startswith(f"{field}: ")


@pytest.mark.parametrize("role_id", ["", "a b", "a/b", "x" * 129])
def test_bad_role_ids_are_refused(role_id: str) -> None:
    """A role id outside the allowed characters or length is refused."""
    document = event_document(roles=[{"role_id": role_id}])
    assert "role_id" in schema_violation(document)


def test_events_are_immutable() -> None:
    """A parsed event cannot be changed after the fact."""
    event = parse_event(encoded(event_document()))
    with pytest.raises(ValidationError):
        event.id = "evt-2"  # type: ignore[misc]


@pytest.mark.parametrize(
    "value",
    [b"", b"{", b'{"specversion": "1.0",}', b"\xff\xfe", b"not json at all"],
)
def test_unparseable_bytes_are_invalid_json(value: bytes) -> None:
    """Bytes that are not JSON are classified invalid_json."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(value)
    assert caught.value.reason == "invalid_json"
    assert caught.value.detail.startswith("event: Invalid JSON")


@pytest.mark.parametrize("value", [b"[]", b"null", b'"text"', b"42", b'{"specversion": "1.0"}'])
def test_json_of_the_wrong_shape_is_a_schema_violation(value: bytes) -> None:
    """Well-formed JSON that is not an event is classified schema_violation."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(value)
    assert caught.value.reason == "schema_violation"


def test_tombstone_is_invalid() -> None:
    """A record without a value (a tombstone) is invalid, saying so."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(None)
    assert caught.value.reason == "invalid_json"
    assert caught.value.detail == "record has no value (tombstone)"


def test_violation_detail_counts_further_errors() -> None:
    """The detail names the first problem and how many more there are."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(b'{"specversion": "1.0"}')
    assert caught.value.detail == "id: Field required (+3 more)"


def sample_result(**fields: Any) -> SyncResult:
    """A complete synced result; `fields` override it."""
    values: dict[str, Any] = {
        "event_id": "evt-7f3a",
        "user_id": "u-1001",
        "outcome": Outcome.SYNCED,
        "escalation": False,
        "roles_before": ("agent_basic",),
        "roles_after": ("agent_voice", "reporting_viewer"),
        "attempts": 2,
        "http_status": 200,
        "latency_ms": 12.5,
        "payload_sha256": "ab" * 32,
        "source": SourcePosition(topic="idp.role-changes", partition=3, offset=41),
        "mode": Mode.LIVE,
        "processed_at": datetime(2026, 11, 28, 15, 0, 1, tzinfo=UTC),
        **fields,
    }
    return SyncResult(**values)


def test_audit_event_round_trips_through_json() -> None:
    """An audit event read back from its JSON equals the one written."""
    event = audit_event_of(sample_result())
    restored = AuditEvent.model_validate_json(event.model_dump_json())
    assert restored == event
    assert restored.data.roles_after == ("agent_voice", "reporting_viewer")
    assert restored.data.source == SourcePosition(topic="idp.role-changes", partition=3, offset=41)


def test_audit_event_envelope() -> None:
    """The audit envelope is a CloudEvent of type cxone.role-sync.result about the user."""
    result = sample_result()
    document = json.loads(audit_event_of(result).model_dump_json())
    assert document["specversion"] == "1.0"
    assert document["type"] == "cxone.role-sync.result"
    assert document["source"] == "cxone-role-sync"
    assert document["subject"] == "u-1001"
    assert document["datacontenttype"] == "application/json"
    assert document["id"] == "idp.role-changes/3/41/live"
    assert document["data"]["outcome"] == "synced"
    assert document["data"]["source"] == {"topic": "idp.role-changes", "partition": 3, "offset": 41}
    assert set(document["data"]) == {
        "event_id",
        "user_id",
        "outcome",
        "reason",
        "detail",
        "escalation",
        "roles_before",
        "roles_after",
        "attempts",
        "http_status",
        "latency_ms",
        "payload_sha256",
        "source",
        "mode",
        "processed_at",
        "approval",
    }


def test_audit_id_is_stable_across_redeliveries() -> None:
    """Two results of the same record in the same mode get the same audit id."""
    first = audit_event_of(sample_result())
    again = audit_event_of(
        sample_result(processed_at=datetime(2026, 11, 28, 16, 0, tzinfo=UTC), attempts=5)
    )
    replayed = audit_event_of(sample_result(mode=Mode.REPLAY))
    assert first.id == again.id
    assert replayed.id == "idp.role-changes/3/41/replay"


def test_invalid_result_needs_no_event_id() -> None:
    """The result of an unreadable record has no event id and round-trips as such."""
    result = sample_result(
        event_id=None,
        user_id=None,
        outcome=Outcome.INVALID,
        reason="invalid_json",
        detail="event: Invalid JSON",
        roles_before=None,
        roles_after=None,
        attempts=0,
        http_status=None,
        payload_sha256=None,
    )
    restored = AuditEvent.model_validate_json(audit_event_of(result).model_dump_json())
    assert restored.data.event_id is None
    assert restored.data.outcome is Outcome.INVALID
    assert restored.subject is None


def test_payload_fingerprint_must_be_sha256_hex() -> None:
    """payload_sha256 accepts only 64 lower-case hex digits."""
    with pytest.raises(ValidationError):
        sample_result(payload_sha256="not-a-digest")


def test_outcomes_are_the_documented_ones() -> None:
    """The audit outcomes are exactly the seven of DESIGN.md."""
    assert {outcome.value for outcome in Outcome} == {
        "synced",
        "unchanged",
        "rejected",
        "failed",
        "invalid",
        "superseded",
        "dry_run",
    }


def test_model_and_parse_event_agree() -> None:
    """parse_event gives the same event as validating the model directly."""
    document = event_document()
    assert parse_event(encoded(document)) == RoleChangeEvent.model_validate(copy.deepcopy(document))
