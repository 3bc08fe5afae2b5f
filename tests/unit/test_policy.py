"""The least-privilege policy: one test per rule, revocation safety, and its invariants."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.catalog import Policy, RoleCatalog, RoleDefinition, parse_policy
from consumer.events import Approval, EventType, RoleAssignment, RoleChangeData, RoleChangeEvent
from consumer.policy import Decision, Reason, Violation, evaluate
from consumer.scim.mapping import DesiredRole

APPROVAL = Approval(ticket="CHG-1234", approved_by="secops")

POLICY = parse_policy(
    {
        "max_roles_per_user": 3,
        "max_hierarchy_depth": 3,
        "roles": {
            "agent": {"display_name": "Standard Agent"},
            "voice": {"display_name": "Voice Agent", "inherits_from": ["agent"]},
            "lead": {"display_name": "Team Lead", "inherits_from": ["voice"]},
            "floor": {"display_name": "Floor Manager", "inherits_from": ["lead"]},
            "admin": {
                "display_name": "Support Admin",
                "inherits_from": ["agent"],
                "privileged": True,
            },
            "helpdesk": {"display_name": "Helpdesk", "inherits_from": ["admin"]},
            "billing_admin": {"display_name": "Billing Admin", "privileged": True},
            "billing_auditor": {"display_name": "Billing Auditor"},
            "reporting": {"display_name": "Reporting"},
        },
        "separation_of_duties": [["billing_admin", "billing_auditor"], ["admin", "reporting"]],
    }
)


def role(
    role_id: str, *, primary: bool = False, inherits_from: Iterable[str] | None = None
) -> RoleAssignment:
    """A role assignment as the IdP would send it."""
    return RoleAssignment(
        role_id=role_id,
        primary=primary,
        inherits_from=None if inherits_from is None else tuple(inherits_from),
    )


def change(*roles: RoleAssignment | str, approval: Approval | None = None) -> RoleChangeEvent:
    """An `idp.user.roles.changed` event for one user with the given desired roles."""
    return RoleChangeEvent(
        specversion="1.0",
        id="evt-1",
        source="okta/test",
        type=EventType.ROLES_CHANGED,
        data=RoleChangeData(
            user_id="u-1001",
            roles=tuple(item if isinstance(item, RoleAssignment) else role(item) for item in roles),
            approval=approval,
        ),
    )


NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


def decide(
    event: RoleChangeEvent,
    current: Collection[str] = (),
    policy: Policy = POLICY,
    *,
    active: bool = True,
    approval_key: bytes | None = None,
) -> Decision:
    """The policy's decision about `event` for a user holding `current`, judged at NOW."""
    return evaluate(
        policy, event, tuple(current), active=active, now=NOW, approval_key=approval_key
    )


def reasons(decision: Decision) -> list[str]:
    """The reason codes of a decision's failures, in reported order."""
    return [failure.reason.value for failure in decision.failures]


def test_allowed_change_writes_catalog_names_in_event_order() -> None:
    """An allowed change lists its roles in event order, named by the catalog, not the event."""
    named = RoleAssignment(role_id="voice", display_name="Whatever the IdP says")
    decision = decide(change("agent", named), current=["agent", "reporting"])
    assert decision.allowed
    assert decision.roles == (
        DesiredRole("agent", "Standard Agent", primary=True),
        DesiredRole("voice", "Voice Agent", primary=False),
    )
    assert decision.added == {"voice"}
    assert decision.removed == {"reporting"}
    assert (decision.reason, decision.detail, decision.escalation) == (None, None, False)
    assert not decision.is_revocation


def test_primary_is_the_one_the_event_marks() -> None:
    """The role marked primary in the event is the only primary one."""
    decision = decide(change("agent", role("voice", primary=True)))
    assert [(r.value, r.primary) for r in decision.roles] == [("agent", False), ("voice", True)]


def test_primary_defaults_to_the_first_listed() -> None:
    """Without a marked primary, the first listed role becomes primary."""
    decision = decide(change("reporting", "agent"))
    assert [(r.value, r.primary) for r in decision.roles] == [
        ("reporting", True),
        ("agent", False),
    ]


