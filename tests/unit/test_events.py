"""Tests of the input and audit event models: what is valid, and how bad input is classified."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from consumer.errors import InvalidEvent
from consumer.events import (
    MAX_JSON_ARRAYS,
    MAX_JSON_BRACES,
    MAX_JSON_COLONS,
    MAX_JSON_COMMAS,
    MAX_JSON_NUMBERS,
    MAX_JSON_OBJECTS,
    MAX_PARENTS,
    MAX_ROLES,
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
    del document["subject"]  # bounded too: the error would name it first
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
        "event_type",
        "user_id",
        "outcome",
        "reason",
        "detail",
        "escalation",
        "roles_before",
        "roles_after",
        "active_before",
        "active_after",
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


def invalid(value: bytes) -> InvalidEvent:
    """Parse bytes that must be refused; return the error."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(value)
    return caught.value


def test_256_roles_are_accepted_and_257_refused() -> None:
    """An event may carry 256 roles; one more is a schema violation naming the limit."""
    roles = [{"role_id": f"r-{index}"} for index in range(MAX_ROLES)]
    assert len(parse_event(encoded(event_document(roles=roles))).desired_roles) == MAX_ROLES
    error = invalid(encoded(event_document(roles=[*roles, {"role_id": "one-more"}])))
    assert error.reason == "schema_violation"
    assert error.detail == f"data.roles: at most {MAX_ROLES} roles per event, not 257"
    assert error.event_id == "evt-1"


def test_forty_thousand_roles_are_refused_before_any_is_parsed() -> None:
    """40,000 role objects hold more commas than the limit: refused before parsing."""
    roles = [{"role_id": f"r-{index}"} for index in range(40_000)]
    error = invalid(encoded(event_document(roles=roles)))
    assert error.reason == "schema_violation"
    assert error.detail == f"event: more than {MAX_JSON_COMMAS} commas in the record"


def test_many_members_are_refused_by_their_colons() -> None:
    """Five thousand members hold more colons than the limit: refused before parsing."""
    value = b"{" + b" ".join(b'"m%d":1' % index for index in range(5_000)) + b"}"
    error = invalid(value)
    assert error.reason == "schema_violation"
    assert error.detail == f"event: more than {MAX_JSON_COLONS} colons in the record"


def test_many_empty_objects_stop_the_parser_at_its_object_limit() -> None:
    """Objects beyond what an event can hold stop the parser where it counts them."""
    error = invalid(b"[" + b"{}," * 1000 + b"{}]")
    assert error.reason == "schema_violation"
    assert error.detail == f"event: more than {MAX_JSON_OBJECTS} JSON objects"


def test_thousands_of_role_strings_are_refused_by_the_role_count() -> None:
    """5,000 roles that are not objects are refused by the role count, not one by one."""
    error = invalid(encoded(event_document(roles=["agent_basic"] * 5_000)))
    assert error.reason == "schema_violation"
    assert error.detail == f"data.roles: at most {MAX_ROLES} roles per event, not 5000"


def test_too_many_parents_are_refused() -> None:
    """A role may declare at most MAX_PARENTS parents."""
    parents = [f"p-{index}" for index in range(MAX_PARENTS + 1)]
    error = invalid(encoded(event_document(roles=[{"role_id": "r", "inherits_from": parents}])))
    assert error.reason == "schema_violation"
    assert error.detail == f"data.roles.0.inherits_from: at most {MAX_PARENTS} roles"


@pytest.mark.parametrize(
    ("field", "limit"),
    [("id", 256), ("source", 1024), ("subject", 128)],
)
def test_event_strings_are_bounded(field: str, limit: int) -> None:
    """Each string of the envelope is refused one character above its limit."""
    document = event_document()
    document[field] = "x" * (limit + 1)
    assert schema_violation(document).startswith(f"{field}: String should have at most {limit}")


@pytest.mark.parametrize(
    ("role", "where", "limit"),
    [
        ({"role_id": "x" * 129}, "data.roles.0.role_id", 128),
        ({"role_id": "r", "display_name": "x" * 257}, "data.roles.0.display_name", 256),
    ],
)
def test_role_strings_are_bounded(role: dict[str, Any], where: str, limit: int) -> None:
    """Role ids and display names are refused above their limits."""
    assert schema_violation(event_document(roles=[role])).startswith(f"{where}: ")


