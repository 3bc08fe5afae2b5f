"""The mass-revocation guard: a sliding window and the gate that holds revocations it refuses.

`RevocationGuard` is the pure window (the caller passes the clock); `RevocationGate` is the async
side that parks revocations while the window is tripped, until an operator releases it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import structlog

from consumer.catalog import Policy
from consumer.observability.metrics import GUARD_TRIPPED

log = structlog.get_logger(__name__)


class RevocationGuard:
    """Lets at most `max_revocations` through per window; once tripped, holds until released.

    The caller passes the clock (a monotonic time in seconds) so the guard never reads one, and
    chooses what one revocation is (an event that removes roles, or each role removed). Not
    thread-safe: it belongs to the one event loop that applies changes.
    """

    __slots__ = ("_count", "_tripped", "_window", "max_revocations", "window_seconds")

    def __init__(self, max_revocations: int, window_seconds: float) -> None:
        if max_revocations < 1:
            raise ValueError("max_revocations must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.max_revocations = max_revocations
        self.window_seconds = window_seconds
        self._window: deque[tuple[float, int]] = deque()
        self._count = 0
        self._tripped = False

    @property
    def tripped(self) -> bool:
        """Whether revocations are held back until an operator releases the guard."""
        return self._tripped

    def count_in_window(self, now: float) -> int:
        """How many revocations were let through in the window ending at `now`."""
        self._expire(now)
        return self._count

    def record(self, now: float, revocations: int = 1) -> bool:
        """Count revocations arriving at `now`: True if they may proceed, False if tripped."""
        if revocations < 0:
            raise ValueError("revocations must not be negative")
        if self._tripped:
            return False
        self._expire(now)
        if self._count + revocations > self.max_revocations:
            # Tripping is sticky: a burst that looks like an IdP mistake needs a human to
            # look before anything more is taken away, not just a quiet minute.
            self._tripped = True
            return False
        if revocations:
            self._window.append((now, revocations))
            self._count += revocations
        return True

    def release(self) -> None:
        """Forget the window and let revocations through again."""
        self._window.clear()
        self._count = 0
        self._tripped = False

    def _expire(self, now: float) -> None:
        while self._window and now - self._window[0][0] >= self.window_seconds:
            _, revocations = self._window.popleft()
            self._count -= revocations


class RevocationGate:
    """Counts revocations through the guard; a tripped guard parks them, nothing is skipped."""

    def __init__(
        self, guard: RevocationGuard | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._guard = guard
        self._clock = clock
        self._released = asyncio.Event()
        GUARD_TRIPPED.set(0)

    @property
    def tripped(self) -> bool:
        """Whether revocations are being held."""
        return self._guard is not None and self._guard.tripped

    async def admit(self) -> bool:
        """Count one revocation; wait while the guard is tripped. True when it had to wait."""
        guard = self._guard
        if guard is None:
            return False
        waited = False
        while True:
            if not guard.tripped and guard.record(self._clock()):
                return waited
            if not waited:
                GUARD_TRIPPED.set(1)
                log.error(
                    "guard.tripped",
                    revocations_in_window=guard.count_in_window(self._clock()),
                    max_revocations=guard.max_revocations,
                    window_seconds=guard.window_seconds,
                    action=(
                        "revocations held; to resume, POST /guard/release on the metrics port "
                        "with 'Authorization: Bearer <ADMIN_TOKEN>'; with ADMIN_TOKEN unset the "
                        "release is disabled: restart the service (with ADMIN_TOKEN set to "
                        "release a burst larger than the guard allows)"
                    ),
                )
            waited = True
            self._released.clear()
            await self._released.wait()

    def release(self) -> bool:
        """Release a tripped guard (operator action); False when it was not tripped."""
        if self._guard is None or not self._guard.tripped:
            return False
        self._guard.release()
        GUARD_TRIPPED.set(0)
        log.warning("guard.released")
        self._released.set()
        return True


def build_gate(policy: Policy, *, clock: Callable[[], float] = time.monotonic) -> RevocationGate:
    """The mass-revocation gate the policy asks for (a pass-through when it asks for none)."""
    config = policy.mass_revocation_guard
    guard = (
        None if config is None else RevocationGuard(config.max_revocations, config.window_seconds)
    )
    return RevocationGate(guard, clock=clock)