def test_unknown_role_is_an_escalation() -> None:
    """A role missing from the catalog is refused as an escalation and nothing is added."""
    decision = decide(change("agent", "root_everything"), current=["agent"])
    assert not decision.allowed
    assert decision.reason == "unknown_role"
    assert decision.escalation
    assert decision.roles == (DesiredRole("agent", "Standard Agent", primary=True),)
    assert (decision.added, decision.removed, decision.writes) == (frozenset(), frozenset(), False)
    assert decision.failures == (
        Violation(
            Reason.UNKNOWN_ROLE,
            "role 'root_everything' is not in the catalog",
            ("root_everything",),
        ),
    )


def test_new_privileged_role_without_approval_is_an_escalation() -> None:
    """Adding a privileged role the user lacks, with no approval, is refused as an escalation."""
    decision = decide(change("agent", "admin"), current=["agent"])
    assert not decision.allowed
    assert decision.reason == "approval_required"
    assert decision.escalation
    assert decision.detail == (
        "approval_required: privileged role 'admin' is added without an approval"
        " (ticket and approver)"
    )


def test_new_privileged_role_with_approval_is_allowed() -> None:
    """The same addition with a ticket and approver goes through."""
    decision = decide(change("agent", "admin", approval=APPROVAL), current=["agent"])
    assert decision.allowed
    assert decision.added == {"admin"}


def test_keeping_a_held_privileged_role_needs_no_approval() -> None:
    """A privileged role the user already holds may stay without an approval."""
    decision = decide(change("admin", "voice"), current=["admin"])
    assert decision.allowed
    assert decision.added == {"voice"}


def test_privileged_role_gained_by_inheritance_needs_approval() -> None:
    """A plain role that inherits a privileged one needs the same approval."""
    decision = decide(change("helpdesk"), current=["agent"])
    assert reasons(decision) == ["approval_required"]
    assert "privileged role 'admin', inherited through helpdesk," in (decision.detail or "")


def test_privileged_role_already_held_by_inheritance_needs_no_approval() -> None:
    """Assigning directly a privileged role the user already inherits grants nothing new."""
    decision = decide(change("helpdesk", "admin"), current=["helpdesk"])
    assert decision.allowed
    assert decision.added == {"admin"}


def test_too_many_roles_is_refused() -> None:
    """More roles than max_roles_per_user is refused, not as an escalation."""
    decision = decide(change("agent", "voice", "reporting", "billing_auditor"), current=["agent"])
    assert decision.reason == "too_many_roles"
    assert not decision.escalation
    assert decision.detail == "too_many_roles: 4 roles, max_roles_per_user is 3"


def test_role_deeper_than_the_limit_is_refused() -> None:
    """A catalog role whose chain is longer than max_hierarchy_depth cannot be assigned."""
    decision = decide(change("floor"))
    assert decision.reason == "hierarchy_too_deep"
    assert decision.detail == (
        "hierarchy_too_deep: role 'floor' has an inheritance chain of 4 roles"
        " (floor -> lead -> voice -> agent), max_hierarchy_depth is 3"
    )


def test_role_at_the_depth_limit_is_allowed() -> None:
    """A chain exactly as long as the limit is fine."""
    assert decide(change("lead")).allowed


def test_declared_inheritance_that_differs_from_the_catalog_is_refused() -> None:
    """An event that claims a different inheritance than the catalog is refused."""
    decision = decide(change(role("voice", inherits_from=["reporting"])))
    assert decision.reason == "inheritance_mismatch"
    assert decision.detail == (
        "inheritance_mismatch: role 'voice' declares inherits_from [reporting]"
        " but the catalog says [agent]"
    )


def test_declared_inheritance_that_matches_as_a_set_is_allowed() -> None:
    """A declaration equal to the catalog, in any order, is accepted."""
    assert decide(
        change(role("voice", inherits_from=["agent"]), role("agent", inherits_from=[]))
    ).allowed


def test_declared_inheritance_cycle_is_refused() -> None:
    """Declared inherits_from that loop back are reported as a cycle, beside the mismatches."""
    decision = decide(
        change(role("agent", inherits_from=["voice"]), role("voice", inherits_from=["agent"]))
    )
    assert reasons(decision) == ["inheritance_cycle", "inheritance_mismatch"]
    assert (
        decision.failures[0].detail
        == "the declared inherits_from form a cycle: agent -> voice -> agent"
    )