def test_user_name_is_bounded() -> None:
    """A user name above 256 characters is refused."""
    detail = schema_violation(event_document(user_name="x" * 257))
    assert detail.startswith("data.user_name: String should have at most 256")


def test_a_megabyte_string_is_refused_by_its_length() -> None:
    """A 1 MiB event id is a schema violation, and the record's id is not echoed."""
    error = invalid(encoded({**event_document(), "id": "x" * (1 << 20)}))
    assert error.reason == "schema_violation"
    assert error.detail.startswith("id: String should have at most 256 characters")
    assert error.event_id is None


BRACKETS = f"event: more than {MAX_JSON_ARRAYS} '[' brackets in the record"


@pytest.mark.parametrize(
    ("depth", "reason", "detail"),
    [
        (2_000, "invalid_json", "event: JSON nested too deeply"),
        (
            100_000,
            "schema_violation",
            f"event: more than {MAX_JSON_ARRAYS} '[' brackets in the record",
        ),
    ],
)
def test_deep_nesting_is_refused_without_recursing(depth: int, reason: str, detail: str) -> None:
    """Arrays nested 2,000 deep hit the parser's depth limit; 100,000 deep, the bracket limit."""
    nested = b"[" * depth + b"]" * depth
    value = encoded(event_document()).replace(b'"roles": [', b'"roles": [' + nested + b",", 1)
    error = invalid(value)
    assert (error.reason, error.detail) == (reason, detail)


def test_deeply_nested_objects_are_invalid_json() -> None:
    """Objects nested 3,000 deep hit the parser's depth limit: invalid_json."""
    depth = 3_000
    value = b'{"a":' * depth + b"1" + b"}" * depth
    error = invalid(value)
    assert (error.reason, error.detail) == ("invalid_json", "event: JSON nested too deeply")


def test_duplicate_keys_are_invalid_json() -> None:
    """An object naming a member twice is invalid_json, whichever value would have won."""
    value = encoded(event_document()).replace(
        b'"specversion": "1.0"', b'"specversion": "1.0", "id": "evt-0"', 1
    )
    assert value.count(b'"id"') == 2
    error = invalid(value)
    assert (error.reason, error.detail) == ("invalid_json", "event: duplicate JSON object key 'id'")


def test_duplicate_keys_inside_a_role_are_invalid_json() -> None:
    """A duplicate inside a nested object is found too."""
    value = encoded(event_document()).replace(
        b'"primary": true', b'"primary": true, "primary": false', 1
    )
    error = invalid(value)
    assert (error.reason, error.detail) == (
        "invalid_json",
        "event: duplicate JSON object key 'primary'",
    )


def test_many_numbers_are_refused_at_the_limit() -> None:
    """Numbers beyond what an event can hold stop the parser where it counts them."""
    error = invalid(b"[" + b"1.5," * 10_000 + b"1]")
    assert (error.reason, error.detail) == (
        "schema_violation",
        f"event: more than {MAX_JSON_NUMBERS} JSON numbers",
    )


def test_many_commas_are_refused_before_parsing() -> None:
    """More commas than the limit refuse the record before it is parsed."""
    value = b"[" + b"true," * (MAX_JSON_COMMAS + 1) + b"true]"
    error = invalid(value)
    assert (error.reason, error.detail) == (
        "schema_violation",
        f"event: more than {MAX_JSON_COMMAS} commas in the record",
    )


def test_bytes_that_are_not_utf8_are_invalid_json() -> None:
    """A record that is not UTF-8 is invalid_json, naming the first bad byte."""
    error = invalid(b'{"id": "' + bytes([0xFF]) + b'"}')
    assert (error.reason, error.detail) == (
        "invalid_json",
        "event: Invalid JSON: not UTF-8 at byte 8",
    )


def test_random_bytes_are_invalid_json() -> None:
    """A megabyte of random bytes is invalid_json."""
    error = invalid(random.Random(7).randbytes(1 << 20))
    assert error.reason == "invalid_json"


def test_schema_violation_carries_the_event_id() -> None:
    """A record whose JSON parsed and named an id is refused with that id."""
    document = event_document()
    document["data"]["user_id"] = "a/b"
    error = invalid(encoded(document))
    assert (error.reason, error.event_id) == ("schema_violation", "evt-1")


