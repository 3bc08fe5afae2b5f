"""Client-side pacing of CXone requests that finds the tenant's unpublished rate limit by itself.

`AdaptiveRateLimiter` paces sends (GCRA, a small burst) at an allowed rate that follows AIMD:
cut on a 429, at most once per round of requests already in flight, then grow linearly while
requests succeed and the rate is actually in use. Several instances, each with its own limiter,
settle just under the limit they share, the way TCP flows share a link: each halves its rate,
and grows in proportion to the square root of its share of the input topic's partitions, so the
more members share the limit, the slower each probes for more and the rarer the 429s that the
probing costs (n equal members together grow sqrt(n) times as fast as one). A member that owns
every partition is the group's only sender and cuts gently instead (to 0.8), which keeps it
nearer the limit for as few 429s. A configured ceiling is never exceeded; a `Retry-After` stops
every send until it has passed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from consumer.share import Share

DEFAULT_FLOOR_PER_MINUTE = 6.0
# With no ceiling the limiter starts unpaced and only measures, so the first 429 can cut from
# what was really sent; this is the rate assumed if a 429 comes before anything was measured.
FALLBACK_RATE_PER_MINUTE = 6000.0
# A member with no partition left still grows a little, so it is not stuck once it gets some.
MIN_GROWTH_SCALE = 0.05
# How far back the send-rate meter looks; long enough to smooth bursts, short enough to follow.
METER_SECONDS = 2.0


class RateLimiter(Protocol):
    """Paces SCIM requests and hears how CXone answered them (both limiters of the service)."""

    @property
    def current_rate_per_minute(self) -> float:
        """The requests a minute this instance may send now."""
        ...

    async def acquire(self) -> float:
        """Wait for a send slot; returns the clock reading at which it was granted."""
        ...

    def set_share(self, share: Share) -> None:
        """This member's share of the input topic's partitions changed (a rebalance)."""
        ...

    def on_success(self) -> None:
        """A request got an answer that was not a 429."""
        ...

    def on_throttled(
        self, retry_after: float | None = None, *, sent_at: float | None = None
    ) -> None:
        """CXone answered 429."""
        ...


class PacedSends:
    """The half every limiter shares: queueing for a send slot, and honouring `Retry-After`.

    A subclass says in `try_acquire` how long until its next slot (calling `_retry_after_left`
    first) and calls `_block` when CXone answers 429.
    """

    def __init__(
        self,
        *,
        max_retry_after_seconds: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._max_retry_after = max_retry_after_seconds
        self._clock = clock
        self._sleep = sleep
        self._blocked_until = -math.inf
        self._lock = asyncio.Lock()

    def try_acquire(self) -> float:
        """Take a send slot if one is free now and return 0.0; else return the seconds to wait."""
        raise NotImplementedError

    async def acquire(self) -> float:
        """Wait for a send slot; returns the clock reading at which it was granted."""
        # The lock queues waiters in arrival order, so only the head sleeps and nobody starves.
        async with self._lock:
            while True:
                wait = self.try_acquire()
                if wait <= 0:
                    return self._clock()
                await self._sleep(wait)

    def _retry_after_left(self, now: float) -> float:
        """Seconds of a `Retry-After` still to wait at `now` (0 when none)."""
        return max(0.0, self._blocked_until - now)

    def _block(self, retry_after: float | None, now: float) -> bool:
        """Stop every send for `retry_after` (capped); True when that moved the end later."""
        if retry_after is None or retry_after <= 0:
            return False
        until = now + min(retry_after, self._max_retry_after)
        if until <= self._blocked_until:
            return False
        self._blocked_until = until
        return True


class AdaptiveRateLimiter(PacedSends):
    """Paces requests below a ceiling and adapts to 429s with additive increase, halving on loss."""

    def __init__(
        self,
        *,
        ceiling_per_minute: float = 0.0,
        floor_per_minute: float = DEFAULT_FLOOR_PER_MINUTE,
        # No burst by default: evenly spaced sends, which a tenant bucket without burst accepts.
        burst: int = 1,
        decrease_factor: float = 0.5,
        alone_decrease_factor: float = 0.8,
        growth_per_second: float = 0.01,
        cut_cooldown_seconds: float = 1.0,
        max_retry_after_seconds: float = 300.0,
        on_change: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if ceiling_per_minute < 0:
            raise ValueError("ceiling_per_minute must be 0 (none) or positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if not (0 < decrease_factor < 1 and 0 < alone_decrease_factor < 1):
            raise ValueError("decrease_factor and alone_decrease_factor must be between 0 and 1")
        self._ceiling = ceiling_per_minute / 60 if ceiling_per_minute > 0 else None
        self._floor = floor_per_minute / 60
        if self._ceiling is not None:
            self._floor = min(self._floor, self._ceiling)
        self._burst = burst
        self._shared_decrease = decrease_factor
        self._alone_decrease = alone_decrease_factor
        # Until an assignment says this member owns every partition, others may send too.
        self._decrease = decrease_factor
        self._growth = growth_per_second
        # The part of `growth_per_second` this member grows by: sqrt(its share of partitions).
        self._growth_scale = 1.0
        self._cooldown = cut_cooldown_seconds
        super().__init__(max_retry_after_seconds=max_retry_after_seconds, clock=clock, sleep=sleep)
        # Allowed sends per second; None while unpaced (no ceiling and no 429 yet).
        self._rate: float | None = self._ceiling
        # Additive increase, in sends/second gained per second of saturated success.
        self._step = 0.0 if self._ceiling is None else self._ceiling * growth_per_second
        # GCRA's theoretical arrival time: a send is allowed once now >= tat - tolerance.
        self._tat = -math.inf
        self._last_cut = -math.inf
        self._meter_count = 0.0
        self._meter_at = -math.inf
        self._meter_start: float | None = None
        self._on_change = on_change
        self._changed()

    @property
    def current_rate_per_minute(self) -> float:
        """The rate sends are paced at now, per minute; infinity while unpaced."""
        return math.inf if self._rate is None else self._rate * 60

    @property
    def ceiling_per_minute(self) -> float:
        """The configured ceiling per minute; 0 when there is none."""
        return 0.0 if self._ceiling is None else self._ceiling * 60

    def set_share(self, share: Share) -> None:
        """Cut gently while this member owns every partition (it sends alone), else halve; grow
        by the square root of the member's share of the partitions."""
        alone = share.fraction == 1.0
        self._decrease = self._alone_decrease if alone else self._shared_decrease
        scale = max(math.sqrt(share.fraction), MIN_GROWTH_SCALE)
        self._step *= scale / self._growth_scale
        self._growth_scale = scale

    def try_acquire(self) -> float:
        """Take a send slot if one is free now and return 0.0; else return the seconds to wait."""
        now = self._clock()
        if blocked := self._retry_after_left(now):
            return blocked
        if self._rate is not None:
            interval = 1 / self._rate
            allowed_at = self._tat - self._tolerance(interval)
            if now < allowed_at:
                return allowed_at - now
            self._tat = max(self._tat, now) + interval
        self._meter(now)
        return 0.0

    def on_success(self) -> None:
        """A paced request got an answer that was not a 429: grow the rate a little."""
        if self._rate is None:
            return
        now = self._clock()
        # Grow only while the allowed rate is really used; an idle limiter must not drift up to
        # a rate it has never tried, and then flood the tenant at the next burst of work.
        if self._measured(now) < self._rate / 2:
            return
        # Adding step/rate per answer adds `step` per second when sending at the full rate.
        grown = self._rate + self._step / self._rate
        self._rate = grown if self._ceiling is None else min(grown, self._ceiling)
        self._changed()

    def on_throttled(
        self, retry_after: float | None = None, *, sent_at: float | None = None
    ) -> None:
        """CXone answered 429: honour `retry_after` and cut the rate once per overload."""
        now = self._clock()
        # Whether an earlier `Retry-After` held sends back within the meter's window.
        paused = now - self._blocked_until < METER_SECONDS
        if self._block(retry_after, now):
            self._tat = max(self._tat, self._blocked_until + self._current_tolerance())
        # One overload answers many requests at once with 429; only the first cut counts. With
        # `sent_at` (from acquire) we know exactly which answers predate the cut; without it, a
        # cool-down stands in for one round trip.
        if sent_at is not None:
            if sent_at < self._last_cut:
                return
        elif now - self._last_cut < self._cooldown:
            return
        self._cut(now, paused=paused)

    def _cut(self, now: float, *, paused: bool) -> None:
        measured = self._measured(now)
        if self._rate is None:
            base = measured if measured > 0 else FALLBACK_RATE_PER_MINUTE / 60
        elif measured <= 0 or paused:
            # A `Retry-After` pause in the meter's window held every send back: the meter reads
            # the pause, not the rate that drew this 429. Cut the allowance.
            base = self._rate
        else:
            # When fewer requests went out than allowed, cutting the allowance would change
            # nothing; cut what was really sent.
            base = min(self._rate, measured)
        self._rate = max(self._floor, base * self._decrease)
        self._step = base * self._growth * self._growth_scale
        self._last_cut = now
        # Restart pacing now, without the burst a quiet period would otherwise have saved up.
        self._tat = max(self._tat, now + self._current_tolerance())
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.current_rate_per_minute)

    def _tolerance(self, interval: float) -> float:
        return (self._burst - 1) * interval

    def _current_tolerance(self) -> float:
        return 0.0 if self._rate is None else self._tolerance(1 / self._rate)

    def _meter(self, now: float) -> None:
        if self._meter_start is None:
            self._meter_start = now
            self._meter_at = now
        self._meter_count = self._meter_count * math.exp((self._meter_at - now) / METER_SECONDS)
        self._meter_count += 1
        self._meter_at = now

    def _measured(self, now: float) -> float:
        """Sends per second over the last few seconds (an exponentially weighted count)."""
        if self._meter_start is None:
            return 0.0
        count = self._meter_count * math.exp((self._meter_at - now) / METER_SECONDS)
        # Early on the weighted count has not filled up yet; divide by the weight it has so far.
        elapsed = max(now - self._meter_start, 0.5)
        return count / (METER_SECONDS * (1 - math.exp(-elapsed / METER_SECONDS)))