def test_sod_pair_held_directly_is_refused() -> None:
    """Holding both roles of a separation_of_duties pair is refused."""
    decision = decide(change("billing_admin", "billing_auditor", approval=APPROVAL))
    assert decision.reason == "sod_conflict"
    assert decision.failures[0].role_ids == ("billing_admin", "billing_auditor")


def test_sod_pair_held_through_inheritance_is_refused() -> None:
    """A pair completed by an inherited role counts as held."""
    decision = decide(change("helpdesk", "reporting"), current=["admin"])
    assert reasons(decision) == ["sod_conflict"]
    assert decision.detail == (
        "sod_conflict: the user's effective roles include both 'admin' and 'reporting',"
        " a separation_of_duties pair"
    )


def test_escalations_are_reported_first_and_detail_lists_all() -> None:
    """With several failures the escalation reason leads and the detail lists every one."""
    decision = decide(change("reporting", "floor", "ghost", "billing_admin"), current=[])
    assert reasons(decision) == [
        "unknown_role",
        "approval_required",
        "too_many_roles",
        "hierarchy_too_deep",
    ]
    assert decision.reason == "unknown_role"
    assert decision.escalation
    assert decision.detail is not None
    assert decision.detail.count("; ") == 3


def test_removal_that_still_breaks_a_limit_is_allowed() -> None:
    """Going from 5 roles to 4 with a limit of 3 is allowed, and the breach is recorded."""
    held = ["agent", "voice", "reporting", "billing_auditor", "lead"]
    decision = decide(change("agent", "voice", "reporting", "billing_auditor"), current=held)
    assert decision.allowed
    assert decision.is_revocation
    assert decision.removed == {"lead"}
    assert decision.added == frozenset()
    assert decision.failures == ()
    assert [v.reason for v in decision.remaining_violations] == [Reason.TOO_MANY_ROLES]
    assert decision.detail == (
        "allowed because it adds no access; still broken: too_many_roles: 4 roles,"
        " max_roles_per_user is 3"
    )


def test_removal_keeping_a_sod_conflict_and_a_too_deep_role_is_allowed() -> None:
    """A pure removal goes through even when what remains breaks several rules."""
    held = ["billing_admin", "billing_auditor", "floor", "reporting"]
    decision = decide(change("billing_admin", "billing_auditor", "floor"), current=held)
    assert decision.allowed
    assert [v.reason.value for v in decision.remaining_violations] == [
        "hierarchy_too_deep",
        "sod_conflict",
    ]


def test_removal_keeps_a_held_role_unknown_to_the_catalog_as_listed() -> None:
    """A held role the catalog lacks stays as the event lists it and is no escalation."""
    legacy = RoleAssignment(role_id="legacy_role", display_name="Legacy")
    decision = decide(change(legacy, "agent"), current=["legacy_role", "agent", "voice"])
    assert decision.allowed
    assert decision.roles == (
        DesiredRole("legacy_role", "Legacy", primary=True),
        DesiredRole("agent", "Standard Agent", primary=False),
    )
    assert decision.remaining_violations == ()


def test_removing_every_role_is_allowed() -> None:
    """An empty desired role set removes everything and writes no role."""
    decision = decide(change(), current=["admin", "floor"])
    assert decision.allowed
    assert decision.roles == ()
    assert decision.removed == {"admin", "floor"}
    assert decision.is_revocation


def test_same_roles_again_is_allowed_but_not_a_revocation() -> None:
    """Re-sending the held roles is allowed and removes nothing."""
    decision = decide(change("agent", "admin"), current=["admin", "agent"])
    assert decision.allowed
    assert (decision.added, decision.removed, decision.is_revocation) == (
        frozenset(),
        frozenset(),
        False,
    )


def test_deactivation_is_always_allowed_and_removes_everything() -> None:
    """A deactivation goes through whatever the user holds, writing no role."""
    event = deactivation()
    decision = decide(event, current=["floor", "ghost", "admin"])
    assert decision.allowed
    assert decision.roles == ()
    assert decision.removed == {"floor", "ghost", "admin"}
    assert decision.is_revocation
    assert decision.detail is None


