"""The async side of the mass-revocation guard: parks revocations while this member's is tripped.

The gate keeps the guard's share in step with the assignment (`reassign`, called at every
rebalance): it reads what the newly owned partitions spent from the ledger before it lets any
revocation through, and writes each charge to the ledger before the revocation is applied. In a
dry run nothing is written, so nothing parks either: `try_admit` counts what the guard would
have held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

import stamina
import structlog

from consumer.catalog import Policy
from consumer.observability.metrics import (
    GUARD_BUDGET,
    GUARD_TRIPPED,
    GUARD_WOULD_HOLD,
)
from consumer.revocation_guard import GuardStatus, RevocationGuard
from consumer.share import Share

log = structlog.get_logger(__name__)

RELEASE_ACTION = (
    "revocations held; to resume, POST /guard/release on the metrics port "
    "with 'Authorization: Bearer <ADMIN_TOKEN>'; with ADMIN_TOKEN unset the "
    "release is disabled: restart the service (with ADMIN_TOKEN set to "
    "release a burst larger than the guard allows)"
)


class Ledger(Protocol):
    """Where the group keeps what each partition spent (the guard topic is one)."""

    async def read(self, partitions: Iterable[int]) -> dict[int, list[float]]:
        """What each partition spent, as last written."""
        ...

    async def write(self, spends: Mapping[int, Iterable[float]]) -> None:
        """Record what each partition spent; returns once it is durable."""
        ...


class RevocationGate:
    """Counts revocations through the guard; a tripped guard parks them, nothing is skipped."""

    def __init__(
        self,
        guard: RevocationGuard | None,
        *,
        ledger: Ledger | None = None,
        dry_run: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._guard = guard
        self._ledger = None if dry_run else ledger
        self._dry_run = dry_run
        self._clock = clock
        self._released = asyncio.Event()
        self._loaded = asyncio.Event()
        self._loaded.set()
        self._loading: asyncio.Task[None] | None = None
        # Bumped by every reassignment and release: only the newest load may open the gate.
        self._generation = 0
        self._would_hold = 0
        GUARD_TRIPPED.set(0)
        GUARD_BUDGET.set(guard.budget if guard is not None else 0)

    def use_ledger(self, ledger: Ledger) -> None:
        """Share the window with the group through `ledger` (a dry run writes nothing: no-op)."""
        if not self._dry_run:
            self._ledger = ledger

    @property
    def tripped(self) -> bool:
        """Whether revocations are being held (never in a dry run: it holds nothing)."""
        return self._guard is not None and self._guard.tripped and not self._dry_run

    def status(self) -> dict[str, object] | None:
        """The guard's state as `/readyz` shows it; None without a guard."""
        if self._guard is None:
            return None
        status: GuardStatus = self._guard.status(self._clock())
        shown = status.as_json()
        shown["tripped"] = self.tripped
        if self._dry_run:
            shown["would_have_held"] = self._would_hold
        return shown

    def reassign(self, share: Share) -> None:
        """Spend the budgets of a new assignment, once the ledger says what they spent."""
        guard = self._guard
        if guard is None:
            return
        if self._ledger is None:
            guard.reassign(share)
            self._share_changed(guard)
            return
        if guard.share.total == share.total:
            # Partitions gone are dropped at once: were one to come back before the ledger
            # is read, what its other owner spent meanwhile must be read, not our old window.
            guard.reassign(Share(guard.share.owned & share.owned, share.total))
        self._start(self._load(guard, share))

    def _start(self, work: Callable[[int], Awaitable[None]]) -> None:
        """Close the gate until `work` (the newest load or clear) is done."""
        if self._loading is not None:
            self._loading.cancel()
        self._generation += 1
        self._loaded.clear()
        self._loading = asyncio.create_task(self._then_open(work, self._generation))

    async def _then_open(self, work: Callable[[int], Awaitable[None]], generation: int) -> None:
        await work(generation)
        if generation == self._generation:
            self._loaded.set()

    def _load(self, guard: RevocationGuard, share: Share) -> Callable[[int], Awaitable[None]]:
        async def load(generation: int) -> None:
            await self._read_into(guard, share, generation)

        return load

    async def _read_into(self, guard: RevocationGuard, share: Share, generation: int) -> None:
        ledger = self._ledger
        assert ledger is not None
        new = share.owned - guard.share.owned if guard.share.total == share.total else share.owned
        async for attempt in stamina.retry_context(
            on=Exception, attempts=None, timeout=None, wait_initial=0.2, wait_max=5.0
        ):
            with attempt:
                try:
                    carried = await ledger.read(new)
                except Exception as error:
                    log.warning("guard.ledger_read_failed", error=type(error).__name__)
                    raise
        if generation == self._generation:
            guard.reassign(share, carried)
            self._share_changed(guard)

    def _share_changed(self, guard: RevocationGuard) -> None:
        GUARD_BUDGET.set(guard.budget)
        log.info(
            "guard.share",
            share=guard.share.describe(),
            budget=guard.budget,
            max_revocations=guard.max_revocations,
            spent=guard.count_in_window(self._clock()),
        )
        if guard.budget == 0 and guard.share.owned:
            log.warning(
                "guard.no_budget",
                share=guard.share.describe(),
                max_revocations=guard.max_revocations,
                action="max_revocations below the partition count leaves some partitions none; "
                "this member's first revocation trips its guard",
            )

    async def admit(self) -> bool:
        """Count one revocation; wait while the guard is tripped. True when it had to wait."""
        guard = self._guard
        if guard is None:
            return False
        if self._dry_run:
            self.try_admit()
            return False
        waited = False
        while True:
            await self._loaded.wait()
            charged = None if guard.tripped else guard.charge(self._clock())
            if charged is not None:
                await self._record(charged)
                return waited
            if not waited:
                GUARD_TRIPPED.set(1)
                log.error(
                    "guard.tripped",
                    revocations_in_window=guard.count_in_window(self._clock()),
                    budget=guard.budget,
                    share=guard.share.describe(),
                    max_revocations=guard.max_revocations,
                    window_seconds=guard.window_seconds,
                    action=RELEASE_ACTION,
                )
            waited = True
            self._released.clear()
            await self._released.wait()

    def try_admit(self) -> bool:
        """Count one revocation without ever waiting: False when the guard would hold it."""
        guard = self._guard
        if guard is None:
            return True
        was_tripped = guard.tripped
        if guard.charge(self._clock()) is not None:
            return True
        self._would_hold += 1
        GUARD_WOULD_HOLD.inc()
        # One line per revocation, carrying the event's user, event id and offset from the
        # context: the list of what a live run would have held.
        log.warning("guard.would_hold", would_have_held=self._would_hold, dry_run=self._dry_run)
        if not was_tripped:
            log.warning(
                "guard.would_trip",
                revocations_in_window=guard.count_in_window(self._clock()),
                budget=guard.budget,
                max_revocations=guard.max_revocations,
                window_seconds=guard.window_seconds,
                dry_run=self._dry_run,
            )
        return False

    async def _record(self, charged: Mapping[int, Iterable[float]]) -> None:
        """Write the charge to the ledger before the revocation is applied; retried, never lost."""
        if self._ledger is None:
            return
        async for attempt in stamina.retry_context(
            on=Exception, attempts=None, timeout=None, wait_initial=0.1, wait_max=5.0
        ):
            with attempt:
                try:
                    await self._ledger.write(charged)
                except Exception as error:
                    log.warning("guard.ledger_write_failed", error=type(error).__name__)
                    raise

    def release(self) -> bool:
        """Release a tripped guard (operator action); False when it was not tripped."""
        guard = self._guard
        if guard is None or not guard.tripped:
            return False
        cleared = guard.release()
        GUARD_TRIPPED.set(0)
        log.warning("guard.released", share=guard.share.describe(), budget=guard.budget)
        self._released.set()
        if self._ledger is not None and cleared:
            empty: dict[int, tuple[float, ...]] = {partition: () for partition in cleared}

            async def clear(_generation: int) -> None:
                # Written before any revocation is charged again, so the ledger never lags.
                await self._record(empty)

            self._start(clear)
        return True

    async def aclose(self) -> None:
        """Stop reading the ledger."""
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)


def build_gate(
    policy: Policy,
    *,
    ledger: Ledger | None = None,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> RevocationGate:
    """The mass-revocation gate the policy asks for (a pass-through when it asks for none)."""
    config = policy.mass_revocation_guard
    guard = (
        None if config is None else RevocationGuard(config.max_revocations, config.window_seconds)
    )
    return RevocationGate(guard, ledger=ledger, dry_run=dry_run, clock=clock)
