"""A user's events in, one write, one result per event: read the user, decide, write, describe.

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
from consumer.events import Mode, Outcome, RoleChangeEvent, SourcePosition, SyncResult
from consumer.fold import Folded, UserState, fold
from consumer.results import Queued, WriteFailure, approval_verdict, folded_results
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

    held: UserState | None = None
    folded: Folded | None = None
    unchanged: bool = False
    gated: bool = False
    preview: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Applied:
    """The results of one write: the newest event's, and one per event folded into it."""

    result: SyncResult
    # Oldest first, as the events were queued.
    folded: tuple[SyncResult, ...] = ()


class Synchronizer:
    """Applies a user's events to CXone under the policy and returns each event's result."""

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
        earlier: Sequence[Queued] = (),
    ) -> Applied:
        """Bring one user to the state its events ask for, as far as the policy allows.

        `earlier` are the user's older queued events, oldest first: folded with `event` into
        one write. Each gets its own result, with its own policy decision.
        """
        plan = _Plan()
        events = (*(queued.event for queued in earlier), event)

        async def decide(user: ScimUser) -> bytes | None:
            return await self._plan(events, user, plan)

        try:
            outcome = await self._scim.update_user(event.user_id, decide)
        except PermanentError as error:
            failure = WriteFailure(
                Outcome.FAILED, error.reason, error.detail or str(error), error.status
            )
            fields: dict[str, object] = {
                **self._base(event, source, mode, plan),
                "outcome": failure.outcome,
                "reason": failure.reason,
                "detail": failure.detail,
                "http_status": failure.http_status,
                "attempts": error.attempts,
            }
            refused = None if plan.folded is None else plan.folded.decision
            if refused is not None and not refused.allowed:
                # Its own decision first: a refused addition stays an escalation when the
                # write of its removals then fails.
                fields |= {
                    "outcome": Outcome.REJECTED,
                    "reason": refused.reason,
                    "escalation": refused.escalation,
                    "detail": f"{refused.detail}; the write failed: {failure.reason}:"
                    f" {failure.detail}",
                }
            result = self._result(received_at, **fields)
            return self._with_folded(result, earlier, plan, failure)
        except InvalidEvent as error:
            failure = WriteFailure(Outcome.INVALID, error.reason, error.detail)
            result = self._result(
                received_at,
                **self._base(event, source, mode, plan),
                outcome=failure.outcome,
                reason=failure.reason,
                detail=failure.detail,
            )
            return self._with_folded(result, earlier, plan, failure)
        folded, held = plan.folded, plan.held
        assert folded is not None, "the plan decides before the write returns"
        assert held is not None
        decision = folded.decision
        state = held if plan.unchanged else folded.state
        fields = {
            **self._base(event, source, mode, plan),
            "attempts": outcome.attempts,
            "escalation": decision.escalation,
            "detail": decision.detail,
            "roles_after": state.role_ids,
            "active_after": state.active,
        }
        if not plan.unchanged and outcome.payload is None:
            assert plan.preview is not None
            fields["payload_sha256"] = mapping.sha256_hex(plan.preview)
        elif not plan.unchanged:
            assert outcome.payload is not None
            fields["http_status"] = outcome.status
            fields["payload_sha256"] = mapping.sha256_hex(outcome.payload)
        if not decision.allowed:
            fields |= {"outcome": Outcome.REJECTED, "reason": decision.reason}
        elif plan.unchanged:
            fields["outcome"] = Outcome.UNCHANGED
        elif outcome.payload is None:
            fields["outcome"] = Outcome.DRY_RUN
        else:
            fields["outcome"] = Outcome.SYNCED
        return self._with_folded(self._result(received_at, **fields), earlier, plan)

    def _base(
        self, event: RoleChangeEvent, source: SourcePosition, mode: Mode, plan: _Plan
    ) -> dict[str, object]:
        """The fields every result of `event` has: who, where, its approval, the user as read."""
        folded, held = plan.folded, plan.held
        return {
            "event_id": event.id,
            "event_type": event.type,
            "user_id": event.user_id,
            "source": source,
            "mode": mode,
            "approval": approval_verdict(event, None if folded is None else folded.decision),
            "roles_before": None if held is None else held.role_ids,
            "active_before": None if held is None else held.active,
        }

    def _with_folded(
        self,
        result: SyncResult,
        earlier: Sequence[Queued],
        plan: _Plan,
        failure: WriteFailure | None = None,
    ) -> Applied:
        """The newest result with one result per folded event, each with its own decision."""
        decisions = None if plan.folded is None else plan.folded.decisions[:-1]
        return Applied(
            result,
            folded_results(earlier, decisions, result, failure=failure, now=self._clock()),
        )

    async def _plan(
        self, events: Sequence[RoleChangeEvent], user: ScimUser, plan: _Plan
    ) -> bytes | None:
        """Decide and build the PUT body for the user as just read; None writes nothing."""
        document = user.document
        held = UserState.of(document)
        plan.held = held
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
