"""One event in, one result out: read the user, decide, write, describe what happened.

Nothing here knows about Kafka; the stream layer hands events in and publishes the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from consumer.errors import Conflict, InvalidEvent, PermanentError
from consumer.events import (
    ApprovalReference,
    Mode,
    Outcome,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
)
from consumer.policy import Decision, Policy, evaluate
from consumer.scim import mapping
from consumer.scim.client import ScimClient, ScimUser


class RevocationGate(Protocol):
    """Admits revocations, holding them while the mass-revocation guard is tripped."""

    async def admit(self) -> bool:
        """Count one revocation; return True when it had to wait for a release."""
        ...


@dataclass
class _Plan:
    """What the read-modify-write decided on its latest attempt."""

    before: tuple[str, ...] = ()
    decision: Decision | None = None
    desired: tuple[mapping.DesiredRole, ...] = ()
    unchanged: bool = False
    gated: bool = False
    preview: bytes | None = field(default=None, repr=False)


class Synchronizer:
    """Applies one role-change event to CXone under the policy and returns its result."""

    def __init__(
        self,
        policy: Policy,
        scim: ScimClient,
        *,
        dry_run: bool = False,
        gate: RevocationGate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._scim = scim
        self._dry_run = dry_run
        self._gate = gate
        self._clock = clock

    async def apply(
        self,
        event: RoleChangeEvent,
        *,
        source: SourcePosition,
        received_at: float,
        mode: Mode = Mode.LIVE,
    ) -> SyncResult:
        """Bring one user to the state the event asks for, if the policy allows it."""
        plan = _Plan()

        async def decide(user: ScimUser) -> bytes | None:
            return await self._plan(event, user, plan)

        base = {
            "event_id": event.id,
            "user_id": event.user_id,
            "source": source,
            "mode": mode,
            "approval": _approval_of(event),
        }
        try:
            outcome = await self._scim.update_user(event.user_id, decide)
        except PermanentError as error:
            return self._result(
                received_at,
                **base,
                outcome=Outcome.FAILED,
                reason=error.reason,
                detail=error.detail or str(error),
                http_status=error.status,
                attempts=error.attempts,
                roles_before=plan.before or None,
            )
        except InvalidEvent as error:
            return self._result(
                received_at,
                **base,
                outcome=Outcome.INVALID,
                reason=error.reason,
                detail=error.detail,
            )
        decision = plan.decision
        assert decision is not None, "the plan always decides before the write returns"
        after = tuple(role.value for role in plan.desired)
        common = {
            **base,
            "roles_before": plan.before,
            "attempts": outcome.attempts,
            "escalation": decision.escalation,
            "detail": decision.detail,
        }
        if not decision.allowed:
            return self._result(
                received_at,
                **common,
                outcome=Outcome.REJECTED,
                reason=decision.reason,
                roles_after=plan.before,
            )
        if plan.unchanged:
            return self._result(
                received_at,
                **common,
                outcome=Outcome.UNCHANGED,
                roles_after=plan.before,
            )
        if outcome.payload is None:
            assert plan.preview is not None
            return self._result(
                received_at,
                **common,
                outcome=Outcome.DRY_RUN,
                roles_after=after,
                payload_sha256=mapping.sha256_hex(plan.preview),
            )
        return self._result(
            received_at,
            **common,
            outcome=Outcome.SYNCED,
            roles_after=after,
            http_status=outcome.status,
            payload_sha256=mapping.sha256_hex(outcome.payload),
        )

    async def _plan(self, event: RoleChangeEvent, user: ScimUser, plan: _Plan) -> bytes | None:
        """Decide and build the PUT body for the user as just read; None writes nothing."""
        document = user.document
        plan.before = mapping.role_values(document)
        plan.unchanged = False
        decision = evaluate(self._policy, event, plan.before)
        plan.decision = decision
        if not decision.allowed:
            plan.desired = ()
            return None
        plan.desired = tuple(
            mapping.DesiredRole(value=role.role_id, display=role.display_name, primary=role.primary)
            for role in decision.roles
        )
        active = False if event.is_deactivation else mapping.is_active(document)
        if not mapping.needs_write(document, plan.desired, active=active):
            plan.unchanged = True
            return None
        if decision.is_revocation and self._gate is not None and not plan.gated:
            plan.gated = True
            if await self._gate.admit():
                # The guard held us back; the user may have changed meanwhile.
                raise Conflict("re-reading the user after the mass-revocation guard released")
        payload = mapping.encode(mapping.with_roles(document, plan.desired, active=active))
        if self._dry_run:
            plan.preview = payload
            return None
        return payload

    def _result(self, received_at: float, **fields: object) -> SyncResult:
        latency_ms = max(0.0, (self._clock() - received_at) * 1000.0)
        return SyncResult.model_validate(
            {**fields, "latency_ms": round(latency_ms, 3), "processed_at": datetime.now(UTC)}
        )


def _approval_of(event: RoleChangeEvent) -> ApprovalReference | None:
    approval = event.data.approval
    if approval is None:
        return None
    return ApprovalReference(ticket=approval.ticket, approved_by=approval.approved_by)


def superseded_result(
    older_id: str,
    newer: RoleChangeEvent,
    *,
    source: SourcePosition,
    mode: Mode,
    latency_ms: float = 0.0,
) -> SyncResult:
    """The result of an event made moot by a newer event of the same user."""
    return SyncResult(
        event_id=older_id,
        user_id=newer.user_id,
        outcome=Outcome.SUPERSEDED,
        detail=f"superseded_by={newer.id}",
        source=source,
        mode=mode,
        latency_ms=round(latency_ms, 3),
        processed_at=datetime.now(UTC),
    )
