"""Each event's result from the synchronizer: its own decision, the write's outcome, the trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consumer.errors import Forbidden, UserNotFound
from consumer.events import (
    Approval,
    ApprovalReference,
    EventType,
    Outcome,
    RoleAssignment,
    RoleChangeData,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
)
from consumer.results import Queued
from consumer.sync import Applied, Synchronizer
from tests.unit.cxone_in_memory import InMemoryCxone
from tests.unit.test_policy import POLICY

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
CHANGE = Approval(ticket="CHG-1", approved_by="secops")


def event(
    number: int,
    *roles: str,
    kind: EventType = EventType.ROLES_CHANGED,
    approval: Approval | None = None,
) -> RoleChangeEvent:
    """Event `e<number>` of user u-1 asking for `roles`."""
    return RoleChangeEvent(
        specversion="1.0",
        id=f"e{number}",
        source="okta/test",
        type=kind,
        data=RoleChangeData(
            user_id="u-1",
            roles=None
            if kind is EventType.DEACTIVATED
            else tuple(RoleAssignment(role_id=r, primary=i == 0) for i, r in enumerate(roles)),
            approval=approval,
        ),
    )


def user(*roles: str, active: bool = True) -> dict[str, Any]:
    """CXone's user u-1 holding `roles`, the first primary."""
    return {
        "id": "u-1",
        "userName": "u-1@example.com",
        "active": active,
        "roles": [{"value": r, "primary": i == 0} for i, r in enumerate(roles)],
    }


async def apply(cxone: InMemoryCxone, *events: RoleChangeEvent) -> Applied:
    """The newest event applied with the others folded into its write, oldest first."""
    *older, newest = events
    sync = Synchronizer(POLICY, cxone, wall_clock=lambda: NOW)  # type: ignore[arg-type]
    where = {
        item.id: SourcePosition(topic="in", partition=0, offset=n) for n, item in enumerate(events)
    }
    return await sync.apply(
        newest,
        source=where[newest.id],
        received_at=0.0,
        earlier=[Queued(item, where[item.id], 0.0) for item in older],
    )


def by_id(applied: Applied) -> dict[str | None, SyncResult]:
    """Every result of the write by event id."""
    return {result.event_id: result for result in (*applied.folded, applied.result)}


async def test_a_folded_unknown_role_attempt_is_rejected_as_an_escalation() -> None:
    """Queued behind a newer event, an unknown role is still `rejected`, escalation, its reason."""
    results = by_id(
        await apply(InMemoryCxone(user("agent")), event(1, "agent", "ghost"), event(2, "voice"))
    )
    folded = results["e1"]
    assert (folded.outcome, folded.reason, folded.escalation) == (
        Outcome.REJECTED,
        "unknown_role",
        True,
    )
    assert (
        folded.detail
        == "unknown_role: role 'ghost' is not in the catalog; folded into the write of e2"
    )
    assert (folded.source.offset, folded.event_type) == (0, EventType.ROLES_CHANGED)
    assert (results["e2"].outcome, results["e2"].roles_after) == (Outcome.SYNCED, ("voice",))


async def test_the_approval_of_a_folded_grant_is_on_the_audit_of_the_event_that_carried_it() -> (
    None
):
    """The grant's approval is on its own (superseded) audit, accepted; the write's has none."""
    cxone = InMemoryCxone(user("agent"))
    results = by_id(
        await apply(cxone, event(1, "agent", "admin", approval=CHANGE), event(2, "admin", "voice"))
    )
    assert (results["e1"].outcome, results["e1"].detail, results["e1"].approval) == (
        Outcome.SUPERSEDED,
        "superseded_by=e2",
        ApprovalReference(ticket="CHG-1", approved_by="secops", accepted=True),
    )
    assert (results["e2"].outcome, results["e2"].approval) == (Outcome.SYNCED, None)
    assert [role["value"] for role in cxone.document["roles"]] == ["admin", "voice"]


