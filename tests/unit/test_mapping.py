"""Tests of the pure read-modify-write of a CXone user: only roles and `active` ever change."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scim2_models import Role

from consumer.errors import ScimRejected
from consumer.scim.mapping import (
    DesiredRole,
    current_roles,
    encode,
    is_active,
    needs_write,
    payload_with_roles,
    role_values,
    sha256_hex,
    with_roles,
)

NICE = "urn:ietf:params:scim:schemas:extension:nice:2.0:User"
CUSTOM = "urn:example:params:scim:schemas:extension:custom:2.0:User"


def cxone_user() -> dict[str, Any]:
    """A user as CXone serves it, with every kind of attribute this service does not own."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", NICE, CUSTOM],
        "id": "u-1001",
        "externalId": "okta-00u1",
        "meta": {
            "resourceType": "User",
            "created": "2026-11-01T09:00:00Z",
            "lastModified": "2026-11-20T09:00:00Z",
            "version": 'W/"7"',
        },
        "userName": "jdoe@example.com",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "title": "Senior Agent",
        "active": True,
        "emails": [{"value": "jdoe@example.com", "type": "work", "primary": True}],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "work", "primary": True}],
        "roles": [
            {"value": "reporting_viewer", "primary": False},
            {"value": "agent_basic", "display": "Standard Agent", "primary": True},
        ],
        NICE: {"team": "Blue", "loginAuthenticator": "SSO"},
        CUSTOM: {"costCenter": "CC-42", "badges": ["night-shift"]},
    }


VOICE = DesiredRole(value="agent_voice", display="Voice Agent", primary=True)
VIEWER = DesiredRole(value="reporting_viewer", display=None, primary=False)
BASIC = DesiredRole(value="agent_basic", display="Standard Agent", primary=True)


def test_with_roles_replaces_only_the_roles() -> None:
    """The new document is the old one with the desired roles, and nothing else changed."""
    before = cxone_user()
    after = with_roles(before, [VOICE, VIEWER], active=True)
    assert after["roles"] == [
        {"value": "agent_voice", "display": "Voice Agent", "primary": True},
        {"value": "reporting_viewer", "primary": False},
    ]
    untouched = {key: value for key, value in before.items() if key not in ("roles", "meta")}
    assert {key: value for key, value in after.items() if key != "roles"} == untouched


def test_with_roles_keeps_unknown_extensions() -> None:
    """An extension no model here knows survives the write byte for byte."""
    after = with_roles(cxone_user(), [VOICE], active=True)
    assert after[CUSTOM] == {"costCenter": "CC-42", "badges": ["night-shift"]}
    assert after[NICE] == {"team": "Blue", "loginAuthenticator": "SSO"}
    assert after["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User", NICE, CUSTOM]
    assert after["externalId"] == "okta-00u1"


def test_with_roles_drops_server_owned_meta() -> None:
    """`meta` belongs to the server and is not sent back."""
    assert "meta" not in with_roles(cxone_user(), [VOICE], active=True)


def test_with_roles_does_not_change_its_input() -> None:
    """The document read from CXone is left as it was."""
    before = cxone_user()
    snapshot = copy.deepcopy(before)
    after = with_roles(before, [], active=False)
    after[NICE]["team"] = "Red"
    assert before == snapshot


def test_with_roles_deactivates() -> None:
    """A deactivation writes active=false and no roles."""
    after = with_roles(cxone_user(), [], active=False)
    assert after["active"] is False
    assert after["roles"] == []


def test_with_roles_reactivates() -> None:
    """active=true is written when the user was inactive."""
    before = cxone_user()
    before["active"] = False
    assert with_roles(before, [BASIC], active=True)["active"] is True


def test_with_roles_does_not_add_active_when_absent_and_unchanged() -> None:
    """A user without `active` (which SCIM reads as active) stays without it."""
    before = cxone_user()
    del before["active"]
    assert "active" not in with_roles(before, [BASIC], active=True)


def test_with_roles_of_a_user_without_roles() -> None:
    """A user who held no roles gets the desired ones."""
    before = cxone_user()
    del before["roles"]
    assert with_roles(before, [BASIC], active=True)["roles"] == [
        {"value": "agent_basic", "display": "Standard Agent", "primary": True}
    ]


def test_needs_write_is_false_for_the_same_roles_in_another_order() -> None:
    """Holding the desired roles, in any order, needs no write."""
    assert needs_write(cxone_user(), [VIEWER, BASIC], active=True) is False
    assert needs_write(cxone_user(), [BASIC, VIEWER], active=True) is False


def test_needs_write_ignores_display_names() -> None:
    """A display name differing from CXone's is no reason to write."""
    renamed = DesiredRole(value="agent_basic", display="Agent", primary=True)
    assert needs_write(cxone_user(), [renamed, VIEWER], active=True) is False


@pytest.mark.parametrize(
    ("roles", "active"),
    [
        ([BASIC], True),
        ([BASIC, VIEWER, VOICE], True),
        (
            [DesiredRole("agent_basic", None, False), DesiredRole("reporting_viewer", None, True)],
            True,
        ),
        ([BASIC, VIEWER], False),
        ([], True),
    ],
    ids=["role_removed", "role_added", "primary_moved", "deactivated", "all_removed"],
)
def test_needs_write_when_owned_attributes_differ(roles: list[DesiredRole], active: bool) -> None:
    """A different role set, primary role or active flag needs a write."""
    assert needs_write(cxone_user(), roles, active=active) is True


def test_needs_write_for_an_inactive_user_without_roles() -> None:
    """Deactivating a user who is already inactive with no roles needs no write."""
    before = cxone_user()
    before["active"] = False
    before["roles"] = []
    assert needs_write(before, [], active=False) is False


