"""Tests of the service's start-up and close helpers: a stop wins, closing is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from consumer.service import _Closers, _Stopped, _unless_stopped

DEADLINE = 5.0


async def test_start_up_work_that_finishes_returns_its_result() -> None:
    """Work that completes before any stop hands back its value."""

    async def work() -> int:
        return 42

    assert await _unless_stopped(asyncio.Event(), work()) == 42


async def test_a_stop_abandons_start_up_work_at_once_and_cancels_it() -> None:
    """Setting stop while start-up waits (an unreachable broker) raises _Stopped and cancels it."""
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.01, stop.set)
    async with asyncio.timeout(DEADLINE):
        with pytest.raises(_Stopped):
            await _unless_stopped(stop, forever())
    assert cancelled.is_set()


async def test_start_up_errors_pass_through() -> None:
    """An error of the start-up work itself is raised, not swallowed."""

    async def broken() -> None:
        raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        await _unless_stopped(asyncio.Event(), broken())


async def test_closing_runs_newest_first_and_abandons_what_hangs() -> None:
    """Closers run in reverse order; one that hangs past the budget is abandoned, the rest run."""
    closed: list[str] = []

    def closer(name: str, *, hang: bool = False) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            if hang:
                await asyncio.Event().wait()
            closed.append(name)

        return close

    closers = _Closers()
    closers.push("health", closer("health"))
    closers.push("consumer", closer("consumer", hang=True))
    closers.push("lag", closer("lag"))
    async with asyncio.timeout(DEADLINE):
        await closers.close_all(within=0.1)
    assert closed == ["lag", "health"]