async def test_a_refused_approval_is_recorded_as_not_accepted() -> None:
    """An approval that came with a refused change is on the audit with accepted false."""
    refused = event(1, "agent", "admin", "ghost", approval=CHANGE)
    [result] = by_id(await apply(InMemoryCxone(user("agent")), refused)).values()
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "unknown_role")
    assert result.approval == ApprovalReference(
        ticket="CHG-1", approved_by="secops", accepted=False
    )


async def test_events_folded_into_a_forbidden_write_get_the_writes_outcome() -> None:
    """A 403 on the write: folded allowed events fail (forbidden); refused ones stay rejected."""
    cxone = InMemoryCxone(
        user("agent"), refuse_writes=Forbidden("403", status=403, detail="not your user")
    )
    results = by_id(
        await apply(
            cxone, event(1, "agent", "ghost"), event(2, "agent", "voice"), event(3, "reporting")
        )
    )
    assert (results["e1"].outcome, results["e1"].reason, results["e1"].escalation) == (
        Outcome.REJECTED,
        "unknown_role",
        True,
    )
    folded = results["e2"]
    assert (folded.outcome, folded.reason, folded.http_status) == (Outcome.FAILED, "forbidden", 403)
    assert folded.detail == "folded into the write of e3, which failed: not your user"
    assert (results["e3"].outcome, results["e3"].reason) == (Outcome.FAILED, "forbidden")
    assert (results["e3"].roles_before, results["e3"].roles_after) == (("agent",), None)
    assert cxone.writes == 0


async def test_a_refused_event_whose_removals_fail_to_write_stays_rejected() -> None:
    """Its own decision first: the escalation is kept, the failed write is in the detail."""
    cxone = InMemoryCxone(
        user("agent", "voice"), refuse_writes=Forbidden("403", status=403, detail="no")
    )
    [result] = by_id(await apply(cxone, event(1, "agent", "ghost"))).values()
    assert (result.outcome, result.reason, result.escalation, result.http_status) == (
        Outcome.REJECTED,
        "unknown_role",
        True,
        403,
    )
    assert result.detail is not None
    assert result.detail.endswith("the write failed: forbidden: no")


async def test_a_user_that_cannot_be_read_leaves_every_event_unjudged_and_failed() -> None:
    """user_not_found: no roles or active before, approvals never judged, folded ones failed too."""
    cxone = InMemoryCxone(
        user("agent"), refuse_reads=UserNotFound("404", status=404, detail="gone")
    )
    results = by_id(
        await apply(cxone, event(1, "agent", "admin", approval=CHANGE), event(2, "voice"))
    )
    for result in results.values():
        assert (result.outcome, result.reason) == (Outcome.FAILED, "user_not_found")
        assert (result.roles_before, result.roles_after) == (None, None)
        assert (result.active_before, result.active_after) == (None, None)
    assert results["e1"].approval == ApprovalReference(
        ticket="CHG-1", approved_by="secops", accepted=None
    )


async def test_deactivation_and_reactivation_say_so_in_the_active_fields() -> None:
    """event_type and active before/after show a deactivation and a reactivation as such."""
    cxone = InMemoryCxone(user("agent"))
    off = (await apply(cxone, event(1, kind=EventType.DEACTIVATED))).result
    assert (off.event_type, off.active_before, off.active_after, off.roles_after) == (
        EventType.DEACTIVATED,
        True,
        False,
        (),
    )
    on = (await apply(cxone, event(2, "voice", kind=EventType.REACTIVATED))).result
    assert (on.event_type, on.active_before, on.active_after, on.roles_after) == (
        EventType.REACTIVATED,
        False,
        True,
        ("voice",),
    )
    same = (await apply(cxone, event(3, "voice"))).result
    assert (same.outcome, same.active_before, same.active_after) == (Outcome.UNCHANGED, True, True)
