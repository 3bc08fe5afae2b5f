"""The pure core of the SCIM ingress: the IdP's view and the mapping -> a desired state."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from consumer.catalog import load_policy
from consumer.ingress.desired import DesiredState, IdpGroup, IdpUser, IdpView, desired_state

POLICY = load_policy(Path(__file__).parents[2] / "examples" / "policy.yaml")
GROUPS = (
    "CC Agents",
    "CC Voice Agents",
    "CC Team Leads",
    "CC Reporting",
    "CC Support Admins",
    "CC Security Admins",
    "Unmapped Staff",
)
ROLE_VALUES = ("Supervisor", "Billing Admin", "Unmapped Value")


def view(
    *, active: bool = True, groups: tuple[str, ...] = (), role_values: tuple[str, ...] = ()
) -> IdpView:
    """A view holding user u1 (jdoe) as a member of the named groups."""
    user = IdpUser("u1", "jdoe@example.com", None, active, frozenset(role_values))
    return IdpView(
        users={"u1": user},
        groups={
            f"g{index}": IdpGroup(f"g{index}", name, frozenset({"u1"}))
            for index, name in enumerate(groups)
        },
    )


def state(**kwargs: object) -> DesiredState | None:
    """The desired state of u1 in a view built from `kwargs`."""
    return desired_state(view(**kwargs), "u1", POLICY)  # type: ignore[arg-type]


def test_a_user_the_idp_does_not_have_has_no_desired_state() -> None:
    """A deleted (or never provisioned) user gives None, which the emitter treats as gone."""
    assert desired_state(view(), "nobody", POLICY) is None


def test_groups_map_to_roles_with_the_most_senior_declared_primary_first() -> None:
    """CC Agents and CC Team Leads both declare a primary: team_lead, the deeper, wins."""
    assert state(groups=("CC Agents", "CC Team Leads")) == DesiredState(
        active=True, roles=("team_lead", "agent_basic")
    )


def test_without_a_declared_primary_the_first_role_in_catalog_order_leads() -> None:
    """Roles come in catalog order when no entry declares a primary."""
    assert state(groups=("CC Reporting", "CC Voice Agents")) == DesiredState(
        active=True, roles=("agent_voice", "reporting_analyst")
    )


def test_pushed_role_values_map_like_groups() -> None:
    """An Entra app role pushed in User.roles grants its mapped roles."""
    assert state(role_values=("Supervisor",)) == DesiredState(active=True, roles=("supervisor",))


def test_unmapped_groups_and_values_are_misses_and_grant_nothing() -> None:
    """What the mapping does not name is reported as a miss, never as a role."""
    assert state(groups=("Unmapped Staff", "CC Agents"), role_values=("Unmapped Value",)) == (
        DesiredState(
            active=True,
            roles=("agent_basic",),
            misses=("group:Unmapped Staff", "role value:Unmapped Value"),
        )
    )


def test_an_inactive_user_wants_no_roles() -> None:
    """`active: false` makes the desired state inactive with no roles, whatever the groups."""
    assert state(active=False, groups=("CC Agents",)) == DesiredState(active=False)


def test_an_approving_group_carries_its_rule_as_the_ticket() -> None:
    """Membership of CC Support Admins (approves) approves admin_support."""
    assert state(groups=("CC Agents", "CC Support Admins")) == DesiredState(
        active=True, roles=("agent_basic", "admin_support"), ticket="idp-group:CC Support Admins"
    )


def test_a_privileged_role_from_a_plain_entry_leaves_the_change_unapproved() -> None:
    """CC Security Admins does not approve: no ticket, even beside an approving group."""
    desired = state(groups=("CC Support Admins", "CC Security Admins"))
    assert desired is not None
    assert (desired.roles, desired.ticket) == (("admin_support", "admin_security"), None)
    billing = state(role_values=("Billing Admin",))
    assert billing == DesiredState(active=True, roles=("billing_admin",))


def test_nested_groups_are_not_expanded() -> None:
    """Only a user's direct memberships count: a group inside a group grants its members nothing."""
    outer = IdpGroup("g1", "CC Agents", frozenset({"g2"}))
    inner = IdpGroup("g2", "Nested", frozenset({"u1"}))
    user = IdpUser("u1", "jdoe", None, True)
    result = desired_state(IdpView({"u1": user}, {"g1": outer, "g2": inner}), "u1", POLICY)
    assert result == DesiredState(active=True, misses=("group:Nested",))


memberships = st.sets(st.sampled_from(GROUPS))
values = st.sets(st.sampled_from(ROLE_VALUES))


@given(groups=memberships, role_values=values, dropped=st.sampled_from(GROUPS))
def test_removing_a_membership_never_adds_a_role(
    groups: set[str], role_values: set[str], dropped: str
) -> None:
    """Leaving a group can only take roles away."""
    before = state(groups=tuple(sorted(groups)), role_values=tuple(role_values))
    after = state(groups=tuple(sorted(groups - {dropped})), role_values=tuple(role_values))
    assert before is not None
    assert after is not None
    assert set(after.roles) <= set(before.roles)


@given(groups=st.lists(st.sampled_from(GROUPS), unique=True), role_values=values)
def test_the_same_view_in_any_order_gives_the_same_state(
    groups: list[str], role_values: set[str]
) -> None:
    """Group and value order do not matter: the state is a function of the view."""
    forward = state(groups=tuple(groups), role_values=tuple(role_values))
    backward = state(groups=tuple(reversed(groups)), role_values=tuple(sorted(role_values)))
    assert forward == backward


@given(groups=memberships, role_values=values)
def test_a_ticket_only_when_approving_entries_grant_every_privileged_role(
    groups: set[str], role_values: set[str]
) -> None:
    """A ticket is present exactly when the privileged access is all from approving entries."""
    desired = state(groups=tuple(groups), role_values=tuple(role_values))
    assert desired is not None
    catalog = POLICY.catalog
    privileged = {r for r in catalog.effective_roles(desired.roles) if catalog.is_privileged(r)}
    unapproved = bool(groups & {"CC Security Admins"} or role_values & {"Billing Admin"})
    assert (desired.ticket is not None) == (bool(privileged) and not unapproved)
    assert len(set(desired.roles)) == len(desired.roles)
