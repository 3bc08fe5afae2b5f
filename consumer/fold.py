"""Fold one user's queued events into the one state to write: pure, judged event by event.

Events are not all complete states: `idp.user.roles.changed` keeps the current `active`, and
whether the policy allows a change depends on what the user holds when it arrives. So the fold
runs the policy over the events in order, each against the state the earlier ones leave, and
returns the state the last one leaves. Writing that state once is writing them one at a time,
without the intermediate writes: a deactivation followed by a roles change leaves the user
inactive, and only a reactivation makes them active again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consumer.catalog import Policy
from consumer.events import RoleChangeEvent
from consumer.policy import Decision, effective_access, evaluate
from consumer.scim import mapping
from consumer.scim.mapping import DesiredRole


@dataclass(frozen=True, slots=True)
class UserState:
    """What this service owns of a CXone user: the roles and `active`."""

    roles: tuple[DesiredRole, ...]
    active: bool

    @classmethod
    def of(cls, document: mapping.Document) -> UserState:
        """The state of a CXone user as served, its roles primary first."""
        roles = sorted(mapping.current_roles(document), key=lambda role: not role.primary)
        return cls(
            roles=tuple(
                DesiredRole(value=role.value, display=role.display, primary=bool(role.primary))
                for role in roles
                if role.value
            ),
            active=mapping.is_active(document),
        )

    @property
    def role_ids(self) -> tuple[str, ...]:
        """The role ids, primary first, as the policy takes them."""
        ordered = sorted(self.roles, key=lambda role: not role.primary)
        return tuple(role.value for role in ordered)


@dataclass(frozen=True, slots=True)
class Folded:
    """The state a user's events leave, and how it differs from what was held."""

    held: UserState
    state: UserState
    # Each event's own decision, oldest first, judged against the state the earlier ones leave:
    # its outcome, reason, escalation and whether its approval was taken.
    decisions: tuple[Decision, ...]
    # Access (effective roles, or `active`) the folded change takes away: the guard counts it.
    removes_access: bool
    adds_access: bool

    @property
    def decision(self) -> Decision:
        """The newest event's own decision."""
        return self.decisions[-1]

    @property
    def is_revocation(self) -> bool:
        """Whether the folded change takes access away and adds none."""
        return self.removes_access and not self.adds_access


def step(state: UserState, decision: Decision) -> UserState:
    """The state one decided event leaves: its roles and `active`, or nothing if it writes none."""
    if not decision.writes:
        return state
    active = state.active if decision.active is None else decision.active
    return UserState(roles=decision.roles, active=active)


def fold(
    policy: Policy,
    events: Sequence[RoleChangeEvent],
    held: UserState,
    *,
    now: datetime,
    approval_key: bytes | None = None,
) -> Folded:
    """Judge each event, oldest first, against the state the earlier ones leave."""
    if not events:
        raise ValueError("fold needs at least one event")
    state = held
    decisions: list[Decision] = []
    for event in events:
        decision = evaluate(
            policy, event, state.role_ids, active=state.active, now=now, approval_key=approval_key
        )
        decisions.append(decision)
        state = step(state, decision)
    before = effective_access(policy.catalog, held.role_ids)
    after = effective_access(policy.catalog, state.role_ids)
    return Folded(
        held=held,
        state=state,
        decisions=tuple(decisions),
        removes_access=bool(before - after) or (held.active and not state.active),
        adds_access=bool(after - before) or (state.active and not held.active),
    )
