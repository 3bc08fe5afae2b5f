"""Keeps this member's shares of the group's budgets in step with its partitions.

At every assignment the member's share (partitions owned out of the input topic's) is handed to
the rate limiter, which then sends in those partitions' slots (or, with no ceiling, cuts gently
only while it owns them all), and to the mass-revocation gate,
which then spends those partitions' budgets. Members leaving, joining or dying all end in a new
assignment, so the shares are re-split by the same rebalance that moves the partitions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.observability.metrics import PARTITION_SHARE
from consumer.revocation_gate import RevocationGate
from consumer.scim.throttle import RateLimiter
from consumer.share import Share

log = structlog.get_logger(__name__)


class AssignmentShare:
    """Re-splits the rate limit and the guard's budget whenever the assignment changes."""

    def __init__(
        self,
        kafka: AIOKafkaConsumer,
        topic: str,
        *,
        limiter: RateLimiter | None = None,
        gate: RevocationGate | None = None,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._limiter = limiter
        self._gate = gate
        self.share: Share | None = None

    def on_assignment(self, assignment: Iterable[TopicPartition]) -> None:
        """Hand the share of a new assignment to the limiter and the gate."""
        owned = {tp.partition for tp in assignment if tp.topic == self._topic}
        known = self._kafka.partitions_for_topic(self._topic) or set()
        total = max([len(known), *(partition + 1 for partition in owned), 1])
        share = Share.of(owned, total)
        self.share = share
        PARTITION_SHARE.set(share.fraction)
        if self._limiter is not None:
            self._limiter.set_share(share)
        if self._gate is not None:
            self._gate.reassign(share)
        rate = None if self._limiter is None else self._limiter.current_rate_per_minute
        log.info(
            "share.assigned",
            share=share.describe(),
            # None while unpaced: no ceiling, and no 429 has taught the limiter one yet.
            rate_per_minute=round(rate, 1) if rate is not None and math.isfinite(rate) else None,
        )