def test_mixed_change_is_judged_in_full() -> None:
    """A change that removes some roles but adds one is checked; refused, it still removes."""
    decision = decide(change("billing_admin"), current=["agent", "voice"])
    assert not decision.allowed
    assert decision.reason == "approval_required"
    assert decision.added == frozenset()
    assert decision.removed == {"agent", "voice"}
    assert decision.roles == ()
    assert (decision.removes_access, decision.is_revocation, decision.writes) == (True, True, True)


UNKNOWN = ("ghost", "phantom")


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Random acyclic catalogs with privileged roles, limits and satisfiable SoD pairs."""
    ids = [f"r{index}" for index in range(draw(st.integers(1, 6)))]
    roles = {
        role_id: RoleDefinition(
            display_name=f"Role {role_id}",
            inherits_from=tuple(
                draw(st.lists(st.sampled_from(ids[:index]), unique=True, max_size=2))
            )
            if index
            else (),
            privileged=draw(st.booleans()),
        )
        for index, role_id in enumerate(ids)
    }
    catalog = RoleCatalog(roles)
    candidates = [
        (first, second)
        for first in ids
        for second in ids
        if first < second and not any({first, second} <= catalog.effective_roles([r]) for r in ids)
    ]
    pairs = (
        draw(st.lists(st.sampled_from(candidates), unique=True, max_size=2)) if candidates else []
    )
    return Policy(
        catalog=catalog,
        max_roles_per_user=draw(st.integers(1, 4)),
        max_hierarchy_depth=draw(st.integers(1, 4)),
        separation_of_duties=tuple(pairs),
    )


role_ids = st.sampled_from([f"r{index}" for index in range(6)] + list(UNKNOWN))


@st.composite
def role_lists(draw: st.DrawFn) -> tuple[RoleAssignment, ...]:
    """Random desired role lists, with declared inheritance and at most one primary."""
    ids = draw(st.lists(role_ids, unique=True, max_size=6))
    primary = draw(st.none() | st.integers(0, 5))
    return tuple(
        RoleAssignment(
            role_id=role_id,
            primary=index == primary,
            inherits_from=draw(st.none() | st.lists(role_ids, unique=True, max_size=2).map(tuple)),
        )
        for index, role_id in enumerate(ids)
    )


approvals = st.none() | st.just(APPROVAL)
holdings = st.frozensets(role_ids, max_size=6)


@given(policies(), role_lists(), holdings, approvals)
def test_allowed_decision_never_adds_a_role_outside_the_catalog(
    policy: Policy,
    roles: tuple[RoleAssignment, ...],
    current: frozenset[str],
    approval: Approval | None,
) -> None:
    """Whatever the input, an allowed decision adds only catalog roles."""
    decision = decide(change(*roles, approval=approval), current, policy)
    assert all(role_id in policy.catalog for role_id in decision.added)
    assert all(r.value in policy.catalog or r.value in current for r in decision.roles)
    if not decision.allowed:
        assert set(decision.role_ids) <= current


@given(policies(), role_lists(), holdings)
def test_allowed_decision_never_adds_privilege_without_approval(
    policy: Policy, roles: tuple[RoleAssignment, ...], current: frozenset[str]
) -> None:
    """Without an approval, no decision grants a privileged role the user lacked."""
    decision = decide(change(*roles), current, policy)
    catalog = policy.catalog
    gained = catalog.effective_roles(decision.role_ids) - catalog.effective_roles(current)
    assert not any(catalog.is_privileged(role_id) for role_id in gained)


@given(policies(), role_lists(), holdings, approvals)
def test_pure_removal_is_never_rejected(
    policy: Policy,
    roles: tuple[RoleAssignment, ...],
    extra: frozenset[str],
    approval: Approval | None,
) -> None:
    """A change that only keeps or removes held roles is always allowed."""
    current = extra | {r.role_id for r in roles}
    decision = decide(change(*roles, approval=approval), current, policy)
    assert decision.allowed
    assert decision.failures == ()
    assert decision.role_ids == tuple(r.role_id for r in roles)


@given(policies(), role_lists(), holdings, approvals, st.data())
def test_decision_does_not_depend_on_role_order(
    policy: Policy,
    roles: tuple[RoleAssignment, ...],
    current: frozenset[str],
    approval: Approval | None,
    data: st.DataObject,
) -> None:
    """Shuffling the event's or the held roles changes neither the verdict nor what is written."""
    shuffled = data.draw(st.permutations(roles))
    held = sorted(current)
    first = decide(change(*roles, approval=approval), held, policy)
    second = decide(change(*shuffled, approval=approval), data.draw(st.permutations(held)), policy)
    assert (first.allowed, first.reason, first.escalation) == (
        second.allowed,
        second.reason,
        second.escalation,
    )
    assert set(first.failures) == set(second.failures)
    assert set(first.remaining_violations) == set(second.remaining_violations)
    assert set(first.role_ids) == set(second.role_ids)
    assert (first.added, first.removed, first.removes_access, first.adds_access) == (
        second.added,
        second.removed,
        second.removes_access,
        second.adds_access,
    )


