"""The least-privilege policy: (policy, event, the user's current roles) -> a frozen `Decision`.

Pure: no I/O, no logging, no clock. The caller counts escalation rejections in the metrics and
turns a refused decision into an audit result.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum

from consumer.catalog import Policy, find_cycle
from consumer.events import Approval, RoleAssignment, RoleChangeEvent

__all__ = ["Decision", "DesiredRole", "Policy", "Reason", "Violation", "evaluate"]


class Reason(StrEnum):
    """The audit reason codes of a refused change, in the order they are reported."""

    UNKNOWN_ROLE = "unknown_role"
    APPROVAL_REQUIRED = "approval_required"
    TOO_MANY_ROLES = "too_many_roles"
    HIERARCHY_TOO_DEEP = "hierarchy_too_deep"
    INHERITANCE_CYCLE = "inheritance_cycle"
    INHERITANCE_MISMATCH = "inheritance_mismatch"
    SOD_CONFLICT = "sod_conflict"

    @property
    def escalation(self) -> bool:
        """Whether this reason marks an attempt to gain access the catalog does not grant."""
        return self in (Reason.UNKNOWN_ROLE, Reason.APPROVAL_REQUIRED)


_RANK = {reason: rank for rank, reason in enumerate(Reason)}


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: its reason code, the roles involved and a sentence for the audit."""

    reason: Reason
    detail: str
    role_ids: tuple[str, ...] = ()

    @property
    def escalation(self) -> bool:
        """Whether the broken rule is an escalation attempt."""
        return self.reason.escalation

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class DesiredRole:
    """One role to write to CXone; the name comes from the catalog, not from the event."""

    role_id: str
    # None only for a role the catalog does not know that a revocation lets the user keep.
    display_name: str | None
    primary: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided about one event, and exactly which roles to write."""

    allowed: bool
    # In write order, exactly one primary when any; empty when refused (nothing to write).
    roles: tuple[DesiredRole, ...] = ()
    # Every broken rule of a refused change, escalations first.
    failures: tuple[Violation, ...] = ()
    # Rules still broken after an allowed change that adds no role, kept for the audit detail.
    remaining_violations: tuple[Violation, ...] = ()
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    # Takes access away and adds none: a deactivation, or a change that only removes roles.
    is_revocation: bool = False

    @property
    def reason(self) -> str | None:
        """The audit reason code of a refused change: the first failure, escalations first."""
        return self.failures[0].reason.value if self.failures else None

    @property
    def escalation(self) -> bool:
        """Whether the change was refused as an escalation attempt."""
        return any(failure.escalation for failure in self.failures)

    @property
    def detail(self) -> str | None:
        """Every failure, or every rule an allowed removal leaves broken, as one audit line."""
        if self.failures:
            return "; ".join(str(failure) for failure in self.failures)
        if self.remaining_violations:
            still = "; ".join(str(violation) for violation in self.remaining_violations)
            return f"allowed because it adds no role; still broken: {still}"
        return None

    @property
    def role_ids(self) -> tuple[str, ...]:
        """The ids of the roles to write, in order."""
        return tuple(role.role_id for role in self.roles)


@dataclass(frozen=True, slots=True)
class _Change:
    desired: tuple[RoleAssignment, ...]
    wanted: frozenset[str]
    current: frozenset[str]
    approval: Approval | None


def evaluate(policy: Policy, event: RoleChangeEvent, current_roles: Collection[str]) -> Decision:
    """Decide whether an event's role change may be written, and which roles to write."""
    current = frozenset(current_roles)
    if event.is_deactivation:
        return Decision(allowed=True, removed=current, is_revocation=True)
    desired = event.desired_roles
    wanted = frozenset(role.role_id for role in desired)
    change = _Change(desired, wanted, current, event.data.approval)
    violations = tuple(
        sorted(
            (violation for rule in _RULES for violation in rule(policy, change)),
            key=lambda violation: (_RANK[violation.reason], violation.role_ids, violation.detail),
        )
    )
    added = wanted - current
    removed = current - wanted
    # Taking access away (or keeping what is held) never widens it, so no limit the user
    # already breaks may block it: refusing would keep the excess access in place.
    if not added:
        return Decision(
            allowed=True,
            roles=_roles_to_write(policy, desired),
            remaining_violations=violations,
            removed=removed,
            is_revocation=bool(removed),
        )
    if violations:
        return Decision(allowed=False, failures=violations, added=added, removed=removed)
    return Decision(
        allowed=True, roles=_roles_to_write(policy, desired), added=added, removed=removed
    )


