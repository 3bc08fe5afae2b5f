"""The mass-revocation gate: holds revocations while the guard is tripped, until released."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from consumer.guard import RevocationGuard
from consumer.observability.metrics import GUARD_TRIPPED

log = structlog.get_logger(__name__)


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
