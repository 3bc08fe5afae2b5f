"""Things with a start and a stop: `async with` one starts it and stops it on the way out."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """A server or process run by `async with`: it awaits `start()`, and `stop()` on leaving."""

    async def start(self) -> None:
        """Start, returning once the thing is ready for use."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop and release what `start` took; nothing to do when it never started."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
