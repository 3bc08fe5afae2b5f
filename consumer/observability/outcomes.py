"""Accounting for one published result: counters, latency, last success, the canonical log line."""

from __future__ import annotations

import time

import structlog

from consumer.events import Outcome, SyncResult
from consumer.observability.metrics import (
    ESCALATION_REASONS,
    ESCALATION_REJECTIONS,
    EVENTS,
    LAST_SUCCESS,
    LATENCY,
)

log = structlog.get_logger(__name__)

_SUCCESS = frozenset({Outcome.SYNCED, Outcome.UNCHANGED})
# Someone should look at these: a refused change (an escalation first of all) or a given-up write.
_WARN = frozenset({Outcome.REJECTED, Outcome.FAILED})


def record_result(result: SyncResult, *, latency_seconds: float) -> None:
    """Count a result whose audit event the broker acknowledged, and log its one line."""
    outcome = result.outcome.value
    EVENTS.labels(outcome=outcome).inc()
    LATENCY.labels(outcome=outcome).observe(max(0.0, latency_seconds))
    # Only known reason codes become label values, so the series stay bounded.
    if result.outcome is Outcome.REJECTED and result.reason in ESCALATION_REASONS:
        ESCALATION_REJECTIONS.labels(reason=result.reason).inc()
    if result.outcome in _SUCCESS:
        LAST_SUCCESS.set(time.time())
    emit = log.warning if result.outcome in _WARN else log.info
    # Its own event and position, which a folded event's differ from the write's it rode on.
    emit(
        "sync.result",
        event_id=result.event_id,
        partition=result.source.partition,
        offset=result.source.offset,
        outcome=outcome,
        reason=result.reason,
        escalation=result.escalation,
        attempts=result.attempts,
        http_status=result.http_status,
        latency_ms=round(latency_seconds * 1000.0, 3),
    )
