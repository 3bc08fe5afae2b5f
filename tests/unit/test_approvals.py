"""Signed approvals: the canonical text, the signature, tampering, and the documented examples."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.approvals import approval_signature, canonical_approval, expires_at_text
from consumer.catalog import parse_policy
from consumer.errors import InvalidEvent
from consumer.events import (
    EXAMPLE_SIGNATURE,
    Approval,
    EventType,
    RoleChangeData,
    RoleChangeEvent,
    parse_event,
)
from consumer.policy import Decision, evaluate
from tests.unit.test_policy import POLICY, change

KEY = b"example-approval-key"
NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
DOCS = Path(__file__).parents[2] / "docs" / "policy.md"


def sign(
    user_id: str = "u-1001",
    roles: tuple[str, ...] = ("admin",),
    ticket: str = "CHG-1",
    approved_by: str = "secops",
    expires_at: datetime | None = None,
    key: bytes = KEY,
) -> str:
    """The signature of an approval with these fields."""
    return approval_signature(
        key,
        user_id=user_id,
        privileged_role_ids=roles,
        ticket=ticket,
        approved_by=approved_by,
        expires_at=expires_at,
    )


def approval(
    signature: str | None,
    *,
    ticket: str = "CHG-1",
    approved_by: str = "secops",
    expires_at: datetime | None = None,
) -> Approval:
    """An approval as an event carries it."""
    return Approval(
        ticket=ticket, approved_by=approved_by, signature=signature, expires_at=expires_at
    )


def grant_admin(given_approval: Approval, *, user_id: str = "u-1001", extra: str = "") -> Decision:
    """The decision on adding `admin` (and `extra`) to a user holding `agent`, with the key."""
    event = change("agent", "admin", *([extra] if extra else []), approval=given_approval)
    if user_id != "u-1001":
        event = event.model_copy(
            update={"data": event.data.model_copy(update={"user_id": user_id})}
        )
    return evaluate(POLICY, event, ("agent",), active=True, now=NOW, approval_key=KEY)


def test_the_canonical_text_is_five_lines_with_an_empty_expiry() -> None:
    """user, sorted privileged roles, ticket, approver and an empty expires_at, joined by \\n."""
    text = canonical_approval(
        user_id="u-1",
        privileged_role_ids=["b_admin", "a_admin"],
        ticket="CHG-9",
        approved_by="secops",
        expires_at=None,
    )
    assert text == "u-1\na_admin,b_admin\nCHG-9\nsecops\n"


def test_expires_at_is_signed_as_its_instant_in_utc() -> None:
    """An offset is turned into UTC with a Z; a fraction of a second is kept as six digits."""
    plus_two = timezone(timedelta(hours=2))
    assert expires_at_text(None) == ""
    assert expires_at_text(datetime(2030, 6, 30, 17, 0, tzinfo=plus_two)) == "2030-06-30T15:00:00Z"
    assert (
        expires_at_text(datetime(2030, 6, 30, 15, 0, 0, 500_000, tzinfo=UTC))
        == "2030-06-30T15:00:00.500000Z"
    )


def test_the_same_instant_in_another_offset_signs_the_same() -> None:
    """Signed as the instant, an expiry written with another offset still verifies."""
    expires = NOW + timedelta(days=30)
    signature = sign(expires_at=expires)
    written_elsewhere = expires.astimezone(timezone(timedelta(hours=-5)))
    assert grant_admin(approval(signature, expires_at=written_elsewhere)).allowed


def test_a_correctly_signed_approval_is_accepted() -> None:
    """With the key set, a signature over every field of the approval approves."""
    expires = NOW + timedelta(hours=1)
    assert grant_admin(approval(sign(), expires_at=None)).allowed
    assert grant_admin(approval(sign(expires_at=expires), expires_at=expires)).allowed


def test_the_signature_covers_privileged_roles_gained_by_inheritance() -> None:
    """helpdesk inherits admin: the signed list is 'admin', what the change adds in access."""
    good = approval(sign(roles=("admin",)))
    added = change("helpdesk", approval=good)
    assert evaluate(POLICY, added, ("agent",), active=True, now=NOW, approval_key=KEY).allowed
    wrong = approval(sign(roles=("helpdesk",)))
    event = change("helpdesk", approval=wrong)
    refused = evaluate(POLICY, event, ("agent",), active=True, now=NOW, approval_key=KEY)
    assert refused.reason == "approval_invalid"


def test_a_signature_over_every_privileged_role_granted_verifies_whatever_is_held() -> None:
    """Signed over all the privileged roles the desired set grants, it needs no CXone state."""
    every = approval(sign(roles=("admin", "billing_admin")))
    event = change("agent", "admin", "billing_admin", approval=every)
    holding_admin = evaluate(POLICY, event, ("admin",), active=True, now=NOW, approval_key=KEY)
    holding_nothing = evaluate(POLICY, event, (), active=True, now=NOW, approval_key=KEY)
    assert (holding_admin.allowed, holding_nothing.allowed) == (True, True)
    partial = approval(sign(roles=("admin",)))
    event = change("agent", "admin", "billing_admin", approval=partial)
    refused = evaluate(POLICY, event, ("agent",), active=True, now=NOW, approval_key=KEY)
    assert refused.reason == "approval_invalid"


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "0" * 64,
        sign(user_id="u-2002"),
        sign(ticket="CHG-2"),
        sign(approved_by="mallory"),
        sign(expires_at=NOW + timedelta(days=1)),
        sign(roles=("admin", "billing_admin")),
        sign(key=b"another-key"),
        sign().upper(),
    ],
)
def test_a_missing_or_wrong_signature_is_an_invalid_approval(signature: str | None) -> None:
    """No signature, or one over another user, ticket, approver, expiry, roles, key or casing."""
    decision = grant_admin(approval(signature))
    assert (decision.allowed, decision.reason, decision.escalation) == (
        False,
        "approval_invalid",
        True,
    )


def test_a_deleted_expiry_no_longer_verifies() -> None:
    """An approval signed with an expiry whose expires_at is deleted is invalid, not eternal."""
    past = NOW - timedelta(days=1)
    signature = sign(expires_at=past)
    assert grant_admin(approval(signature, expires_at=past)).reason == "approval_expired"
    assert grant_admin(approval(signature)).reason == "approval_invalid"


def test_without_the_key_an_unsigned_approval_is_taken_as_given() -> None:
    """With no APPROVAL_HMAC_KEY, an approval approves without a signature."""
    event = change("agent", "admin", approval=approval(None))
    assert evaluate(POLICY, event, ("agent",), active=True, now=NOW).allowed


def test_an_expired_approval_is_refused_and_a_current_one_is_not() -> None:
    """A correctly signed approval whose expires_at has passed is approval_expired."""
    past, future = NOW - timedelta(seconds=1), NOW + timedelta(hours=1)
    expired = grant_admin(approval(sign(expires_at=past), expires_at=past))
    assert (expired.allowed, expired.reason, expired.escalation) == (
        False,
        "approval_expired",
        True,
    )
    assert grant_admin(approval(sign(expires_at=future), expires_at=future)).allowed


def test_signature_is_not_needed_when_no_privilege_is_added() -> None:
    """An approval on a change that adds no privileged role is never checked."""
    event = change("voice", approval=approval("nonsense"))
    assert evaluate(POLICY, event, ("agent",), active=True, now=NOW, approval_key=KEY).allowed


@pytest.mark.parametrize("field", ["ticket", "approved_by"])
@pytest.mark.parametrize("text", ["CHG-1\nsecops", "CHG-1\r", "a\x00b", "tab\there", "del\x7f"])
def test_a_signed_field_holding_a_control_character_is_invalid_input(field: str, text: str) -> None:
    """A line break in ticket or approved_by could shift the signed lines: the event is invalid."""
    document = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "data": {
            "user_id": "u-1",
            "roles": [{"role_id": "admin"}],
            "approval": {"ticket": "CHG-1", "approved_by": "secops", field: text},
        },
    }
    with pytest.raises(InvalidEvent) as raised:
        parse_event(json.dumps(document).encode())
    assert raised.value.reason == "schema_violation"
    assert f"data.approval.{field}" in raised.value.detail


# Printable text without the characters the schema refuses in a signed field.
field_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)
instants = st.datetimes(
    min_value=datetime(2027, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
)


@st.composite
def tampered(draw: st.DrawFn) -> tuple[Approval, Approval, str, str]:
    """A signed approval of admin for u-1001, and the same with one field altered, added or cut.

    Returns (original, tampered, user the tampered one is sent for, extra role it asks for).
    """
    ticket, approved_by = draw(field_text), draw(field_text)
    expires = draw(st.none() | instants)
    original = approval(
        sign(ticket=ticket, approved_by=approved_by, expires_at=expires),
        ticket=ticket,
        approved_by=approved_by,
        expires_at=expires,
    )
    what = draw(st.sampled_from(["ticket", "approved_by", "expires_at", "user_id", "roles"]))
    user_id, extra = "u-1001", ""
    changed = original
    if what in ("ticket", "approved_by"):
        value = draw(field_text.filter(lambda text: text != getattr(original, what)))
        changed = original.model_copy(update={what: value})
    elif what == "expires_at":
        # Altered to another instant, added where there was none, or removed.
        other = draw(st.none() | instants) if expires is not None else draw(instants)
        if other is not None and expires is not None and other == expires:
            other = other + timedelta(microseconds=1)
        changed = original.model_copy(update={"expires_at": other})
    elif what == "user_id":
        user_id = draw(st.sampled_from(["u-1002", "U-1001", "u-10011", "admin"]))
    else:
        extra = "billing_admin"  # one more privileged role than was signed for
    return original, changed, user_id, extra


@given(tampered())
def test_altering_adding_or_removing_any_field_of_a_signed_approval_invalidates_it(
    case: tuple[Approval, Approval, str, str],
) -> None:
    """The untouched approval approves; any field altered, added or removed is approval_invalid."""
    original, changed, user_id, extra = case
    assert grant_admin(original).allowed
    decision = grant_admin(changed, user_id=user_id, extra=extra)
    assert (decision.allowed, decision.reason, decision.escalation) == (
        False,
        "approval_invalid",
        True,
    )


def _example_from_docs() -> dict[str, str]:
    """The worked example's parts, read from docs/policy.md itself."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(
        r"Worked example: key `(?P<key>[^`]+)`, `user_id` `(?P<user>[^`]+)`, adding"
        r" `(?P<role>[^`]+)`, ticket\s+`(?P<ticket>[^`]+)`, approved by `(?P<by>[^`]+)`, no"
        r" `expires_at`: the signed text is\s+`(?P<text>[^`]+)`.*?the\s+signature is"
        r" `(?P<signature>[0-9a-f]{64})`",
        text,
        re.S,
    )
    assert found is not None, "the worked example is not in docs/policy.md"
    return found.groupdict()


