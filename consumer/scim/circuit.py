"""The circuit breaker that keeps new work away from a CXone that is down.

::

    CLOSED ──(failure ratio >= threshold over the recent window)──▶ OPEN
    OPEN ──(probe interval elapsed; one probe sent)──▶ HALF_OPEN
    HALF_OPEN ──(probe succeeded)──▶ CLOSED        (window cleared, probe interval reset)
    HALF_OPEN ──(probe failed)──▶ OPEN             (probe interval doubled, up to a maximum)
    HALF_OPEN ──(probe cancelled or timed out)──▶ OPEN, the next probe due at once
    HALF_OPEN ──(probe forbidden)──▶ OPEN          (probe interval back to its base)

Failures are transient troubles of the service (5xx, timeouts, network, no token, runs of
403); any answer that shows the service at work, a permanent 4xx included, is a success. The
caller reports outcomes, and learns of open/closed through `on_change`, where it sets the gauge
and pauses partitions.

Given a probe (`probe_with`), the breaker probes on its own timer: one request, sent by a task
of its own, whatever work is queued, paused or cancelled. While it is open no sender is let
through. Without one, the first sender to ask once the interval has passed is the probe.

A probe answered 403 is evidence of its own: CXone is reachable, so the outage is over, but
these credentials may not do what the probe asked. It neither closes the circuit (a run of 403s
may mean the credentials lost their rights, and work let through would fail for good) nor counts
as an outage (no doubling of the interval): the next probe follows at the base interval, and the
probe itself chooses what to ask next (`ProbeTargets`: another user).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import Context
from enum import StrEnum

import structlog

log = structlog.get_logger(__name__)


class ProbeVerdict(StrEnum):
    """What a probe that got an answer learned."""

    WORKS = "works"
    """CXone did what the service needs: the circuit closes."""
    FORBIDDEN = "forbidden"
    """CXone answered 403: reachable, but this was refused; the circuit stays open."""


Probe = Callable[[], Awaitable[ProbeVerdict]]
"""One request to CXone: its verdict when CXone answered, raises when it did not (an outage)."""


class CircuitState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens when too many recent requests failed transiently; probes before closing again."""

    def __init__(
        self,
        *,
        window: int = 20,
        window_seconds: float = 60.0,
        min_calls: int = 10,
        failure_ratio: float = 0.5,
        probe_interval: float = 5.0,
        max_probe_interval: float = 60.0,
        probe_timeout: float = 60.0,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 1 <= min_calls <= window:
            raise ValueError("min_calls must be between 1 and window")
        if not 0 < failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        self._min_calls = min_calls
        self._window_seconds = window_seconds
        self._failure_ratio = failure_ratio
        self._base_probe_interval = probe_interval
        self._max_probe_interval = max_probe_interval
        self._probe_timeout = probe_timeout
        self._on_change = on_change
        self._clock = clock
        self._sleep = sleep
        self._state = CircuitState.CLOSED
        # (time, failed) of the most recent outcomes while closed.
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=window)
        self._probe_interval = probe_interval
        self._probe_at = math.inf
        self._probe_deadline = -math.inf
        self._changed = asyncio.Event()
        self._probe: Probe | None = None
        self._prober: asyncio.Task[None] | None = None

    def probe_with(self, probe: Probe) -> None:
        """Probe with `probe` on the breaker's own timer from now on, instead of with a sender."""
        self._probe = probe
        if self._state is not CircuitState.CLOSED:
            self._start_prober()

    async def aclose(self) -> None:
        """Stop probing; the breaker keeps its state."""
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    @property
    def state(self) -> CircuitState:
        """The current state; OPEN turns HALF_OPEN only when a probe is granted."""
        return self._state

    @property
    def is_open(self) -> bool:
        """True unless the circuit is closed: new work should wait."""
        return self._state is not CircuitState.CLOSED

    @property
    def probe_interval(self) -> float:
        """Seconds the circuit stays open before the next probe."""
        return self._probe_interval

    def allow_request(self) -> bool:
        """Whether a new request may go now; in OPEN, grants the single probe once it is due."""
        now = self._clock()
        if self._state is CircuitState.CLOSED:
            return True
        if self._probe is not None:
            # The breaker sends its own probe; senders wait until it closes.
            return False
        if self._state is CircuitState.OPEN:
            if now < self._probe_at:
                return False
            self._state = CircuitState.HALF_OPEN
        elif now < self._probe_deadline:
            return False
        # A probe whose outcome never came (its caller was cancelled) must not wedge the
        # breaker half-open: after probe_timeout another probe is granted.
        self._probe_deadline = now + self._probe_timeout
        self._notify_waiters()
        return True

    def record_success(self) -> None:
        """The service answered (any status but a transient failure)."""
        if self._state is CircuitState.HALF_OPEN:
            self._close()
        elif self._state is CircuitState.CLOSED:
            self._record(failed=False)

    def record_failure(self) -> None:
        """A request failed transiently: 5xx, timeout, network or auth trouble."""
        if self._state is CircuitState.HALF_OPEN:
            self._probe_interval = min(self._probe_interval * 2, self._max_probe_interval)
            self._reopen()
        elif self._state is CircuitState.CLOSED:
            self._record(failed=True)
        # While OPEN, late answers of requests sent before it opened change nothing.

    def abandon_probe(self) -> None:
        """The probe's sender was cancelled: no outcome will come, so another probe is due now."""
        if self._state is CircuitState.HALF_OPEN:
            self._state = CircuitState.OPEN
            self._probe_at = self._clock()
            self._probe_deadline = -math.inf
            self._notify_waiters()

    async def wait_until_closed_or_probe(self) -> None:
        """Return once the circuit is closed or a probe is due (then `allow_request` decides)."""
        while True:
            now = self._clock()
            if self._state is CircuitState.CLOSED:
                return
            if self._probe is not None:
                await self._wait_for_change(math.inf)
                continue
            due = self._probe_at if self._state is CircuitState.OPEN else self._probe_deadline
            if now >= due:
                return
            await self._wait_for_change(due - now)

    async def wait_until_allowed(self) -> bool:
        """Wait until this caller may send; True when it was granted the probe."""
        while True:
            await self.wait_until_closed_or_probe()
            # Nothing is awaited between the wait and the grant, so the first caller to wake
            # takes the probe and the others, finding it half-open, wait again.
            if self.allow_request():
                return self._state is CircuitState.HALF_OPEN

    def _start_prober(self) -> None:
        if self._probe is None or (self._prober is not None and not self._prober.done()):
            return
        # A context of its own: the probe serves no event, so it logs none's context.
        self._prober = asyncio.get_running_loop().create_task(
            self._probe_until_closed(self._probe), name="circuit-probe", context=Context()
        )

    async def _probe_until_closed(self, probe: Probe) -> None:
        while self._state is not CircuitState.CLOSED:
            wait = self._probe_at - self._clock()
            if wait > 0:
                await self._sleep(wait)
                continue
            self._state = CircuitState.HALF_OPEN
            self._notify_waiters()
            try:
                async with asyncio.timeout(self._probe_timeout):
                    verdict = await probe()
            except Exception as error:
                # A probe that timed out is a failed one; its outcome is ours to report.
                log.info("circuit.probe_failed", error=type(error).__name__, detail=str(error))
                self.record_failure()
            else:
                if verdict is ProbeVerdict.FORBIDDEN:
                    log.info("circuit.probe_forbidden")
                    self._probe_interval = self._base_probe_interval
                    self._reopen()
                else:
                    log.info("circuit.probe_succeeded")
                    self.record_success()

    async def _wait_for_change(self, seconds: float) -> None:
        if math.isinf(seconds):
            await self._changed.wait()
            return
        changed = asyncio.ensure_future(self._changed.wait())
        timer = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait({changed, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            timer.cancel()

    def _record(self, *, failed: bool) -> None:
        now = self._clock()
        while self._outcomes and self._outcomes[0][0] <= now - self._window_seconds:
            self._outcomes.popleft()
        self._outcomes.append((now, failed))
        if len(self._outcomes) < self._min_calls:
            return
        failures = sum(1 for _, was_failure in self._outcomes if was_failure)
        if failures / len(self._outcomes) >= self._failure_ratio:
            self._reopen()
            self._changed_to(is_open=True)

    def _reopen(self) -> None:
        self._state = CircuitState.OPEN
        self._probe_at = self._clock() + self._probe_interval
        self._probe_deadline = -math.inf
        self._outcomes.clear()
        self._notify_waiters()
        self._start_prober()

    def _close(self) -> None:
        self._state = CircuitState.CLOSED
        self._probe_interval = self._base_probe_interval
        self._probe_at = math.inf
        self._probe_deadline = -math.inf
        self._outcomes.clear()
        self._notify_waiters()
        self._changed_to(is_open=False)

    def _notify_waiters(self) -> None:
        # Wake everyone waiting on the old event; later waiters wait on a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    def _changed_to(self, *, is_open: bool) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(is_open)
        except Exception:
            # A failing listener must not turn a recorded outcome into an error of the request.
            log.exception("circuit.listener_failed", open=is_open)
