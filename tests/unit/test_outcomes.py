"""Accounting for a published result: its log line's level and the escalation counter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from consumer.events import Outcome, SourcePosition, SyncResult
from consumer.observability.metrics import ESCALATION_REASONS, ESCALATION_REJECTIONS
from consumer.observability.outcomes import record_result
from consumer.policy import Reason


def result(outcome: Outcome, reason: str | None = None) -> SyncResult:
    """A live result with the given outcome and reason."""
    return SyncResult(
        event_id="e1",
        user_id="u-1",
        outcome=outcome,
        reason=reason,
        escalation=reason in ESCALATION_REASONS,
        source=SourcePosition(topic="t", partition=0, offset=0),
        processed_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("outcome", "reason", "level"),
    [
        (Outcome.REJECTED, "approval_required", "warning"),
        (Outcome.REJECTED, "sod_conflict", "warning"),
        (Outcome.FAILED, "user_not_found", "warning"),
        (Outcome.SYNCED, None, "info"),
        (Outcome.SUPERSEDED, None, "info"),
    ],
)
def test_rejections_and_failures_log_at_warning(
    outcome: Outcome, reason: str | None, level: str
) -> None:
    """The one `sync.result` line is a WARNING for rejected and failed results, else INFO."""
    with capture_logs() as logs:
        record_result(result(outcome, reason), latency_seconds=0.01)
    [line] = [entry for entry in logs if entry["event"] == "sync.result"]
    assert line["log_level"] == level


def test_every_escalation_reason_of_the_policy_is_a_known_metric_label() -> None:
    """The metric's reason labels are exactly the policy's escalation reasons."""
    assert {reason.value for reason in Reason if reason.escalation} == ESCALATION_REASONS


@pytest.mark.parametrize("reason", ["approval_invalid", "approval_expired"])
def test_signed_approval_rejections_are_counted_as_escalations(reason: str) -> None:
    """An invalid or expired approval counts in cxone_sync_escalation_rejections_total."""
    counter = ESCALATION_REJECTIONS.labels(reason=reason)
    before = counter._value.get()
    record_result(result(Outcome.REJECTED, reason), latency_seconds=0.01)
    assert counter._value.get() == before + 1