def test_the_documented_example_is_recomputed_from_the_docs_text() -> None:
    """The key, fields, signed text and signature docs/policy.md gives agree with the code."""
    example = _example_from_docs()
    fields = {
        "user_id": example["user"],
        "privileged_role_ids": [example["role"]],
        "ticket": example["ticket"],
        "approved_by": example["by"],
        "expires_at": None,
    }
    assert canonical_approval(**fields).replace("\n", "\\n") == example["text"]
    signature = approval_signature(example["key"].encode(), **fields)
    assert signature == example["signature"] == EXAMPLE_SIGNATURE
    schema = RoleChangeEvent.model_json_schema()
    assert signature in str(schema["$defs"]["Approval"]["properties"]["signature"])


def test_the_documented_approval_and_command_verify_today() -> None:
    """The JSON block approves admin_support for u-1001 now, and the printf line signs the same."""
    text = DOCS.read_text(encoding="utf-8")
    example = _example_from_docs()
    block = re.search(r'```json\n"approval": (\{.*?\})\n```', text, re.S)
    assert block is not None
    documented = Approval.model_validate_json(block.group(1))
    assert documented.signature == example["signature"]
    policy = parse_policy(
        {
            "max_roles_per_user": 5,
            "max_hierarchy_depth": 3,
            "roles": {"admin_support": {"display_name": "Support Admin", "privileged": True}},
        }
    )
    event = RoleChangeEvent(
        specversion="1.0",
        id="e-docs",
        source="docs",
        type=EventType.ROLES_CHANGED,
        data=RoleChangeData.model_validate(
            {"user_id": example["user"], "roles": [{"role_id": example["role"]}]}
        ).model_copy(update={"approval": documented}),
    )
    decision = evaluate(
        policy, event, (), active=True, now=datetime.now(UTC), approval_key=example["key"].encode()
    )
    assert (decision.allowed, decision.failures) == (True, ())
    command = re.search(
        r"printf '(?P<text>[^']*)' \| openssl dgst -sha256 -hmac (?P<key>\S+)", text
    )
    assert command is not None
    printed = command.group("text").replace("\\n", "\n").encode()
    digest = hmac.new(command.group("key").encode(), printed, hashlib.sha256).hexdigest()
    assert digest == example["signature"]


def test_the_documented_expiry_example_is_recomputed_from_the_docs_text() -> None:
    """The expiring variant's offset, signed text and signature in the docs agree with the code."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(
        r"expiring at `(?P<at>[^`]+)` signs\s+`(?P<text>[^`]+)` as\s+`(?P<signature>[0-9a-f]{64})`",
        text,
    )
    assert found is not None
    example = _example_from_docs()
    fields = {
        "user_id": example["user"],
        "privileged_role_ids": [example["role"]],
        "ticket": example["ticket"],
        "approved_by": example["by"],
        "expires_at": datetime.fromisoformat(found.group("at")),
    }
    assert canonical_approval(**fields).replace("\n", "\\n") == found.group("text")
    assert approval_signature(example["key"].encode(), **fields) == found.group("signature")
