"""Which desired states become events, of which type, with which id and approval."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from consumer.catalog import load_policy
from consumer.events import EventType, RoleChangeEvent, parse_event
from consumer.ingress.desired import DesiredState
from consumer.ingress.emission import EmittedState, due_event
from consumer.policy import evaluate

POLICY = load_policy(Path(__file__).parents[2] / "examples" / "policy.yaml")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = b"ingress-test-key"
AGENT = DesiredState(active=True, roles=("agent_basic",))
ADMIN = DesiredState(
    active=True, roles=("agent_basic", "admin_support"), ticket="idp-group:CC Support Admins"
)


def due(
    previous: EmittedState | None, desired: DesiredState | None, key: bytes | None = None
) -> tuple[RoleChangeEvent, EmittedState] | None:
    """The event due for IdP user i1 (CXone u-1001) from `previous` to `desired`."""
    return due_event(
        POLICY,
        idp_user_id="i1",
        previous=previous,
        desired=desired,
        cxone_user_id="u-1001",
        user_name="jdoe@example.com",
        source="okta/acme-prod",
        now=NOW,
        approval_key=key,
    )


def emitted(desired: DesiredState, generation: int = 0) -> EmittedState:
    """The record of having emitted `desired` for u-1001."""
    return EmittedState("u-1001", desired.active, desired.roles, desired.ticket, generation)


def test_a_first_state_is_a_roles_change_with_every_role() -> None:
    """Nothing emitted yet: the complete role set, primary first, as idp.user.roles.changed."""
    result = due(None, AGENT)
    assert result is not None
    event, state = result
    assert event.type is EventType.ROLES_CHANGED
    assert [(r.role_id, r.primary) for r in event.data.roles] == [("agent_basic", True)]
    assert state == emitted(AGENT)


def test_nothing_is_due_when_nothing_changed() -> None:
    """The same state as last emitted (a phone number changed) gives no event."""
    assert due(emitted(AGENT, 3), AGENT) is None


def test_deactivation_deletion_and_reactivation_have_their_types() -> None:
    """Inactive or deleted -> deactivated; inactive -> active -> reactivated with roles."""
    off = due(emitted(AGENT), DesiredState(active=False))
    gone = due(emitted(AGENT), None)
    back = due(emitted(DesiredState(active=False), 1), AGENT)
    assert off is not None
    assert gone is not None
    assert back is not None
    assert off[0].type is EventType.DEACTIVATED
    assert gone[0].type is EventType.DEACTIVATED
    assert back[0].type is EventType.REACTIVATED
    assert back[1].generation == 2


def test_an_active_user_with_no_mapped_role_is_not_managed_until_it_gets_one() -> None:
    """Created without mapped groups: nothing due, so CXone's default role is not stripped."""
    assert due(None, DesiredState(active=True)) is None
    first = due(None, DesiredState(active=False))
    assert first is not None
    assert first[0].type is EventType.DEACTIVATED


def test_a_user_deleted_before_any_event_emits_nothing() -> None:
    """Never emitted, now gone: CXone never heard of the user from the ingress."""
    assert due(None, None) is None
    assert due(emitted(DesiredState(active=False)), None) is None


def test_the_event_id_is_the_same_for_the_same_user_state_and_generation() -> None:
    """Emitted again after a crash, an event keeps its id; the next generation gets a new one."""
    first = due(emitted(AGENT), ADMIN)
    again = due(emitted(AGENT), ADMIN)
    later = due(emitted(AGENT, 1), ADMIN)
    assert first is not None
    assert again is not None
    assert later is not None
    assert first[0].id == again[0].id
    assert first[0].id != later[0].id


def test_an_approving_rule_gives_a_signed_approval_the_consumer_accepts() -> None:
    """The ticket names the rule, the approver the IdP; signed, the policy allows it."""
    result = due(emitted(AGENT), ADMIN, key=KEY)
    assert result is not None
    event = parse_event(result[0].model_dump_json(exclude_none=True).encode())
    approval = event.data.approval
    assert approval is not None
    assert (approval.ticket, approval.approved_by) == (
        "idp-group:CC Support Admins",
        "okta/acme-prod",
    )
    for held in ((), ("agent_basic",), ("admin_support",)):
        decision = evaluate(POLICY, event, held, active=True, now=NOW, approval_key=KEY)
        assert decision.allowed, held


def test_without_a_rule_a_privileged_role_is_refused_by_the_consumer() -> None:
    """No ticket, no approval: the consumer refuses the addition as approval_required."""
    plain = DesiredState(active=True, roles=("admin_security",))
    result = due(emitted(AGENT), plain, key=KEY)
    assert result is not None
    event = result[0]
    assert event.data.approval is None
    decision = evaluate(POLICY, event, ("agent_basic",), active=True, now=NOW, approval_key=KEY)
    assert decision.reason == "approval_required"


states = st.builds(
    DesiredState,
    active=st.booleans(),
    roles=st.sampled_from([(), ("agent_basic",), ("team_lead", "agent_basic")]),
)


@given(previous=states, desired=states)
def test_an_event_is_due_exactly_when_the_state_differs(
    previous: DesiredState, desired: DesiredState
) -> None:
    """Due iff the normalised desired state differs from what was last emitted; always valid."""
    normal = desired if desired.active else DesiredState(active=False)
    before = previous if previous.active else DesiredState(active=False)
    result = due(emitted(before), desired)
    assert (result is None) == (normal == before)
    if result is not None:
        parse_event(result[0].model_dump_json(exclude_none=True).encode())
        assert result[1] == emitted(normal, 1)
