"""Tests of the demo's summary: which audit result belongs to which kind of change."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from consumer.demo_summary import kinds_of_change, summary_lines
from consumer.events import AuditEvent, Outcome, SourcePosition, SyncResult, audit_event_of
from consumer.sandbox.samples import SampleRecord


def record(label: str, key: str, event_id: str | None) -> SampleRecord:
    """A sample record; without an event id its value is not even JSON."""
    value = json.dumps({"id": event_id}).encode() if event_id else b"{not json"
    return SampleRecord(key=key.encode(), value=value, label=label)


def result(
    event_id: str | None, user_id: str, outcome: Outcome, offset: int, **fields: object
) -> AuditEvent:
    """The audit event of one input record."""
    return audit_event_of(
        SyncResult.model_validate(
            {
                "event_id": event_id,
                "user_id": user_id,
                "outcome": outcome,
                "source": SourcePosition(topic="in", partition=0, offset=offset),
                "processed_at": datetime(2026, 12, 1, tzinfo=UTC),
                **fields,
            }
        )
    )


RECORDS = [
    record("burst", "u-1", "e-1"),
    record("burst", "u-1", "e-2"),
    record("escalation", "u-2", "e-3"),
    record("bad record", "u-3", None),
]
RESULTS = [
    result("e-1", "u-1", Outcome.SUPERSEDED, 0),
    result("e-2", "u-1", Outcome.SYNCED, 1),
    result("e-3", "u-2", Outcome.REJECTED, 2, reason="unknown_role", escalation=True),
    result(None, "u-3", Outcome.INVALID, 3, reason="invalid_json"),
]


def test_results_are_grouped_by_kind_in_the_order_fed() -> None:
    """Each kind lists its record count and its outcomes, matched by event id or record key."""
    kinds = kinds_of_change(RECORDS, RESULTS)
    assert [(k.label, k.events, k.outcome_text()) for k in kinds] == [
        ("burst", 2, "superseded 1, synced 1"),
        ("escalation", 1, "rejected unknown_role ESCALATION"),
        ("bad record", 1, "invalid invalid_json"),
    ]


def test_a_record_without_a_result_says_so() -> None:
    """A record whose audit result is missing is shown as `no result`, not dropped."""
    [kind] = kinds_of_change([record("lost", "u-9", "e-9")], RESULTS)
    assert kind.outcome_text() == "no result"


def test_summary_rows_are_aligned_and_end_with_next_steps() -> None:
    """Every row of the table puts its outcome in one column; the footer names what to try."""
    lines = summary_lines(RECORDS, RESULTS, before={}, after={"roles": []}, user_id="u-1")
    header = next(line for line in lines if line.startswith("  kind of change"))
    column = header.index("outcome")
    rows = lines[lines.index(header) + 1 : lines.index(header) + 4]
    assert [row[column:] for row in rows] == [
        "superseded 1, synced 1",
        "rejected unknown_role ESCALATION",
        "invalid invalid_json",
    ]
    assert lines[lines.index("Next steps:") + 1].startswith("  cxone-role-sync sandbox")
