"""Tests of how `audit` filters results and renders one line per result."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.audit_reader import AuditFilter, render_line
from consumer.events import (
    ApprovalReference,
    AuditEvent,
    EventType,
    Mode,
    Outcome,
    SourcePosition,
    SyncResult,
    audit_event_of,
)

WHEN = datetime(2026, 12, 1, 12, 30, 5, tzinfo=UTC)


def audit(**fields: object) -> AuditEvent:
    """An audit event of a result for u-1001; `fields` override the defaults."""
    defaults: dict[str, object] = {
        "event_id": "evt-1",
        "user_id": "u-1001",
        "outcome": Outcome.SYNCED,
        "roles_before": ("agent_basic",),
        "roles_after": ("agent_voice",),
        "source": SourcePosition(topic="idp.role-changes", partition=2, offset=17),
        "processed_at": WHEN,
    }
    return audit_event_of(SyncResult.model_validate({**defaults, **fields}))


def test_line_shows_when_who_what_roles_and_where() -> None:
    """A synced result renders its time, user, outcome, role change and input position."""
    assert render_line(audit()) == (
        "2026-12-01T12:30:05Z  u-1001        synced      roles agent_basic -> agent_voice"
        "  event evt-1 at idp.role-changes/2@17"
    )


def test_line_shows_who_approved_a_grant() -> None:
    """The approval ticket and approver of a result appear in its line."""
    line = render_line(
        audit(
            roles_after=("agent_voice", "admin_support"),
            approval=ApprovalReference(ticket="CHG-42", approved_by="secops", accepted=True),
        )
    )
    assert "roles agent_basic -> agent_voice,admin_support  approved CHG-42 by secops" in line


def test_line_shows_reason_escalation_and_detail() -> None:
    """A refused escalation shows its reason code, ESCALATION and the detail in parentheses."""
    line = render_line(
        audit(
            outcome=Outcome.REJECTED,
            reason="approval_required",
            escalation=True,
            detail="billing_admin is privileged",
            roles_after=("agent_basic",),
        )
    )
    assert "rejected    approval_required  ESCALATION  roles agent_basic -> agent_basic" in line
    assert "(billing_admin is privileged)" in line


def test_line_of_a_result_without_roles_says_so() -> None:
    """An invalid record with no user and no roles renders dashes, not empty columns."""
    line = render_line(
        audit(
            user_id=None,
            outcome=Outcome.INVALID,
            reason="invalid_json",
            roles_before=None,
            roles_after=None,
            detail="event: Invalid JSON",
        )
    )
    assert line.startswith("2026-12-01T12:30:05Z  -             invalid     invalid_json  (event")
    assert "roles" not in line


def test_colour_only_when_asked() -> None:
    """Colour codes appear with colour=True and never without."""
    assert "\x1b[" not in render_line(audit(outcome=Outcome.FAILED, reason="forbidden"))
    assert "\x1b[" in render_line(audit(outcome=Outcome.FAILED, reason="forbidden"), colour=True)


def test_filter_by_user_outcome_and_time() -> None:
    """Each filter given must hold; none given lets everything through."""
    event = audit(outcome=Outcome.REJECTED)
    assert AuditFilter().matches(event)
    assert AuditFilter(user_id="u-1001", outcome=Outcome.REJECTED, since=WHEN).matches(event)
    assert not AuditFilter(user_id="u-1002").matches(event)
    assert not AuditFilter(outcome=Outcome.SYNCED).matches(event)
    assert not AuditFilter(since=datetime(2026, 12, 1, 12, 31, tzinfo=UTC)).matches(event)


def test_a_refused_approval_never_reads_as_approved() -> None:
    """An approval the policy did not accept is named as such, never as 'approved'."""
    line = render_line(
        audit(
            outcome=Outcome.REJECTED,
            reason="approval_invalid",
            escalation=True,
            roles_after=("agent_basic",),
            approval=ApprovalReference(ticket="CHG-1", approved_by="secops", accepted=False),
        )
    )
    assert "approval CHG-1 by secops NOT ACCEPTED" in line
    assert "approved" not in line


def test_an_approval_never_judged_says_so() -> None:
    """A result whose user could not be read shows its approval as not judged."""
    line = render_line(
        audit(
            outcome=Outcome.FAILED,
            reason="user_not_found",
            roles_before=None,
            roles_after=None,
            approval=ApprovalReference(ticket="CHG-1", approved_by="secops", accepted=None),
        )
    )
    assert "approval CHG-1 by secops (not judged)" in line
    assert "approved" not in line


def test_a_deactivation_says_so_and_differs_from_removing_every_role() -> None:
    """Deactivated: the line says so; a roles change to none leaves the user active and says not."""
    off = render_line(
        audit(
            event_type=EventType.DEACTIVATED,
            roles_after=(),
            active_before=True,
            active_after=False,
        )
    )
    emptied = render_line(
        audit(
            event_type=EventType.ROLES_CHANGED,
            roles_after=(),
            active_before=True,
            active_after=True,
        )
    )
    assert "synced      deactivated  roles agent_basic -> (none)" in off
    assert "deactivat" not in emptied
    assert "synced      roles agent_basic -> (none)" in emptied


def test_a_reactivation_says_so() -> None:
    """A user turned active again reads 'reactivated', not 'agent_voice -> agent_voice' alone."""
    line = render_line(
        audit(
            event_type=EventType.REACTIVATED,
            roles_before=("agent_voice",),
            roles_after=("agent_voice",),
            active_before=False,
            active_after=True,
        )
    )
    assert "synced      reactivated  roles agent_voice -> agent_voice" in line


def test_a_refused_reactivation_that_leaves_the_user_inactive_says_so() -> None:
    """The user stays inactive: the line says it was not reactivated."""
    line = render_line(
        audit(
            outcome=Outcome.REJECTED,
            reason="too_many_roles",
            event_type=EventType.REACTIVATED,
            roles_after=("agent_basic",),
            active_before=False,
            active_after=False,
        )
    )
    assert "too_many_roles  not reactivated: stays inactive  roles" in line


def test_a_replay_result_is_marked() -> None:
    """A result of a replay carries [replay] after its outcome; a live one does not."""
    assert "synced      [replay]  roles" in render_line(audit(mode=Mode.REPLAY))
    assert "[replay]" not in render_line(audit())


def test_an_unknown_user_prints_no_roles() -> None:
    """user_not_found: nothing was read or written, so no 'roles ... -> ?' part."""
    line = render_line(
        audit(
            outcome=Outcome.FAILED,
            reason="user_not_found",
            roles_before=None,
            roles_after=None,
            detail="User 'u-1001' not found",
        )
    )
    assert "roles" not in line
    assert "?" not in line
    assert line.startswith("2026-12-01T12:30:05Z  u-1001        failed      user_not_found  (User")


def test_a_failed_write_of_a_read_user_shows_nothing_written() -> None:
    """Read, then refused by CXone: the roles before, and that nothing was written."""
    line = render_line(audit(outcome=Outcome.FAILED, reason="forbidden", roles_after=None))
    assert "roles agent_basic -> (not written)" in line
