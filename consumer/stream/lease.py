"""The membership lease: no write to CXone unless this member is sure it still owns its partitions.

A member keeps its partitions until it gives them up in its own revoke callback or the group
coordinator expires its session, `session_timeout` after the last heartbeat it received. So a
heartbeat the coordinator answered (without error, or with REBALANCE_IN_PROGRESS: the member
stays in the group until it rejoins, which it does only after its revoke callback) proves that no
one else owns this member's partitions until `session_timeout` after it was sent. The lease runs
until then, less a margin for the time a write takes from the check to CXone.

A member that was paused (stopped, swapped out, cut off) wakes with its lease run out: its writes
wait until a heartbeat renews it (the coordinator kept it) or the rebalance that follows cancels
them (it was expelled, and another member may be writing its users).

aiokafka keeps the time of the last successful heartbeat in a local variable of the
coordinator's heartbeat routine, which calls `GroupCoordinator._do_heartbeat` (a coroutine that
returns True on the answers above) for each heartbeat; the lease wraps that method of the one
coordinator it watches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer

from consumer.errors import ConfigurationError

log = structlog.get_logger(__name__)


class MembershipLease:
    """Until when this member may write: renewed by each answered heartbeat and each assignment."""

    def __init__(
        self,
        *,
        session_timeout: float,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if margin >= session_timeout:
            raise ValueError("the lease margin must be shorter than the session timeout")
        self._length = session_timeout - margin
        self._clock = clock
        self._until = float("-inf")
        self._waiters: list[asyncio.Future[None]] = []
        self._waiting_reported = False

    @property
    def expires_at(self) -> float:
        """The clock reading at which the lease runs out."""
        return self._until

    def holds(self) -> bool:
        """Whether a write may start now."""
        return self._clock() < self._until

    def renew(self, proved_at: float) -> None:
        """Membership was proved by a request sent at `proved_at`: the lease runs from there."""
        self._until = max(self._until, proved_at + self._length)
        if self.holds():
            if self._waiting_reported:
                log.info("stream.lease_renewed")
                self._waiting_reported = False
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait(self) -> None:
        """Return once the lease holds; a revocation cancels the waiting work meanwhile."""
        while not self.holds():
            if not self._waiting_reported:
                self._waiting_reported = True
                log.warning(
                    "stream.lease_expired",
                    expired_seconds_ago=round(self._clock() - self._until, 3),
                )
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def watch(self, kafka: AIOKafkaConsumer) -> None:
        """Renew the lease with each heartbeat the coordinator of `kafka` answers.

        Called once `kafka` has started (its coordinator exists from then on).
        """
        coordinator = getattr(kafka, "_coordinator", None)
        heartbeat: Callable[[], Awaitable[bool]] | None = getattr(
            coordinator, "_do_heartbeat", None
        )
        if coordinator is None or heartbeat is None:
            raise ConfigurationError(
                "start-up error: this aiokafka has no GroupCoordinator._do_heartbeat to watch; "
                "the membership lease cannot be kept"
            )

        async def observed_heartbeat(*args: Any, **kwargs: Any) -> bool:
            sent_at = self._clock()
            answered = await heartbeat(*args, **kwargs)
            if answered:
                self.renew(sent_at)
            return answered

        coordinator._do_heartbeat = observed_heartbeat
