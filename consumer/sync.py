"""One event in, one result out: read the user, decide, write, describe what happened.

Nothing here knows about Kafka; the stream layer hands events in and publishes the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import SecretStr

from consumer.catalog import Policy
from consumer.errors import Conflict, InvalidEvent, PermanentError
from consumer.events import (
    ApprovalReference,
    Mode,
    Outcome,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
)
from consumer.fold import Folded, UserState, fold
from consumer.scim import mapping
from consumer.scim.client import ScimClient, ScimUser


class AdmitsRevocations(Protocol):
    """Admits changes that take access away; the mass-revocation gate is one."""

    async def admit(self) -> bool:
        """Count one revocation; return True when it had to wait for a release."""
        ...


@dataclass
class _Plan:
    """What the read-modify-write decided on its latest attempt."""

    before: tuple[str, ...] = ()
    folded: Folded | None = None
    unchanged: bool = False
    gated: bool = False
    preview: bytes | None = field(default=None, repr=False)


class Synchronizer:
    """Applies a user's events to CXone under the policy and returns the newest one's result."""

    def __init__(
        self,
        policy: Policy,
        scim: ScimClient,
        *,
        dry_run: bool = False,
        gate: AdmitsRevocations | None = None,
        approval_key: SecretStr | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._policy = policy
        self._scim = scim
        self._dry_run = dry_run
        self._gate = gate
        self._approval_key = (
            None if approval_key is None else approval_key.get_secret_value().encode()
        )
        self._clock = clock
        self._wall_clock = wall_clock

    async def apply(
        self,
        event: RoleChangeEvent,
        *,
        source: SourcePosition,
        received_at: float,
        mode: Mode = Mode.LIVE,
        earlier: Sequence[RoleChangeEvent] = (),
    ) -> SyncResult:
        """Bring one user to the state its events ask for, as far as the policy allows.

        `earlier` are the user's older queued events, oldest first: folded with `event` into
        one write, and audited as superseded by the caller.
        """
        plan = _Plan()
        events = (*earlier, event)

        async def decide(user: ScimUser) -> bytes | None:
            return await self._plan(events, user, plan)

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
                roles_before=plan.before,
            )
        except InvalidEvent as error:
            return self._result(
                received_at,
                **base,
                outcome=Outcome.INVALID,
                reason=error.reason,
                detail=error.detail,
            )
        folded = plan.folded
        assert folded is not None, "the plan always decides before the write returns"
        decision = folded.decision
        written = tuple(role.value for role in folded.state.roles)
        common = {
            **base,
            "roles_before": plan.before,
            "attempts": outcome.attempts,
            "escalation": decision.escalation,
            "detail": decision.detail,
        }
        if plan.unchanged:
            fields = {**common, "roles_after": plan.before}
        elif outcome.payload is None:
            assert plan.preview is not None
            fields = {
                **common,
                "roles_after": written,
                "payload_sha256": mapping.sha256_hex(plan.preview),
            }
        else:
            fields = {
                **common,
                "roles_after": written,
                "http_status": outcome.status,
                "payload_sha256": mapping.sha256_hex(outcome.payload),
            }
        if not decision.allowed:
            return self._result(
                received_at, **fields, outcome=Outcome.REJECTED, reason=decision.reason
            )
        if plan.unchanged:
            return self._result(received_at, **fields, outcome=Outcome.UNCHANGED)
        if outcome.payload is None:
            return self._result(received_at, **fields, outcome=Outcome.DRY_RUN)
        return self._result(received_at, **fields, outcome=Outcome.SYNCED)

    async def _plan(
        self, events: Sequence[RoleChangeEvent], user: ScimUser, plan: _Plan
    ) -> bytes | None:
        """Decide and build the PUT body for the user as just read; None writes nothing."""
        document = user.document
        held = UserState.of(document)
        plan.before = held.role_ids
        plan.unchanged = False
        folded = fold(
            self._policy,
            events,
            held,
            now=self._wall_clock(),
            approval_key=self._approval_key,
        )
        plan.folded = folded
        target = folded.state
        if not mapping.needs_write(document, target.roles, active=target.active):
            plan.unchanged = True
            return None
        # Every change that takes access away is counted, whatever else it does.
        if folded.removes_access and self._gate is not None and not plan.gated:
            plan.gated = True
            if await self._gate.admit():
                # The guard held us back; the user may have changed meanwhile.
                raise Conflict("re-reading the user after the mass-revocation guard released")
        payload = mapping.payload_with_roles(document, target.roles, active=target.active)
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
