"""Folding a user's queued events: one write that equals applying them one at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumer.catalog import Policy
from consumer.events import (
    Approval,
    EventType,
    Outcome,
    RoleAssignment,
    RoleChangeData,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
)
from consumer.fold import UserState, fold
from consumer.results import Queued
from consumer.scim import mapping
from consumer.sync import Synchronizer
from tests.unit.cxone_in_memory import InMemoryCxone
from tests.unit.test_policy import APPROVAL, POLICY, policies, role_ids, role_lists

NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def event(
    kind: EventType,
    roles: tuple[RoleAssignment, ...] | None = (),
    *,
    approval: Approval | None = None,
    number: int = 1,
) -> RoleChangeEvent:
    """An event of the given type for one user."""
    return RoleChangeEvent(
        specversion="1.0",
        id=f"e{number}",
        source="okta/test",
        type=kind,
        data=RoleChangeData(
            user_id="u-1",
            roles=None if kind is EventType.DEACTIVATED else roles,
            approval=approval,
        ),
    )


def user(role_ids: tuple[str, ...], *, active: bool) -> dict[str, Any]:
    """A CXone user document holding these roles, the first one primary."""
    return {
        "id": "u-1",
        "userName": "u-1@example.com",
        "active": active,
        "roles": [{"value": r, "primary": index == 0} for index, r in enumerate(role_ids)],
    }


def owned(document: mapping.Document) -> tuple[frozenset[tuple[str, bool]], bool]:
    """What this service owns of a user: its (role, primary) pairs and `active`."""
    roles = frozenset((role.value, bool(role.primary)) for role in mapping.current_roles(document))
    return roles, mapping.is_active(document)


def write(
    policy: Policy, events: list[RoleChangeEvent], document: dict[str, Any]
) -> dict[str, Any]:
    """What CXone holds after one write of the fold of `events` (the document if none)."""
    folded = fold(policy, events, UserState.of(document), now=NOW)
    target = folded.state
    if not mapping.needs_write(document, target.roles, active=target.active):
        return document
    return mapping.with_roles(document, target.roles, active=target.active)


def test_deactivation_then_empty_roles_change_leaves_the_user_inactive() -> None:
    """deactivated then roles.changed [] folds to active=false with no roles."""
    events = [event(EventType.DEACTIVATED, number=2), event(EventType.ROLES_CHANGED, number=3)]
    after = write(POLICY, events, user(("agent", "voice"), active=True))
    assert owned(after) == (frozenset(), False)


def test_deactivation_sticks_until_a_reactivation() -> None:
    """A roles change after a deactivation keeps the user inactive; a reactivation ends it."""
    agent = (RoleAssignment(role_id="agent"),)
    held = user(("voice",), active=True)
    stays = [event(EventType.DEACTIVATED), event(EventType.ROLES_CHANGED, agent)]
    back = [*stays, event(EventType.REACTIVATED, agent)]
    assert owned(write(POLICY, stays, held)) == (frozenset({("agent", True)}), False)
    assert owned(write(POLICY, back, held)) == (frozenset({("agent", True)}), True)


def test_a_privilege_is_judged_against_what_the_earlier_events_leave() -> None:
    """After a deactivation strips admin, re-adding it needs an approval even though it was held."""
    admin = (RoleAssignment(role_id="admin"),)
    events = [event(EventType.DEACTIVATED), event(EventType.REACTIVATED, admin)]
    folded = fold(POLICY, events, UserState.of(user(("admin",), active=True)), now=NOW)
    assert (folded.decision.allowed, folded.decision.reason) == (False, "approval_required")
    assert (folded.state.roles, folded.state.active) == ((), False)
    assert (folded.removes_access, folded.is_revocation) == (True, True)


kinds = st.sampled_from(list(EventType))


@st.composite
def sequences(draw: st.DrawFn) -> list[RoleChangeEvent]:
    """One user's events of every type, with and without approvals."""
    count = draw(st.integers(1, 5))
    return [
        event(
            draw(kinds),
            draw(role_lists()),
            approval=draw(st.none() | st.just(APPROVAL)),
            number=number,
        )
        for number in range(count)
    ]


