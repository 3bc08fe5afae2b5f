"""What the simulator saw: one record per request, for tests to assert on."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """One request as the simulator received and answered it; never holds credentials.

    `status` stays None while the request is in flight, and for good when no response was sent
    (a reset or a held connection); `fault` names the injected fault, if any.
    """

    method: str
    path: str
    query: str = ""
    body: bytes = b""
    if_match: str | None = None
    received_at: float = field(default_factory=time.time)
    status: int | None = None
    fault: str | None = None
    finished: bool = False

    def json(self) -> Any:
        """Return the request body parsed as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def as_json(self) -> dict[str, Any]:
        """Return the record as the admin endpoint serves it."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "fault": self.fault,
            "if_match": self.if_match,
            "received_at": self.received_at,
            "finished": self.finished,
            "body": self.json(),
        }


class RequestLog:
    """The records of every request, oldest first."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []

    def open(self, record: RequestRecord) -> RequestRecord:
        """Add a record as its request arrives, and return it for the answer to fill in."""
        self._records.append(record)
        return record

    @property
    def records(self) -> list[RequestRecord]:
        """A copy of the records, oldest first."""
        return list(self._records)

    def clear(self) -> None:
        """Forget every record."""
        self._records.clear()
