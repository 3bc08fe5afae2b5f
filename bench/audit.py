"""Counting audit events as they arrive, without keeping them: the backlog run has 200,000."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime

from consumer.sandbox.feed import TopicReader


class AuditTally(TopicReader):
    """Reads the audit topic from the beginning; keeps distinct sources, outcomes and latencies.

    Records are parsed with `json` rather than the pydantic models and then dropped, so the
    reader's own memory stays small; only one (partition, offset) pair per input record is kept.
    """

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        super().__init__(bootstrap_servers, topic)
        self.sources: set[tuple[int, int]] = set()
        self.duplicates = 0
        self.outcomes: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        # Wall-clock send times by event id, filled by the producer; with them, end-to-end
        # latency is `processed_at` (when the service had the result) minus the send time.
        self.sent_at: dict[str, float] = {}
        self.end_to_end_ms: list[float] = []
        self.last_new_at = time.perf_counter()

    @property
    def distinct(self) -> int:
        """How many input records have at least one audit event."""
        return len(self.sources)

    def start_phase(self) -> None:
        """Forget outcomes and latencies counted so far (the distinct sources stay)."""
        self.outcomes = Counter()
        self.latencies_ms = []
        self.end_to_end_ms = []

    async def poll(self) -> int:
        """Fetch what arrived and count it; returns how many input records have an audit."""
        await super().poll()
        for _, value, _ in self.records:
            if not value:
                continue
            data = json.loads(value)["data"]
            source = (int(data["source"]["partition"]), int(data["source"]["offset"]))
            if source in self.sources:
                self.duplicates += 1
                continue
            self.sources.add(source)
            self.outcomes[data["outcome"]] += 1
            self.latencies_ms.append(float(data["latency_ms"]))
            sent = self.sent_at.pop(str(data.get("event_id")), None)
            if sent is not None:
                processed = datetime.fromisoformat(data["processed_at"]).timestamp()
                self.end_to_end_ms.append((processed - sent) * 1000)
            self.last_new_at = time.perf_counter()
        self.records.clear()
        return self.distinct
