"""The simulator's rate limit: a token bucket, and the `Retry-After` it answers with."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import formatdate
from enum import StrEnum


class RetryAfterStyle(StrEnum):
    """How a 429 spells `Retry-After` (RFC 9110 §10.2.3 allows both)."""

    SECONDS = "seconds"
    HTTP_DATE = "date"


def retry_after_value(
    wait_seconds: float,
    style: RetryAfterStyle,
    *,
    wall_clock: Callable[[], float] = time.time,
) -> str:
    """Return the `Retry-After` header value for a wait, rounded up to whole seconds."""
    whole = max(1, math.ceil(wait_seconds))
    if style is RetryAfterStyle.HTTP_DATE:
        return formatdate(wall_clock() + whole, usegmt=True)
    return str(whole)


class TokenBucket:
    """Allows `burst` requests at once, refilled at `per_minute` requests a minute."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.per_minute = per_minute
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> float:
        """Take one token: return 0 when the request may pass, else the seconds until it may."""
        now = self._clock()
        rate = self.per_minute / 60.0
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / rate
