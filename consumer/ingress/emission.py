"""Whether a user's desired state needs an event, and the event: pure, deterministic.

An event is due when the desired state differs from the last one emitted for the user; a
deleted user is wanted inactive. A user the IdP has not yet granted any mapped role is not
managed yet: nothing is emitted for it while it is active. An event's id is a digest of the
user, the state and the generation (the number of events emitted for the user before), so an
event emitted again after a crash carries the id of the first attempt and is recognisable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from consumer.approvals import approval_signature
from consumer.catalog import Policy
from consumer.events import (
    MAX_USER_NAME,
    Approval,
    EventType,
    RoleAssignment,
    RoleChangeData,
    RoleChangeEvent,
)
from consumer.ingress.desired import INACTIVE, DesiredState

__all__ = ["EmittedState", "due_event"]


@dataclass(frozen=True, slots=True)
class EmittedState:
    """What the last event emitted for an IdP user asked for, and to which CXone user."""

    cxone_user_id: str
    active: bool
    roles: tuple[str, ...]
    ticket: str | None
    generation: int

    def same_as(self, desired: DesiredState) -> bool:
        """Whether the desired state is what this event already asked for."""
        return (self.active, self.roles, self.ticket) == (
            desired.active,
            desired.roles,
            desired.ticket,
        )

    def to_json(self) -> dict[str, Any]:
        """The record stored on the state topic."""
        return {**asdict(self), "roles": list(self.roles)}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> EmittedState:
        """The state as stored; KeyError or TypeError when the record is not one."""
        return cls(
            cxone_user_id=str(document["cxone_user_id"]),
            active=bool(document["active"]),
            roles=tuple(str(role) for role in document["roles"]),
            ticket=None if document["ticket"] is None else str(document["ticket"]),
            generation=int(document["generation"]),
        )


def due_event(
    policy: Policy,
    *,
    idp_user_id: str,
    previous: EmittedState | None,
    desired: DesiredState | None,
    cxone_user_id: str,
    user_name: str | None,
    source: str,
    now: datetime,
    approval_key: bytes | None = None,
) -> tuple[RoleChangeEvent, EmittedState] | None:
    """The event to emit and the state it asks for, or None when nothing changed."""
    if desired is None:
        if previous is None:
            return None  # never emitted, now gone: CXone never heard of it from us
        desired = INACTIVE
    elif not desired.active:
        desired = INACTIVE
    if previous is None and desired.active and not desired.roles:
        # A user is managed from the first mapped role the IdP grants: until then, CXone's own
        # default (its provisioning gives new users a role) is left alone, not emptied.
        return None
    if (
        previous is not None
        and previous.same_as(desired)
        and previous.cxone_user_id == cxone_user_id
    ):
        return None
    if not desired.active:
        kind = EventType.DEACTIVATED
    elif previous is not None and not previous.active:
        kind = EventType.REACTIVATED
    else:
        kind = EventType.ROLES_CHANGED
    generation = 0 if previous is None else previous.generation + 1
    state = EmittedState(
        cxone_user_id=cxone_user_id,
        active=desired.active,
        roles=desired.roles,
        ticket=desired.ticket,
        generation=generation,
    )
    approval = None
    if desired.ticket is not None:
        approval = _approval(policy, cxone_user_id, desired, source, approval_key)
    event = RoleChangeEvent(
        specversion="1.0",
        id=_event_id(idp_user_id, state, source),
        source=source,
        type=kind,
        time=now,
        subject=cxone_user_id,
        datacontenttype="application/json",
        data=RoleChangeData(
            user_id=cxone_user_id,
            # Optional in the contract: a name longer than it allows is left out, not cut.
            user_name=user_name if user_name and len(user_name) <= MAX_USER_NAME else None,
            roles=None
            if kind is EventType.DEACTIVATED
            else tuple(
                RoleAssignment(
                    role_id=role_id,
                    display_name=policy.catalog.display_name(role_id),
                    primary=index == 0,
                )
                for index, role_id in enumerate(desired.roles)
            ),
            approval=approval,
        ),
    )
    return event, state


def _approval(
    policy: Policy, user_id: str, desired: DesiredState, source: str, key: bytes | None
) -> Approval:
    """The approval an approving mapping entry gives: the rule as ticket, the IdP as approver."""
    assert desired.ticket is not None
    catalog = policy.catalog
    privileged = sorted(
        r for r in catalog.effective_roles(desired.roles) if catalog.is_privileged(r)
    )
    signature = None
    if key is not None:
        signature = approval_signature(
            key,
            user_id=user_id,
            privileged_role_ids=privileged,
            ticket=desired.ticket,
            approved_by=source,
        )
    return Approval(ticket=desired.ticket, approved_by=source, signature=signature)


def _event_id(idp_user_id: str, state: EmittedState, source: str) -> str:
    text = json.dumps([source, idp_user_id, state.to_json()], sort_keys=True, separators=(",", ":"))
    return "scim-" + hashlib.sha256(text.encode()).hexdigest()[:40]
