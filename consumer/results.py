"""The audit result of each event folded into a write: its own decision, and what the write did.

Pure. A user's queued events are written as one, but each keeps its own policy decision: a
refused addition is `rejected` with its reason and escalation (and counted) whatever the write
did; an allowed event is `superseded` when the write that overtook it succeeded, and gets the
write's outcome when it failed, since nothing was written for it either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consumer.events import (
    ApprovalReference,
    Mode,
    Outcome,
    RoleChangeEvent,
    SourcePosition,
    SyncResult,
)
from consumer.policy import Decision


@dataclass(frozen=True, slots=True)
class Queued:
    """An older event of a user, folded into the write of a newer one."""

    event: RoleChangeEvent
    source: SourcePosition
    received_at: float


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """Why a write was not done: what each allowed event folded into it is audited with."""

    outcome: Outcome
    reason: str | None
    detail: str
    http_status: int | None = None


def approval_verdict(event: RoleChangeEvent, decision: Decision | None) -> ApprovalReference | None:
    """The approval an event carried and whether the policy took it (None: never judged)."""
    approval = event.data.approval
    if approval is None:
        return None
    return ApprovalReference(
        ticket=approval.ticket,
        approved_by=approval.approved_by,
        accepted=None if decision is None else decision.allowed,
    )


def folded_result(
    queued: Queued,
    decision: Decision | None,
    newest: SyncResult,
    *,
    failure: WriteFailure | None,
    latency_ms: float,
    processed_at: datetime,
) -> SyncResult:
    """The result of an event folded into the write whose newest event's result is `newest`.

    `decision` is the event's own, judged against the state the events before it leave; None
    when nothing was judged (the user could not be read, or the work crashed). `failure` says
    why the write was not done, if it was not.
    """
    event = queued.event
    common = {
        "event_id": event.id,
        "event_type": event.type,
        "user_id": event.user_id,
        "source": queued.source,
        "mode": newest.mode,
        "approval": approval_verdict(event, decision),
        "roles_before": newest.roles_before,
        "roles_after": newest.roles_after,
        "active_before": newest.active_before,
        "active_after": newest.active_after,
        "attempts": newest.attempts,
        "latency_ms": round(max(0.0, latency_ms), 3),
        "processed_at": processed_at,
    }
    folded_into = f"folded into the write of {newest.event_id}"
    if decision is not None and not decision.allowed:
        return SyncResult.model_validate(
            {
                **common,
                "outcome": Outcome.REJECTED,
                "reason": decision.reason,
                "escalation": decision.escalation,
                "detail": f"{decision.detail}; {folded_into}",
            }
        )
    if failure is not None:
        return SyncResult.model_validate(
            {
                **common,
                "outcome": failure.outcome,
                "reason": failure.reason,
                "http_status": failure.http_status,
                "detail": f"{folded_into}, which failed: {failure.detail}",
            }
        )
    return SyncResult.model_validate(
        {**common, "outcome": Outcome.SUPERSEDED, "detail": f"superseded_by={newest.event_id}"}
    )


def folded_results(
    earlier: Sequence[Queued],
    decisions: Sequence[Decision] | None,
    newest: SyncResult,
    *,
    failure: WriteFailure | None,
    now: float,
) -> tuple[SyncResult, ...]:
    """One result per folded event, oldest first; `decisions` None when nothing was judged."""
    judged: Sequence[Decision | None] = [None] * len(earlier) if decisions is None else decisions
    return tuple(
        folded_result(
            queued,
            decision,
            newest,
            failure=failure,
            latency_ms=(now - queued.received_at) * 1000.0,
            processed_at=newest.processed_at,
        )
        for queued, decision in zip(earlier, judged, strict=True)
    )


def superseded_result(
    older: RoleChangeEvent,
    newer: RoleChangeEvent,
    *,
    source: SourcePosition,
    mode: Mode,
    processed_at: datetime,
    latency_ms: float = 0.0,
) -> SyncResult:
    """The result of an event left, unjudged, to a newer event of the user written elsewhere."""
    return SyncResult(
        event_id=older.id,
        event_type=older.type,
        user_id=newer.user_id,
        outcome=Outcome.SUPERSEDED,
        detail=f"superseded_by={newer.id}",
        approval=approval_verdict(older, None),
        source=source,
        mode=mode,
        latency_ms=round(latency_ms, 3),
        processed_at=processed_at,
    )