def _roles_to_write(policy: Policy, desired: tuple[RoleAssignment, ...]) -> tuple[DesiredRole, ...]:
    if not desired:
        return ()
    marked = [role.role_id for role in desired if role.primary]
    primary = marked[0] if marked else desired[0].role_id
    catalog = policy.catalog
    return tuple(
        DesiredRole(
            role_id=role.role_id,
            display_name=(
                catalog.display_name(role.role_id) if role.role_id in catalog else role.display_name
            ),
            primary=role.role_id == primary,
        )
        for role in desired
    )


def _unknown_roles(policy: Policy, change: _Change) -> Iterator[Violation]:
    for role_id in sorted(change.wanted - set(policy.catalog)):
        yield Violation(Reason.UNKNOWN_ROLE, f"role {role_id!r} is not in the catalog", (role_id,))


def _unapproved_privileges(policy: Policy, change: _Change) -> Iterator[Violation]:
    if change.approval is not None:
        return
    catalog = policy.catalog
    # Compared on effective roles: a plain role that inherits a privileged one grants the same
    # access, and a privileged role already held through inheritance is nothing new.
    gained = catalog.effective_roles(change.wanted) - catalog.effective_roles(change.current)
    for role_id in sorted(gained):
        if not catalog.is_privileged(role_id):
            continue
        through = sorted(
            holder
            for holder in change.wanted
            if holder in catalog and role_id in catalog.ancestors(holder)
        )
        how = "" if role_id in change.wanted else f", inherited through {_listed(through)},"
        yield Violation(
            Reason.APPROVAL_REQUIRED,
            f"privileged role {role_id!r}{how} is added without an approval (ticket and approver)",
            (role_id,),
        )


def _too_many_roles(policy: Policy, change: _Change) -> Iterator[Violation]:
    if len(change.wanted) > policy.max_roles_per_user:
        yield Violation(
            Reason.TOO_MANY_ROLES,
            f"{len(change.wanted)} roles, max_roles_per_user is {policy.max_roles_per_user}",
        )


def _too_deep(policy: Policy, change: _Change) -> Iterator[Violation]:
    catalog = policy.catalog
    for role_id in sorted(change.wanted):
        if role_id in catalog and catalog.depth(role_id) > policy.max_hierarchy_depth:
            chain = " -> ".join(catalog.longest_chain(role_id))
            yield Violation(
                Reason.HIERARCHY_TOO_DEEP,
                f"role {role_id!r} has an inheritance chain of {catalog.depth(role_id)} roles"
                f" ({chain}), max_hierarchy_depth is {policy.max_hierarchy_depth}",
                (role_id,),
            )


def _declared_cycle(policy: Policy, change: _Change) -> Iterator[Violation]:
    # Sorted so that the cycle reported does not depend on the order of roles in the event.
    declared = {
        role.role_id: sorted(role.inherits_from)
        for role in sorted(change.desired, key=lambda role: role.role_id)
        if role.inherits_from is not None
    }
    cycle = find_cycle(declared)
    if cycle is not None:
        yield Violation(
            Reason.INHERITANCE_CYCLE,
            f"the declared inherits_from form a cycle: {' -> '.join(cycle)}",
            tuple(sorted(set(cycle))),
        )


def _inheritance_mismatch(policy: Policy, change: _Change) -> Iterator[Violation]:
    catalog = policy.catalog
    for role in sorted(change.desired, key=lambda role: role.role_id):
        if role.inherits_from is None or role.role_id not in catalog:
            continue
        declared = set(role.inherits_from)
        actual = catalog.parents(role.role_id)
        if declared != actual:
            yield Violation(
                Reason.INHERITANCE_MISMATCH,
                f"role {role.role_id!r} declares inherits_from [{_listed(declared)}]"
                f" but the catalog says [{_listed(actual)}]",
                (role.role_id,),
            )


def _sod_conflicts(policy: Policy, change: _Change) -> Iterator[Violation]:
    effective = policy.catalog.effective_roles(change.wanted)
    for first, second in policy.separation_of_duties:
        if first in effective and second in effective:
            yield Violation(
                Reason.SOD_CONFLICT,
                f"the user's effective roles include both {first!r} and {second!r},"
                " a separation_of_duties pair",
                tuple(sorted((first, second))),
            )


def _listed(role_ids: Collection[str]) -> str:
    return ", ".join(sorted(role_ids))


_RULES: tuple[Callable[[Policy, _Change], Iterator[Violation]], ...] = (
    _unknown_roles,
    _unapproved_privileges,
    _too_many_roles,
    _too_deep,
    _declared_cycle,
    _inheritance_mismatch,
    _sod_conflicts,
)
