"""A uvicorn server for a process that owns its signals: the simulator's and the ingress's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

__all__ = ["QuietServer"]


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner and stops as soon as it is told."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no handlers: Ctrl-C belongs to the command that runs the server."""
        yield

    async def main_loop(self) -> None:
        """Tick once a second like uvicorn does, but wake at once when asked to exit."""
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_requested.wait(), timeout=1.0)