@given(policies(), role_lists(), holdings, approvals)
def test_allowed_roles_have_exactly_one_primary(
    policy: Policy,
    roles: tuple[RoleAssignment, ...],
    current: frozenset[str],
    approval: Approval | None,
) -> None:
    """Whenever allowed roles are written, exactly one is primary, the marked one if any."""
    decision = decide(change(*roles, approval=approval), current, policy)
    if decision.allowed and decision.roles:
        primaries = [r.value for r in decision.roles if r.primary]
        marked = [r.role_id for r in roles if r.primary]
        assert primaries == (marked or [roles[0].role_id])


@pytest.mark.parametrize("held", [[], ["admin"], ["ghost", "floor"]])
def test_deactivation_is_allowed_for_any_holding(held: list[str]) -> None:
    """Deactivation is allowed whatever the user holds."""
    event = deactivation("admin")
    decision = decide(event, current=held)
    assert (decision.allowed, decision.roles, decision.removed) == (True, (), frozenset(held))
    if decision.roles:
        assert sum(r.primary for r in decision.roles) == 1


def deactivation(*roles: str) -> RoleChangeEvent:
    """An `idp.user.deactivated` event for one user, carrying the given roles (usually none)."""
    return RoleChangeEvent(
        specversion="1.0",
        id="evt-d",
        source="okta/test",
        type=EventType.DEACTIVATED,
        data=RoleChangeData(user_id="u-1001", roles=tuple(role(r) for r in roles) or None),
    )


def reactivation(*roles: str, approval: Approval | None = None) -> RoleChangeEvent:
    """An `idp.user.reactivated` event for one user with the given roles."""
    return RoleChangeEvent(
        specversion="1.0",
        id="evt-r",
        source="okta/test",
        type=EventType.REACTIVATED,
        data=RoleChangeData(
            user_id="u-1001", roles=tuple(role(r) for r in roles), approval=approval
        ),
    )


def test_falling_back_to_an_inherited_default_role_is_a_revocation() -> None:
    """[lead, admin] -> [agent] adds no access (agent was inherited), takes some: a revocation."""
    decision = decide(change("agent"), current=["lead", "admin"])
    assert decision.allowed
    assert decision.added == {"agent"}
    assert decision.removed == {"lead", "admin"}
    assert (decision.removes_access, decision.adds_access, decision.is_revocation) == (
        True,
        False,
        True,
    )


def test_a_change_that_removes_and_adds_access_is_counted_but_not_a_pure_revocation() -> None:
    """Swapping admin for voice removes admin's access and adds voice's: the guard counts it."""
    decision = decide(change("voice"), current=["admin"])
    assert decision.allowed
    assert (decision.removes_access, decision.adds_access, decision.is_revocation) == (
        True,
        True,
        False,
    )


def test_a_kept_uncatalogued_role_is_no_escalation_and_the_removal_applies() -> None:
    """Holding a hand-made role plus admin, sent [custom, agent], keeps custom and loses admin."""
    decision = decide(change("custom", "agent"), current=["custom", "admin"])
    assert decision.allowed
    assert decision.role_ids == ("custom", "agent")
    assert decision.removed == {"admin"}
    assert decision.is_revocation


def test_an_added_uncatalogued_role_is_still_an_escalation() -> None:
    """A role outside the catalog that the user does not hold is refused as unknown_role."""
    decision = decide(change("custom", "agent"), current=["agent"])
    assert (decision.allowed, decision.reason, decision.escalation) == (
        False,
        "unknown_role",
        True,
    )


