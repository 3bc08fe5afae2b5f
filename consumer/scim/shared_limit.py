"""The configured ceiling, shared by the consumer group: each member sends in its own time slots.

`SharedRateLimiter` paces a member on the group's `SlotGrid`: the slots of the partitions it
owns (re-split at every rebalance through `set_share`), or a replay's slots. Below the slots it
still adapts: a 429 honours `Retry-After` and cuts the part of its slots the member uses, which
then grows back while requests succeed, so a ceiling set above what the tenant really allows
costs a few 429s, not a stream of them. Using fewer of its own slots never moves a member into
another's, so adapting keeps the group's sends apart.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from consumer.observability.metrics import RATE_ALLOWED
from consumer.scim.slots import SlotGrid
from consumer.scim.throttle import AdaptiveRateLimiter, PacedSends, RateLimiter
from consumer.share import Share

WHOLE = Share.whole()
# How often a member without slots (it owns no partition) looks again whether it got some.
IDLE_RECHECK_SECONDS = 0.5


class SharedRateLimiter(PacedSends):
    """Sends in this member's slots of the group's grid, using a part of them that adapts."""

    def __init__(
        self,
        grid: SlotGrid,
        *,
        share: Share | None = WHOLE,
        min_fraction: float = 0.05,
        decrease_factor: float = 0.8,
        growth_per_second: float = 0.05,
        max_retry_after_seconds: float = 300.0,
        on_change: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < min_fraction <= 1:
            raise ValueError("min_fraction must be in (0, 1]")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        self._grid = grid
        # None: the replay's slots.
        self._share = share
        self._min_fraction = min_fraction
        self._decrease = decrease_factor
        self._growth = growth_per_second
        super().__init__(max_retry_after_seconds=max_retry_after_seconds, clock=clock, sleep=sleep)
        self._on_change = on_change
        self._wall = wall_clock
        # The part of its own slots the member uses (1.0 = all of them).
        self._fraction = 1.0
        self._next_allowed = -math.inf
        self._last_sent = -math.inf
        self._last_cut = -math.inf
        self._changed()

    @property
    def share(self) -> Share | None:
        """The member's share of the partitions; None when it paces a replay."""
        return self._share

    @property
    def current_rate_per_minute(self) -> float:
        """The requests a minute this member may send now."""
        return self._grid.rate_per_minute(self._share) * self._fraction

    @property
    def ceiling_per_minute(self) -> float:
        """The group's ceiling per minute."""
        return 60.0 / self._grid.interval

    def set_share(self, share: Share) -> None:
        """Pace in the slots of a new assignment from now on."""
        self._share = share
        self._changed()

    def try_acquire(self) -> float:
        """Take the current slot if it is this member's and free, returning 0.0; else the wait."""
        if blocked := self._retry_after_left(self._clock()):
            return blocked
        wall = self._wall()
        # A send that went out late does not bring the next one closer: never two of this
        # member's sends less than an interval apart, however late the event loop woke.
        spaced = self._last_sent + self._grid.interval
        if wall < spaced:
            return spaced - wall
        slot = self._grid.next_slot(max(wall, self._next_allowed), self._share)
        if slot is None:
            return IDLE_RECHECK_SECONDS
        if slot > wall:
            return slot - wall
        own = self._own_interval()
        # The same slot is never taken twice; below a fraction of 1, own slots are skipped.
        self._next_allowed = slot + max(own * (1 / self._fraction - 1), self._grid.interval / 2)
        self._last_sent = wall
        return 0.0

    def on_success(self) -> None:
        """A request got an answer that was not a 429: use a little more of the own slots."""
        if self._fraction < 1.0:
            self._fraction = min(1.0, self._fraction + self._growth * self._own_interval())
            self._changed()

    def on_throttled(
        self, retry_after: float | None = None, *, sent_at: float | None = None
    ) -> None:
        """CXone answered 429: wait `retry_after`, and use fewer slots, once per overload."""
        now = self._clock()
        self._block(retry_after, now)
        # The answers to requests sent before the last cut report the same overload.
        if sent_at is not None and sent_at <= self._last_cut:
            return
        self._fraction = max(self._min_fraction, self._fraction * self._decrease)
        self._last_cut = now
        self._changed()

    def _own_interval(self) -> float:
        """Seconds between this member's slots on average (one interval when it has none)."""
        rate = self._grid.rate_per_minute(self._share)
        return 60.0 / rate if rate > 0 else self._grid.interval

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.current_rate_per_minute)


def build_limiter(
    ceiling_per_minute: float, replay_share: float = 0.0, *, replay: bool = False
) -> RateLimiter:
    """The limiter of `run` (or of `replay`): the group's slots under a ceiling, else adaptive.

    Without a ceiling each instance finds the tenant's limit by itself (`AdaptiveRateLimiter`);
    with one, the members of the group and a replay share it slot by slot.
    """
    if ceiling_per_minute <= 0:
        return AdaptiveRateLimiter(on_change=RATE_ALLOWED.set)
    grid = SlotGrid.per_minute(ceiling_per_minute, replay_share)
    return SharedRateLimiter(
        grid, share=None if replay else Share.whole(), on_change=RATE_ALLOWED.set
    )
