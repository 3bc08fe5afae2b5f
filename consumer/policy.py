"""The least-privilege policy: (policy, event, the user's current roles) -> a frozen `Decision`.

Pure: no I/O, no logging, no clock (the caller passes `now`). The policy judges effective access,
a user's roles plus everything they inherit: only roles being added can be escalations, and a
refused change still loses the roles it removes. Turning an inactive user active grants all they
will hold, so such a reactivation is judged as if they held nothing. The caller counts escalation
rejections in the metrics and turns a refused decision into an audit result.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from consumer.approvals import approval_signature, signature_matches
from consumer.catalog import Policy, RoleCatalog, find_cycle
from consumer.events import Approval, EventType, RoleAssignment, RoleChangeEvent
from consumer.scim.mapping import DesiredRole

__all__ = [
    "Decision",
    "Reason",
    "Violation",
    "effective_access",
    "evaluate",
]


class Reason(StrEnum):
    """The audit reason codes of a refused change, in the order they are reported."""

    UNKNOWN_ROLE = "unknown_role"
    APPROVAL_REQUIRED = "approval_required"
    APPROVAL_INVALID = "approval_invalid"
    APPROVAL_EXPIRED = "approval_expired"
    TOO_MANY_ROLES = "too_many_roles"
    HIERARCHY_TOO_DEEP = "hierarchy_too_deep"
    INHERITANCE_CYCLE = "inheritance_cycle"
    INHERITANCE_MISMATCH = "inheritance_mismatch"
    SOD_CONFLICT = "sod_conflict"

    @property
    def escalation(self) -> bool:
        """Whether this reason marks an attempt to gain access the catalog does not grant."""
        return self in _ESCALATIONS


_ESCALATIONS = frozenset(
    {
        Reason.UNKNOWN_ROLE,
        Reason.APPROVAL_REQUIRED,
        Reason.APPROVAL_INVALID,
        Reason.APPROVAL_EXPIRED,
    }
)
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
class Decision:
    """What the policy decided about one event, and exactly which roles to write."""

    allowed: bool
    # In write order, exactly one primary when any. Allowed: the desired roles. Refused: the
    # held roles that survive the event's removals; nothing refused is ever among them.
    roles: tuple[DesiredRole, ...] = ()
    # The `active` to write; None keeps what CXone holds (a roles change, or anything refused).
    active: bool | None = None
    # Every broken rule of a refused change, escalations first.
    failures: tuple[Violation, ...] = ()
    # Rules still broken after an allowed change that adds no access, kept for the audit detail.
    remaining_violations: tuple[Violation, ...] = ()
    # The role ids the write adds and removes (a refused change adds none).
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    # Takes effective access away (roles plus what they inherit, or `active`): the guard counts
    # it, whatever else the change does.
    removes_access: bool = False
    # Gives effective access the user did not have.
    adds_access: bool = False

    @property
    def is_revocation(self) -> bool:
        """Whether the change takes access away and adds none (a deactivation, a removal)."""
        return self.removes_access and not self.adds_access

    @property
    def writes(self) -> bool:
        """Whether to write: an allowed change, the removals of a refused one, or a reactivation."""
        return self.allowed or bool(self.removed) or self.active is not None

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
            refused = "; ".join(str(failure) for failure in self.failures)
            if self.active:
                kept = _listed(self.role_ids) or "no roles"
                refused = f"{refused}; reactivated with the allowed roles only: {kept}"
            if self.removed:
                return f"{refused}; removals still applied: {_listed(self.removed)}"
            return refused
        if self.remaining_violations:
            still = "; ".join(str(violation) for violation in self.remaining_violations)
            return f"allowed because it adds no access; still broken: {still}"
        return None

    @property
    def role_ids(self) -> tuple[str, ...]:
        """The ids of the roles to write, in order."""
        return tuple(role.value for role in self.roles)


@dataclass(frozen=True, slots=True)
class _Change:
    user_id: str
    desired: tuple[RoleAssignment, ...]
    wanted: frozenset[str]
    # What the user is judged to hold: their roles, or nothing when the change turns them active.
    current: frozenset[str]
    # Effective access the change would give that the user does not have.
    gained: frozenset[str]
    approval: Approval | None
    approval_key: bytes | None
    now: datetime

    @property
    def added(self) -> frozenset[str]:
        return self.wanted - self.current


def evaluate(
    policy: Policy,
    event: RoleChangeEvent,
    current_roles: Sequence[str],
    *,
    active: bool,
    now: datetime,
    approval_key: bytes | None = None,
) -> Decision:
    """Decide what of an event's change may be written, and exactly which roles to write.

    `current_roles` are the role ids CXone holds, primary first, and `active` whether the user
    is active there; `now` judges an approval's `expires_at`; with `approval_key` an approval
    must carry a valid signature.
    """
    held = tuple(dict.fromkeys(current_roles))
    current = frozenset(held)
    catalog = policy.catalog
    before = effective_access(catalog, current)
    if event.is_deactivation:
        return Decision(allowed=True, active=False, removed=current, removes_access=True)
    desired = event.desired_roles
    wanted = frozenset(role.role_id for role in desired)
    after = effective_access(catalog, wanted)
    # Turning a user active turns on everything they will hold: none of it is "already held".
    turning_on = event.type is EventType.REACTIVATED and not active
    judged_held = frozenset[str]() if turning_on else current
    change = _Change(
        user_id=event.user_id,
        desired=desired,
        wanted=wanted,
        current=judged_held,
        gained=after - effective_access(catalog, judged_held),
        approval=event.data.approval,
        approval_key=approval_key,
        now=now,
    )
    violations = _violations(policy, change)
    # A change that gives no new access (it removes, or keeps what is held) never widens it, so
    # no limit the user already breaks may block it: refusing would keep the excess in place.
    if not change.gained:
        return Decision(
            allowed=True,
            roles=_roles_to_write(policy, desired),
            active=event.active,
            remaining_violations=violations,
            added=wanted - current,
            removed=current - wanted,
            removes_access=bool(before - after),
        )
    if violations and turning_on:
        return _refused_reactivation(policy, change, violations, held)
    if violations:
        # The additions are refused, never the removals: what the desired roles do not grant,
        # directly or by inheritance, goes.
        kept = tuple(role_id for role_id in held if role_id in after)
        return Decision(
            allowed=False,
            roles=_held_roles(policy, kept),
            failures=violations,
            removed=current - frozenset(kept),
            removes_access=bool(before - effective_access(catalog, kept)),
        )
    return Decision(
        allowed=True,
        roles=_roles_to_write(policy, desired),
        active=event.active,
        added=wanted - current,
        removed=current - wanted,
        removes_access=bool(before - after),
        adds_access=True,
    )


def _violations(policy: Policy, change: _Change) -> tuple[Violation, ...]:
    """Every rule the change breaks, escalations first, in a stable order."""
    return tuple(
        sorted(
            (violation for rule in _RULES for violation in rule(policy, change)),
            key=lambda violation: (_RANK[violation.reason], violation.role_ids, violation.detail),
        )
    )


def _refused_reactivation(
    policy: Policy, change: _Change, violations: tuple[Violation, ...], held: tuple[str, ...]
) -> Decision:
    """A refused reactivation of an inactive user: reactivated with the allowed roles only.

    The roles a failure names, and every desired role that grants one by inheritance, are
    refused and removed. When the roles left pass every rule on their own, the user is made
    active with them; when none are left, or they still break a rule (`too_many_roles` names no
    role), the user stays inactive and keeps only the held roles the event grants that are not
    refused.
    """
    catalog = policy.catalog
    named = frozenset(role_id for violation in violations for role_id in violation.role_ids)

    def refused(role_id: str) -> bool:
        return bool(effective_access(catalog, (role_id,)) & named)

    rest = tuple(role for role in change.desired if not refused(role.role_id))
    current = frozenset(held)
    before = effective_access(catalog, current)
    if rest:
        wanted = frozenset(role.role_id for role in rest)
        after = effective_access(catalog, wanted)
        narrowed = replace(change, desired=rest, wanted=wanted, gained=after)
        if not _violations(policy, narrowed):
            return Decision(
                allowed=False,
                roles=_roles_to_write(policy, rest),
                active=True,
                failures=violations,
                added=wanted - current,
                removed=current - wanted,
                removes_access=bool(before - after),
                adds_access=True,
            )
    granted = effective_access(catalog, change.wanted)
    kept = tuple(role_id for role_id in held if role_id in granted and not refused(role_id))
    return Decision(
        allowed=False,
        roles=_held_roles(policy, kept),
        failures=violations,
        removed=current - frozenset(kept),
        removes_access=bool(before - effective_access(catalog, kept)),
    )


def effective_access(catalog: RoleCatalog, role_ids: Collection[str]) -> frozenset[str]:
    """Effective access: catalog roles with all they inherit, plus any uncatalogued role as is."""
    return catalog.effective_roles(role_ids) | {r for r in role_ids if r not in catalog}


def _held_roles(policy: Policy, kept: tuple[str, ...]) -> tuple[DesiredRole, ...]:
    # `kept` is in CXone's order, primary first, so a kept primary stays primary.
    catalog = policy.catalog
    return tuple(
        DesiredRole(
            value=role_id,
            display=catalog.display_name(role_id) if role_id in catalog else None,
            primary=index == 0,
        )
        for index, role_id in enumerate(kept)
    )


def _roles_to_write(policy: Policy, desired: tuple[RoleAssignment, ...]) -> tuple[DesiredRole, ...]:
    if not desired:
        return ()
    marked = [role.role_id for role in desired if role.primary]
    primary = marked[0] if marked else desired[0].role_id
    catalog = policy.catalog
    return tuple(
        DesiredRole(
            value=role.role_id,
            display=(
                catalog.display_name(role.role_id) if role.role_id in catalog else role.display_name
            ),
            primary=role.role_id == primary,
        )
        for role in desired
    )


def _unknown_roles(policy: Policy, change: _Change) -> Iterator[Violation]:
    # Only roles being added: one assigned by hand in CXone and kept is not an escalation.
    for role_id in sorted(change.added - set(policy.catalog)):
        yield Violation(Reason.UNKNOWN_ROLE, f"role {role_id!r} is not in the catalog", (role_id,))


def _unapproved_privileges(policy: Policy, change: _Change) -> Iterator[Violation]:
    catalog = policy.catalog
    # Compared on effective roles: a plain role that inherits a privileged one grants the same
    # access, and a privileged role already held through inheritance is nothing new.
    gained = sorted(
        role_id
        for role_id in change.gained
        if role_id in catalog and catalog.is_privileged(role_id)
    )
    if not gained:
        return
    approval = change.approval
    if approval is None:
        for role_id in gained:
            through = sorted(
                holder
                for holder in change.wanted
                if holder in catalog and role_id in catalog.ancestors(holder)
            )
            how = "" if role_id in change.wanted else f", inherited through {_listed(through)},"
            yield Violation(
                Reason.APPROVAL_REQUIRED,
                f"privileged role {role_id!r}{how} is added without an approval"
                " (ticket and approver)",
                (role_id,),
            )
        return
    if change.approval_key is not None and not _signed(catalog, change, approval, gained):
        state = "has no signature" if approval.signature is None else "has a wrong signature"
        yield Violation(
            Reason.APPROVAL_INVALID,
            f"the approval {approval.ticket!r} of privileged {_listed(gained)} {state}",
            tuple(gained),
        )
        return
    if approval.expires_at is not None and approval.expires_at <= change.now:
        yield Violation(
            Reason.APPROVAL_EXPIRED,
            f"the approval {approval.ticket!r} of privileged {_listed(gained)} expired at"
            f" {approval.expires_at.isoformat()}",
            tuple(gained),
        )


def _signed(
    catalog: RoleCatalog, change: _Change, approval: Approval, gained: Sequence[str]
) -> bool:
    """Whether the approval is signed over the privileged roles it grants.

    The signed roles are those the change adds in effective access, or every privileged role
    the desired roles grant: the signer then needs no knowledge of what CXone holds (the SCIM
    ingress signs so), and the signature still binds the user, the roles, and every field.
    """
    key = change.approval_key
    if key is None:
        return True
    granted = sorted(
        role_id
        for role_id in catalog.effective_roles(change.wanted)
        if catalog.is_privileged(role_id)
    )
    matches = [
        signature_matches(
            approval.signature,
            approval_signature(
                key,
                user_id=change.user_id,
                privileged_role_ids=signed_roles,
                ticket=approval.ticket,
                approved_by=approval.approved_by,
                expires_at=approval.expires_at,
            ),
        )
        for signed_roles in (gained, granted)
    ]
    # Both are compared, so the time taken does not tell which one matched.
    return any(matches)


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
