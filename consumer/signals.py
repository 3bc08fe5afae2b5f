"""Running a command until a signal: the first SIGTERM/SIGINT asks it to stop, a second ends it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import structlog


def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[object]], *, exit_within: float | None = None
) -> None:
    """Run `main(stop)`: the first SIGTERM/SIGINT sets `stop`, a second one exits at once.

    With `exit_within`, a process still running that many seconds after the first signal exits
    anyway, whatever it is waiting for.
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def leave(code: int, event: str, **fields: object) -> None:
            # Nothing unfinished was committed, so leaving now loses nothing.
            structlog.get_logger(__name__).warning(event, **fields)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

        def on_signal(signum: int) -> None:
            if stop.is_set():
                leave(130, "service.forced_exit", signal=signum)
            structlog.get_logger(__name__).info("service.stopping", signal=signum)
            stop.set()
            if exit_within is not None:
                loop.call_later(exit_within, leave, 1, "service.shutdown_overrun")

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await main(stop)

    asyncio.run(runner())
