"""A webhook endpoint for tests: `POST /hook` on a free 127.0.0.1 port, answered by `handle`."""

from __future__ import annotations

from aiohttp import web

from consumer.lifecycle import StartStop


class HookEndpoint(StartStop):
    """Serves `POST /hook` with the subclass's `handle`; `url` is set once started."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one delivery."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
