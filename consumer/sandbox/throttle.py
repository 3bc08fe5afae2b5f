"""The simulator's rate limit: a token bucket, and the `Retry-After` it answers with."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import formatdate
from enum import StrEnum

from consumer.token_bucket import TokenBucket

__all__ = ["RetryAfterStyle", "TokenBucket", "retry_after_value"]


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
