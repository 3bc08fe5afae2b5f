"""The story the demo tells at the end: each kind of change with its outcome, and what to try next.

Pure: sample records and audit events in, lines of text out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from consumer.events import AuditEvent, Outcome
from consumer.sandbox.samples import SampleRecord

NICE = "urn:ietf:params:scim:schemas:extension:nice:2.0:User"


@dataclass
class KindOfChange:
    """The sample records of one label and what became of them."""

    label: str
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def outcome_text(self) -> str:
        """`synced`, or `synced 1, superseded 3` when the records fared differently."""
        if len(self.outcomes) == 1:
            return next(iter(self.outcomes))
        return ", ".join(f"{text} {count}" for text, count in self.outcomes.most_common())


def describe(event: AuditEvent) -> str:
    """Outcome, reason code and ESCALATION, as one phrase."""
    data = event.data
    words = [data.outcome.value, data.reason or "", "ESCALATION" if data.escalation else ""]
    return " ".join(word for word in words if word)


def kinds_of_change(
    records: Iterable[SampleRecord], results: Iterable[AuditEvent]
) -> list[KindOfChange]:
    """Group the results by the label of the record each belongs to, in the order fed."""
    by_event_id: dict[str, AuditEvent] = {}
    # Records that are not valid events have no event id; their audit names the record key.
    by_key: dict[str, AuditEvent] = {}
    for result in results:
        if result.data.event_id is not None:
            by_event_id[result.data.event_id] = result
        elif result.data.user_id is not None:
            by_key[result.data.user_id] = result
    kinds: dict[str, KindOfChange] = {}
    for record in records:
        kind = kinds.setdefault(record.label, KindOfChange(record.label))
        kind.events += 1
        event_id = _event_id(record.value)
        found = by_event_id.get(event_id) if event_id else None
        if found is None and record.key is not None:
            found = by_key.get(record.key.decode(errors="replace"))
        kind.outcomes[describe(found) if found is not None else "no result"] += 1
    return list(kinds.values())


def _event_id(value: bytes) -> str | None:
    try:
        document = json.loads(value)
    except ValueError:
        return None
    event_id = document.get("id") if isinstance(document, dict) else None
    return event_id if isinstance(event_id, str) else None


def summary_lines(
    records: Sequence[SampleRecord],
    results: Sequence[AuditEvent],
    *,
    before: dict[str, object],
    after: dict[str, object],
    user_id: str,
) -> list[str]:
    """The whole summary: counts, the kinds of change, three audit events, kept data, next steps."""
    counts = Counter(result.data.outcome.value for result in results)
    lines = ["", f"{len(records)} events in, {len(results)} audit results out"]
    lines += [
        f"  {outcome.value:<11}{counts[outcome.value]:>4}" for outcome in Outcome if counts[outcome]
    ]
    kinds = kinds_of_change(records, results)
    width = max(len("kind of change"), *(len(kind.label) for kind in kinds))
    lines += ["", f"  {'kind of change':<{width}}  {'events':>6}  outcome"]
    lines += [f"  {kind.label:<{width}}  {kind.events:>6}  {kind.outcome_text()}" for kind in kinds]
    lines += ["", "Three of the audit events (cxone-role-sync audit --json shows them all):"]
    for title, example in _examples(results):
        lines += [f"  {title}:", "  " + example.data.model_dump_json(exclude_none=True)]
    lines += _preserved(before, after, user_id)
    lines += [
        "",
        "Next steps:",
        "  cxone-role-sync sandbox      keep a broker and simulator running; it prints the",
        "                               environment, the seeded users and lines to paste",
        "  cxone-role-sync run          the consumer, pointed at them by that environment",
        "  cxone-role-sync send --user u-1001 --roles agent_voice,reporting_viewer",
        "  cxone-role-sync audit --follow",
        "  curl -s localhost:9400/metrics | grep cxone_sync_events_total   (while run runs)",
    ]
    return lines


def _examples(results: Sequence[AuditEvent]) -> list[tuple[str, AuditEvent]]:
    """An approved privileged grant, a refused escalation and a bad record, when present."""
    wanted: list[tuple[str, Callable[[AuditEvent], bool]]] = [
        ("an approved privileged grant", lambda e: e.data.approval is not None and _synced(e)),
        ("a refused escalation", lambda e: e.data.escalation),
        ("a bad record", lambda e: e.data.outcome is Outcome.INVALID),
    ]
    found = []
    for title, matches in wanted:
        example = next((event for event in results if matches(event)), None)
        if example is not None:
            found.append((title, example))
    return found


def _synced(event: AuditEvent) -> bool:
    return event.data.outcome is Outcome.SYNCED


def _preserved(before: dict[str, object], after: dict[str, object], user_id: str) -> list[str]:
    """What the write kept of one user: everything but the roles."""
    lines = ["", f"{user_id} after the sync: roles changed, everything else kept:"]
    for attribute, name in [
        ("name", "name"),
        ("emails", "emails"),
        ("phoneNumbers", "phoneNumbers"),
        ("title", "title"),
        (NICE, "NICE extension"),
    ]:
        kept = "kept" if before.get(attribute) == after.get(attribute) else "CHANGED"
        lines.append(f"  {name:<16}{kept}")
    roles = after.get("roles") or []
    assert isinstance(roles, list)
    lines.append(f"  {'roles':<16}" + ", ".join(str(role.get("value")) for role in roles))
    return lines
