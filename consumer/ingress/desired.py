"""What the IdP says a user should hold in CXone: the IdP's view + the mapping -> `DesiredState`.

Pure: no I/O, no clock. Roles come from the groups a user is a member of and the role values the
IdP pushes in the user's `roles`, mapped by the policy file's `idp_mapping`; the same view always
gives the same state, whatever order the users, groups and members arrived in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consumer.catalog import Policy
from consumer.idp_mapping import IdpMapping, MappingEntry

__all__ = ["DesiredState", "IdpGroup", "IdpUser", "IdpView", "desired_state"]

# The longest approval ticket the event contract accepts.
MAX_TICKET = 128


@dataclass(frozen=True, slots=True)
class IdpUser:
    """A user as the IdP provisioned it: only what decides CXone roles and `active`."""

    id: str
    user_name: str
    external_id: str | None
    active: bool
    role_values: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class IdpGroup:
    """A group as the IdP provisioned it: its name and the ids of its user members."""

    id: str
    display_name: str
    member_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class IdpView:
    """Every user and group the IdP provisioned, by their id here."""

    users: Mapping[str, IdpUser]
    groups: Mapping[str, IdpGroup]

    def groups_of(self, user_id: str) -> tuple[IdpGroup, ...]:
        """The groups the user is a direct member of, by display name then id."""
        return tuple(
            sorted(
                (group for group in self.groups.values() if user_id in group.member_ids),
                key=lambda group: (group.display_name, group.id),
            )
        )


@dataclass(frozen=True, slots=True)
class DesiredState:
    """The CXone state the IdP wants for one user; inactive users hold no roles."""

    active: bool
    # Primary first, then catalog order.
    roles: tuple[str, ...] = ()
    # The approval rule: which approving entries grant every privileged role, or None.
    ticket: str | None = None
    # Groups and role values of the user that the mapping does not name ("group:X").
    misses: tuple[str, ...] = ()

    @property
    def primary(self) -> str | None:
        """The primary role: the first one."""
        return self.roles[0] if self.roles else None


INACTIVE = DesiredState(active=False)


def desired_state(view: IdpView, user_id: str, policy: Policy) -> DesiredState | None:
    """The state the IdP wants for a user; None when the IdP has no such user (deleted)."""
    user = view.users.get(user_id)
    if user is None:
        return None
    mapping = policy.idp_mapping or IdpMapping(groups={}, role_values={})
    matched: list[tuple[str, MappingEntry]] = []
    misses: list[str] = []
    for group in view.groups_of(user_id):
        entry = mapping.groups.get(group.display_name)
        if entry is None:
            misses.append(f"group:{group.display_name}")
        else:
            matched.append((f"idp-group:{group.display_name}", entry))
    for value in sorted(user.role_values):
        entry = mapping.role_values.get(value)
        if entry is None:
            misses.append(f"role value:{value}")
        else:
            matched.append((f"idp-role:{value}", entry))
    if not user.active:
        return DesiredState(active=False, misses=tuple(dict.fromkeys(misses)))
    return DesiredState(
        active=True,
        roles=_ordered_roles(policy, matched),
        ticket=_ticket(policy, matched),
        misses=tuple(dict.fromkeys(misses)),
    )


def _ordered_roles(policy: Policy, matched: list[tuple[str, MappingEntry]]) -> tuple[str, ...]:
    """Every granted role once: the primary first, then the rest in catalog order.

    The primary is the declared primary with the longest inheritance chain (the most senior:
    a team lead's "CC Team Leads" wins over "CC Agents"), ties going to the name that sorts
    first; without any declared primary, the first granted role in catalog order.
    """
    catalog = policy.catalog
    granted = {role_id for _, entry in matched for role_id in entry.roles}
    in_catalog_order = [role_id for role_id in catalog if role_id in granted]
    declared = [
        (-catalog.depth(entry.primary), name, entry.primary)
        for name, entry in matched
        if entry.primary is not None
    ]
    if not declared:
        return tuple(in_catalog_order)
    primary = min(declared)[2]
    return (primary, *(role_id for role_id in in_catalog_order if role_id != primary))


def _ticket(policy: Policy, matched: list[tuple[str, MappingEntry]]) -> str | None:
    """The approval rule when approving entries grant every privileged role, else None.

    All or nothing: a privileged role from an entry that does not approve leaves the whole
    change unapproved, so the consumer refuses its additions, as for any unapproved grant.
    """
    catalog = policy.catalog

    def privileged(entry: MappingEntry) -> frozenset[str]:
        return frozenset(
            r for r in catalog.effective_roles(entry.roles) if catalog.is_privileged(r)
        )

    needed = frozenset().union(*(privileged(entry) for _, entry in matched))
    if not needed:
        return None
    approving = [(name, entry) for name, entry in matched if entry.approves]
    covered = frozenset().union(*(privileged(entry) for _, entry in approving))
    if not needed <= covered:
        return None
    names = [name for name, entry in approving if privileged(entry) & needed]
    return _bounded_ticket(names)


def _bounded_ticket(names: list[str]) -> str:
    """The rule names, joined; cut to what a ticket may hold, saying how many were left out."""
    joined = ", ".join(names)
    if len(joined) <= MAX_TICKET:
        return joined
    for kept in range(len(names) - 1, 0, -1):
        text = f"{', '.join(names[:kept])} +{len(names) - kept} more"
        if len(text) <= MAX_TICKET:
            return text
    more = f" +{len(names) - 1} more" if len(names) > 1 else ""
    return names[0][: MAX_TICKET - len(more) - 1] + "…" + more