def test_non_string_id_is_not_carried() -> None:
    """An id that no event could carry is left out of the error."""
    document = {**event_document(), "id": ["evt-1"]}
    assert invalid(encoded(document)).event_id is None


def test_utf16_json_is_invalid_json() -> None:
    """JSON in another encoding than UTF-8 is invalid_json."""
    error = invalid(json.dumps(event_document()).encode("utf-16"))
    assert error.reason == "invalid_json"


def test_an_event_at_every_limit_is_valid() -> None:
    """256 roles with the longest names and 32 parents each, and the longest strings, pass."""
    roles = [
        {
            "role_id": f"r{index:03d}" + "x" * 124,
            "display_name": "D" * 256,
            "inherits_from": [f"p{parent:02d}" for parent in range(MAX_PARENTS)],
        }
        for index in range(MAX_ROLES)
    ]
    document = event_document(roles=roles, user_name="n" * 256)
    document.update(id="i" * 256, source="s" * 1024, subject="u-1")
    event = parse_event(encoded(document))
    assert len(event.desired_roles) == MAX_ROLES
    assert event.desired_roles[0].inherits_from is not None
    assert len(event.desired_roles[0].inherits_from) == MAX_PARENTS


def test_a_lone_surrogate_escape_is_refused() -> None:
    """An id spelling a lone UTF-16 surrogate is no string an event can carry."""
    value = encoded(event_document()).replace(b'"evt-1"', b'"evt-\\ud800"', 1)
    error = invalid(value)
    assert error.reason == "schema_violation"
    assert error.detail.startswith("id: Input should be a valid string")


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    """A properly escaped pair is a valid character of a valid event."""
    value = encoded(event_document()).replace(b'"evt-1"', b'"evt-\\ud83d\\ude00"', 1)
    assert parse_event(value).id == "evt-\U0001f600"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_invalid_json(constant: bytes) -> None:
    """Python's parser would take NaN and Infinity; JSON has no such values."""
    value = encoded(event_document()).replace(
        b'"specversion": "1.0"', b'"specversion": ' + constant
    )
    assert invalid(value).reason == "invalid_json"


def test_many_braces_are_refused_before_parsing() -> None:
    """More '{' than the limit refuse the record before it is parsed."""
    error = invalid(b'{"id": "' + b"{" * (MAX_JSON_BRACES + 1) + b'"}')
    assert (error.reason, error.detail) == (
        "schema_violation",
        f"event: more than {MAX_JSON_BRACES} '{{' braces in the record",
    )


def test_reactivation_carries_roles_and_asks_for_active() -> None:
    """idp.user.reactivated asks for active=true with its roles; a roles change keeps active."""
    document = event_document()
    document["type"] = "idp.user.reactivated"
    event = parse_event(encoded(document))
    assert event.type is EventType.REACTIVATED
    assert (event.active, event.is_deactivation) == (True, False)
    assert [role.role_id for role in event.desired_roles] == ["agent_basic"]
    assert parse_event(encoded(event_document())).active is None


def test_reactivation_without_roles_is_refused() -> None:
    """A reactivation must say which roles the returning user gets."""
    document = event_document()
    document["type"] = "idp.user.reactivated"
    del document["data"]["roles"]
    assert "data.roles is required for idp.user.reactivated" in schema_violation(document)


def test_approval_may_carry_a_signature_and_an_expiry() -> None:
    """An approval's signature is any bounded string, its expiry an RFC 3339 time."""
    approval = {
        "ticket": "CHG-1",
        "approved_by": "secops",
        "signature": "not even hex",
        "expires_at": "2026-12-01T00:00:00Z",
    }
    event = parse_event(encoded(event_document(approval=approval)))
    assert event.data.approval is not None
    assert event.data.approval.signature == "not even hex"
    assert event.data.approval.expires_at == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [("expires_at", "2026-12-01T00:00:00"), ("expires_at", "tomorrow"), ("signature", "x" * 129)],
)
def test_approval_fields_are_checked(field: str, value: str) -> None:
    """An expiry without a UTC offset, a non-time or an oversized signature is refused."""
    approval = {"ticket": "CHG-1", "approved_by": "secops", field: value}
    assert f"data.approval.{field}" in schema_violation(event_document(approval=approval))
