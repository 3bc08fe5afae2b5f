"""Tests of the simulator's token bucket and its Retry-After values."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from consumer.sandbox.throttle import RetryAfterStyle, TokenBucket, retry_after_value
from tests.conftest import ManualClock


def test_bucket_allows_the_burst_then_asks_to_wait(manual_clock: ManualClock) -> None:
    """A full bucket lets `burst` requests through, then names the wait for the next token."""
    bucket = TokenBucket(per_minute=60, burst=3, clock=manual_clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(1.0)


def test_bucket_refills_at_its_rate_up_to_the_burst(manual_clock: ManualClock) -> None:
    """Tokens come back at per_minute/60 a second and never exceed the burst."""
    bucket = TokenBucket(per_minute=30, burst=2, clock=manual_clock)
    bucket.take()
    bucket.take()
    manual_clock.advance(1.0)
    assert bucket.take() == pytest.approx(1.0)
    manual_clock.advance(1.5)
    assert bucket.take() == 0.0
    manual_clock.advance(600)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, pytest.approx(2.0)]


def test_bucket_refuses_a_meaningless_configuration() -> None:
    """A zero rate or an empty burst is a configuration error."""
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(per_minute=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(per_minute=10, burst=0)


def test_retry_after_in_seconds_rounds_up() -> None:
    """The seconds form is a whole number, rounded up, at least 1."""
    assert retry_after_value(0.2, RetryAfterStyle.SECONDS) == "1"
    assert retry_after_value(2.01, RetryAfterStyle.SECONDS) == "3"


def test_retry_after_as_http_date() -> None:
    """The date form is an IMF-fixdate that many seconds after now."""
    value = retry_after_value(29.5, RetryAfterStyle.HTTP_DATE, wall_clock=lambda: 1_795_881_600.0)
    assert value == "Sat, 28 Nov 2026 16:00:30 GMT"
    assert parsedate_to_datetime(value).timestamp() == 1_795_881_630.0