def test_role_values_puts_the_primary_first() -> None:
    """Role ids come primary first, the rest in CXone's order."""
    document = {
        "roles": [
            {"value": "b"},
            {"value": "c", "primary": False},
            {"value": "a", "primary": True},
            {"value": "d"},
        ]
    }
    assert role_values(document) == ("a", "b", "c", "d")
    assert role_values(cxone_user()) == ("agent_basic", "reporting_viewer")


@pytest.mark.parametrize("roles", [None, []])
def test_role_values_of_a_user_without_roles(roles: list[Any] | None) -> None:
    """A user without roles, or with an empty list, holds none."""
    assert role_values({"roles": roles}) == ()
    assert role_values({}) == ()


def test_current_roles_refuses_roles_that_are_not_a_list() -> None:
    """CXone serving `roles` as something other than a list is refused, not guessed at."""
    with pytest.raises(ScimRejected):
        current_roles({"roles": {"value": "agent_basic"}})


def test_current_roles_refuses_a_malformed_role() -> None:
    """A role entry that is not a SCIM role is refused."""
    with pytest.raises(ScimRejected):
        current_roles({"roles": [{"value": "agent_basic", "primary": "often"}]})


@pytest.mark.parametrize(
    ("document", "expected"),
    [({"active": True}, True), ({"active": False}, False), ({}, True), ({"active": None}, True)],
)
def test_is_active(document: dict[str, Any], expected: bool) -> None:
    """Only an explicit active=false means inactive."""
    assert is_active(document) is expected


def test_encode_is_compact_utf8_json() -> None:
    """The wire bytes are compact JSON in UTF-8, which decode back to the document."""
    document = {"userName": "zoë@example.com", "roles": [{"value": "a", "primary": True}]}
    payload = encode(document)
    expected = '{"userName":"zoë@example.com","roles":[{"value":"a","primary":true}]}'
    assert payload == expected.encode()
    assert json.loads(payload) == document


def test_sha256_hex_is_the_digest_of_the_bytes() -> None:
    """The audit fingerprint is the hex SHA-256 of the exact bytes written."""
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    payload = encode(with_roles(cxone_user(), [VOICE], active=True))
    assert sha256_hex(payload) == hashlib.sha256(payload).hexdigest()
    assert len(sha256_hex(payload)) == 64


def test_with_roles_leaves_roles_out_for_a_user_who_had_none_and_gets_none() -> None:
    """A deactivation of a user without a `roles` attribute sends no `roles` attribute."""
    before = cxone_user()
    del before["roles"]
    after = with_roles(before, [], active=False)
    assert "roles" not in after
    assert after["active"] is False


def test_with_roles_keeps_cxones_name_of_a_role_kept_without_one() -> None:
    """A role kept with no display name of ours keeps the name CXone gave it."""
    before = cxone_user()
    before["roles"] = [{"value": "custom_role", "display": "Hand Made", "primary": True}]
    kept = DesiredRole(value="custom_role", display=None, primary=True)
    assert with_roles(before, [kept], active=True)["roles"] == [
        {"value": "custom_role", "display": "Hand Made", "primary": True}
    ]


ROLE_IDS = st.sampled_from(["agent_basic", "agent_voice", "qa_evaluator", "custom_role", "ü-role"])
SERVED_ROLE = st.fixed_dictionaries(
    {"value": ROLE_IDS},
    optional={
        "display": st.one_of(st.none(), st.text(max_size=12)),
        "primary": st.one_of(st.booleans(), st.sampled_from([0, 1])),
        "type": st.sampled_from(["direct", "indirect"]),
    },
)
DESIRED_ROLE = st.builds(
    DesiredRole,
    value=ROLE_IDS,
    display=st.one_of(st.none(), st.text(max_size=12)),
    primary=st.booleans(),
)


@st.composite
def served_users(draw: st.DrawFn) -> dict[str, Any]:
    """A CXone user with any roles (or none, or no attribute), `active` or not, and extras."""
    user = cxone_user()
    roles = draw(st.one_of(st.none(), st.lists(SERVED_ROLE, max_size=4)))
    if roles is None:
        del user["roles"]
    else:
        user["roles"] = roles
    active = draw(st.one_of(st.none(), st.booleans()))
    if active is None:
        user.pop("active", None)
    else:
        user["active"] = active
    return user


@settings(max_examples=200, deadline=None)
@given(user=served_users(), roles=st.lists(DESIRED_ROLE, max_size=4), active=st.booleans())
def test_the_payload_is_the_encoded_copy_byte_for_byte(
    user: dict[str, Any], roles: list[DesiredRole], active: bool
) -> None:
    """`payload_with_roles` writes exactly the bytes of `encode(with_roles(...))`, input kept."""
    snapshot = copy.deepcopy(user)
    payload = payload_with_roles(user, roles, active=active)
    assert payload == encode(with_roles(user, roles, active=active))
    assert user == snapshot


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(SERVED_ROLE, max_size=4))
def test_roles_read_twice_are_the_roles_validated_afresh(entries: list[dict[str, Any]]) -> None:
    """Reading a user's roles (validated once per distinct entry) equals validating each anew."""
    user = {"roles": entries}
    fresh = tuple(Role.model_validate(entry) for entry in entries)
    assert current_roles(user) == fresh
    assert current_roles(user) == fresh


def test_true_and_one_are_different_role_entries() -> None:
    """An entry with `primary: 1` reads as validating it afresh does, whatever `true` cached."""
    as_bool = current_roles({"roles": [{"value": "agent_basic", "primary": True}]})
    as_int = current_roles({"roles": [{"value": "agent_basic", "primary": 1}]})
    assert as_bool == (Role(value="agent_basic", primary=True),)
    assert as_int == (Role.model_validate({"value": "agent_basic", "primary": 1}),)
