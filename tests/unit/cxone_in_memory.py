"""One CXone user held in memory behind the synchronizer's client interface (unit tests only)."""

from __future__ import annotations

import copy
import json
from typing import Any

from consumer.errors import PermanentError
from consumer.scim.client import Plan, ScimUser, WriteOutcome


class InMemoryCxone:
    """Reads, plans and writes one user document; `refuse_*` fails every GET or PUT with it."""

    def __init__(
        self,
        document: dict[str, Any],
        *,
        refuse_reads: PermanentError | None = None,
        refuse_writes: PermanentError | None = None,
    ) -> None:
        self.document = document
        self.refuse_reads = refuse_reads
        self.refuse_writes = refuse_writes
        self.writes = 0

    async def update_user(self, user_id: str, plan: Plan) -> WriteOutcome:
        """The read-modify-write of `ScimClient.update_user`, one attempt, no I/O."""
        assert user_id == self.document["id"]
        if self.refuse_reads is not None:
            self.refuse_reads.attempts = 1
            raise self.refuse_reads
        before = ScimUser(copy.deepcopy(self.document), None)
        payload = await plan(before)
        if payload is None:
            return WriteOutcome(before=before, payload=None, status=None, attempts=1)
        if self.refuse_writes is not None:
            self.refuse_writes.attempts = 1
            raise self.refuse_writes
        self.document = json.loads(payload)
        self.writes += 1
        return WriteOutcome(before=before, payload=payload, status=200, attempts=1)