@given(
    policies(),
    sequences(),
    st.lists(role_ids, unique=True, max_size=4).map(tuple),
    st.booleans(),
)
def test_folding_then_writing_equals_writing_one_at_a_time(
    policy: Policy,
    events: list[RoleChangeEvent],
    held: tuple[str, ...],
    active: bool,
) -> None:
    """Any sequence folded into one write leaves CXone as applying the events one by one does."""
    start = user(held, active=active)
    one_by_one = start
    for item in events:
        one_by_one = write(policy, [item], one_by_one)
    assert owned(write(policy, events, start)) == owned(one_by_one)


def synchronizer(policy: Policy, cxone: InMemoryCxone) -> Synchronizer:
    """The real synchronizer over one user held in memory, judging at NOW."""
    return Synchronizer(policy, cxone, wall_clock=lambda: NOW)  # type: ignore[arg-type]


def position(number: int) -> SourcePosition:
    """Where event `number` was read."""
    return SourcePosition(topic="idp.role-changes", partition=0, offset=number)


async def one_at_a_time(
    policy: Policy, events: list[RoleChangeEvent], start: dict[str, Any]
) -> tuple[list[SyncResult], dict[str, Any]]:
    """Each event applied in its own write: the results, and what CXone holds after."""
    cxone = InMemoryCxone(start)
    sync = synchronizer(policy, cxone)
    results = []
    for number, item in enumerate(events):
        applied = await sync.apply(item, source=position(number), received_at=0.0)
        results.append(applied.result)
    return results, cxone.document


async def folded_into_one(
    policy: Policy, events: list[RoleChangeEvent], start: dict[str, Any]
) -> tuple[list[SyncResult], dict[str, Any]]:
    """Every event folded into the newest one's write: the results, oldest first, and CXone."""
    cxone = InMemoryCxone(start)
    *older, newest = events
    earlier = [Queued(item, position(number), 0.0) for number, item in enumerate(older)]
    applied = await synchronizer(policy, cxone).apply(
        newest, source=position(len(older)), received_at=0.0, earlier=earlier
    )
    return [*applied.folded, applied.result], cxone.document


def verdict(result: SyncResult) -> tuple[object, ...]:
    """What an audit says about the event's own decision: refused or not, why, its approval."""
    refused = result.outcome is Outcome.REJECTED
    return (
        result.event_id,
        result.event_type,
        result.source.offset,
        refused,
        result.reason if refused else None,
        result.escalation,
        result.approval,
    )


@given(
    policies(),
    sequences(),
    st.lists(role_ids, unique=True, max_size=4).map(tuple),
    st.booleans(),
)
def test_folding_then_writing_audits_every_event_as_writing_one_at_a_time(
    policy: Policy,
    events: list[RoleChangeEvent],
    held: tuple[str, ...],
    active: bool,
) -> None:
    """Same escalations, same approvals, same counts: a fold keeps each event's own decision."""
    start = user(held, active=active)
    serial, serial_after = asyncio.run(one_at_a_time(policy, events, start))
    folded, folded_after = asyncio.run(folded_into_one(policy, events, start))
    assert owned(folded_after) == owned(serial_after)
    assert len(folded) == len(serial) == len(events)
    assert [verdict(result) for result in folded] == [verdict(result) for result in serial]
    escalations = [r.reason for r in serial if r.outcome is Outcome.REJECTED and r.escalation]
    assert [r.reason for r in folded if r.outcome is Outcome.REJECTED and r.escalation] == (
        escalations
    )
    # An allowed event overtaken by the write is superseded; serially it was written itself.
    for alone, together in zip(serial[:-1], folded[:-1], strict=True):
        if alone.outcome is not Outcome.REJECTED:
            assert alone.outcome in {Outcome.SYNCED, Outcome.UNCHANGED}
            assert (together.outcome, together.detail) == (
                Outcome.SUPERSEDED,
                f"superseded_by={events[-1].id}",
            )
