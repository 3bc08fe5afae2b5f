"""Reactivation grants what the user will hold: an inactive user's roles are judged as new."""

from __future__ import annotations

from hypothesis import given

from consumer.approvals import approval_signature
from consumer.catalog import Policy
from consumer.events import Approval, EventType, RoleAssignment, RoleChangeData, RoleChangeEvent
from consumer.policy import evaluate
from tests.unit.test_policy import (
    APPROVAL,
    NOW,
    decide,
    holdings,
    policies,
    reactivation,
    role_lists,
)


def test_an_inactive_user_holding_a_privileged_role_is_not_reactivated_with_it() -> None:
    """admin held while disabled is not turned on without an approval: refused, and removed."""
    decision = decide(reactivation("admin"), ["admin"], active=False)
    assert (decision.allowed, decision.reason, decision.escalation) == (
        False,
        "approval_required",
        True,
    )
    assert (decision.active, decision.role_ids, decision.removed) == (None, (), {"admin"})


def test_a_refused_reactivation_reactivates_with_the_allowed_roles_only() -> None:
    """Without an approval for admin, the user comes back active with voice, and admin goes."""
    decision = decide(reactivation("voice", "admin"), ["voice", "admin"], active=False)
    assert (decision.allowed, decision.reason, decision.escalation) == (
        False,
        "approval_required",
        True,
    )
    assert (decision.active, decision.role_ids, decision.removed) == (True, ("voice",), {"admin"})
    assert decision.roles[0].primary
    assert decision.writes
    assert decision.detail == (
        "approval_required: privileged role 'admin' is added without an approval (ticket and"
        " approver); reactivated with the allowed roles only: voice; removals still applied: admin"
    )


def test_an_approved_reactivation_turns_every_role_on() -> None:
    """With an approval, the privileged role held while disabled is turned on again."""
    decision = decide(
        reactivation("voice", "admin", approval=APPROVAL), ["voice", "admin"], active=False
    )
    assert (decision.allowed, decision.active, decision.role_ids) == (
        True,
        True,
        ("voice", "admin"),
    )


def test_a_signed_reactivation_signs_every_privileged_role_it_turns_on() -> None:
    """With the key, the signed roles are all privileged roles the user will hold, held or not."""
    key = b"k"
    signature = approval_signature(
        key, user_id="u-1001", privileged_role_ids=["admin"], ticket="CHG-1", approved_by="secops"
    )
    signed = Approval(ticket="CHG-1", approved_by="secops", signature=signature)
    event = reactivation("admin", approval=signed)
    assert decide(event, ["admin"], active=False, approval_key=key).allowed
    unsigned = reactivation("admin", approval=Approval(ticket="CHG-1", approved_by="secops"))
    refused = decide(unsigned, ["admin"], active=False, approval_key=key)
    assert (refused.reason, refused.active) == ("approval_invalid", None)


def test_reactivating_an_active_user_is_judged_like_a_roles_change() -> None:
    """Nothing is turned on for a user already active: keeping admin needs no approval."""
    decision = decide(reactivation("admin"), ["admin"], active=True)
    assert (decision.allowed, decision.active, decision.role_ids) == (True, True, ("admin",))


def test_a_plain_role_that_inherits_a_privilege_is_refused_with_it() -> None:
    """helpdesk inherits admin: reactivating it unapproved turns nothing on and removes it."""
    decision = decide(reactivation("helpdesk", "voice"), ["helpdesk"], active=False)
    assert (decision.reason, decision.active, decision.role_ids) == (
        "approval_required",
        True,
        ("voice",),
    )
    assert decision.removed == {"helpdesk"}


def test_a_role_unknown_to_the_catalog_is_not_turned_on() -> None:
    """A role assigned by hand in CXone is an addition when the user is turned on: refused."""
    decision = decide(reactivation("agent", "ghost"), ["agent", "ghost"], active=False)
    assert (decision.reason, decision.escalation, decision.active, decision.role_ids) == (
        "unknown_role",
        True,
        True,
        ("agent",),
    )


def test_a_reactivation_breaking_a_rule_that_names_no_role_leaves_the_user_inactive() -> None:
    """Too many roles names none to drop: the user stays inactive with the held roles granted."""
    decision = decide(
        reactivation("agent", "voice", "reporting", "billing_auditor"),
        ["agent", "voice"],
        active=False,
    )
    assert (decision.reason, decision.escalation, decision.active) == (
        "too_many_roles",
        False,
        None,
    )
    assert (decision.role_ids, decision.removed, decision.writes) == (
        ("agent", "voice"),
        frozenset(),
        False,
    )


def reactivation_of(
    roles: tuple[RoleAssignment, ...], approval: Approval | None
) -> RoleChangeEvent:
    """An `idp.user.reactivated` event with these role assignments."""
    return RoleChangeEvent(
        specversion="1.0",
        id="evt-r",
        source="okta/test",
        type=EventType.REACTIVATED,
        data=RoleChangeData(user_id="u-1001", roles=roles, approval=approval),
    )


@given(policies(), role_lists(), holdings)
def test_an_unapproved_reactivation_never_turns_on_a_privilege_or_an_unknown_role(
    policy: Policy, roles: tuple[RoleAssignment, ...], current: frozenset[str]
) -> None:
    """Whatever the user held while inactive, what is turned on holds no privilege, nothing new."""
    decision = decide(reactivation_of(roles, None), sorted(current), policy, active=False)
    catalog = policy.catalog
    if decision.active:
        turned_on = catalog.effective_roles(decision.role_ids)
        assert not any(catalog.is_privileged(role_id) for role_id in turned_on)
        assert set(decision.role_ids) <= set(catalog)
        assert set(decision.role_ids) <= {role.role_id for role in roles}


@given(policies(), role_lists(), holdings)
def test_what_a_refused_reactivation_turns_on_passes_the_policy_on_its_own(
    policy: Policy, roles: tuple[RoleAssignment, ...], current: frozenset[str]
) -> None:
    """The allowed roles a refused reactivation keeps are allowed when asked for alone."""
    decision = decide(reactivation_of(roles, None), sorted(current), policy, active=False)
    if decision.allowed or not decision.active:
        return
    kept = tuple(role for role in roles if role.role_id in decision.role_ids)
    again = evaluate(policy, reactivation_of(kept, None), sorted(current), active=False, now=NOW)
    assert (again.allowed, again.role_ids) == (True, decision.role_ids)
