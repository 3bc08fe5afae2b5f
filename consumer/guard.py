"""The mass-revocation guard: a sliding window that trips when revocations come too fast."""

from __future__ import annotations

from collections import deque

from consumer.catalog import MassRevocationGuardConfig


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

    @classmethod
    def from_config(cls, config: MassRevocationGuardConfig) -> RevocationGuard:
        """The guard the policy file's `mass_revocation_guard` describes."""
        return cls(config.max_revocations, config.window_seconds)

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