DESIGN_POLICY = parse_policy(
    {
        "max_roles_per_user": 5,
        "max_hierarchy_depth": 3,
        "roles": {
            "agent_basic": {"display_name": "Standard Agent"},
            "reporting_viewer": {"display_name": "Reporting Viewer"},
            "site_director": {
                "display_name": "Site Director",
                "inherits_from": ["agent_basic"],
                "privileged": True,
            },
            "billing_auditor": {
                "display_name": "Billing Auditor",
                "inherits_from": ["reporting_viewer"],
            },
            "billing_admin": {"display_name": "Billing Administrator", "privileged": True},
        },
        "separation_of_duties": [["billing_admin", "billing_auditor"]],
    }
)


def test_refused_change_keeps_a_held_role_the_desired_roles_inherit() -> None:
    """Holding agent_basic, a refused [site_director] keeps agent_basic, which it inherits."""
    decision = decide(change("site_director"), ["agent_basic"], DESIGN_POLICY)
    assert (decision.allowed, decision.reason) == (False, "approval_required")
    assert decision.roles == (DesiredRole("agent_basic", "Standard Agent", primary=True),)
    assert (decision.removed, decision.writes) == (frozenset(), False)


def test_refused_change_removes_a_held_role_the_desired_roles_do_not_grant() -> None:
    """Holding agent_basic, a refused [billing_admin, billing_auditor] loses agent_basic."""
    decision = decide(
        change("billing_admin", "billing_auditor", approval=APPROVAL),
        ["agent_basic", "reporting_viewer"],
        DESIGN_POLICY,
    )
    assert (decision.allowed, decision.reason, decision.escalation) == (
        False,
        "sod_conflict",
        False,
    )
    assert decision.role_ids == ("reporting_viewer",)
    assert decision.roles[0].primary
    assert decision.removed == {"agent_basic"}
    assert decision.added == frozenset()
    assert (decision.writes, decision.removes_access, decision.is_revocation) == (True, True, True)
    assert decision.detail == (
        "sod_conflict: the user's effective roles include both 'billing_admin' and"
        " 'billing_auditor', a separation_of_duties pair; removals still applied: agent_basic"
    )


def test_reactivation_is_judged_like_a_roles_change_and_sets_active() -> None:
    """An allowed reactivation writes its roles and active=true."""
    decision = decide(reactivation("agent", "voice"))
    assert (decision.allowed, decision.role_ids, decision.active) == (
        True,
        ("agent", "voice"),
        True,
    )


def test_refused_reactivation_leaves_the_user_inactive() -> None:
    """A reactivation asking for a privileged role without approval reactivates nothing."""
    decision = decide(reactivation("admin"), active=False)
    assert (decision.allowed, decision.reason, decision.active, decision.roles) == (
        False,
        "approval_required",
        None,
        (),
    )


def test_roles_change_keeps_active_and_deactivation_clears_it() -> None:
    """A roles change leaves `active` alone; a deactivation sets it false."""
    assert decide(change("agent")).active is None
    assert decide(deactivation(), ["agent"]).active is False


@given(policies(), role_lists(), holdings, approvals)
def test_every_removal_of_an_event_is_applied(
    policy: Policy,
    roles: tuple[RoleAssignment, ...],
    current: frozenset[str],
    approval: Approval | None,
) -> None:
    """No held role the desired roles do not grant, directly or by inheritance, survives."""
    decision = decide(change(*roles, approval=approval), current, policy)
    wanted = [r.role_id for r in roles]
    granted = policy.catalog.effective_roles(wanted) | set(wanted)
    assert set(decision.role_ids) <= granted
    assert decision.removed == current - set(decision.role_ids)


@given(policies(), role_lists(), holdings, st.none() | st.text(max_size=70))
def test_with_a_key_no_privilege_is_added_on_an_unsigned_or_forged_approval(
    policy: Policy,
    roles: tuple[RoleAssignment, ...],
    current: frozenset[str],
    signature: str | None,
) -> None:
    """With APPROVAL_HMAC_KEY, an approval that is not signed with it never adds a privilege."""
    approval = Approval(ticket="CHG-1", approved_by="secops", signature=signature or None)
    decision = decide(change(*roles, approval=approval), current, policy, approval_key=b"k")
    catalog = policy.catalog
    gained = catalog.effective_roles(decision.role_ids) - catalog.effective_roles(current)
    assert not any(catalog.is_privileged(role_id) for role_id in gained)
