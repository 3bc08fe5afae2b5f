"""Serves a `CxoneSimulator` and its admin API over real HTTP with uvicorn, in the caller's loop."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from consumer.lifecycle import StartStop
from consumer.quiet_server import QuietServer
from consumer.sandbox.admin import ADMIN_PREFIX, SimulatorAdmin
from consumer.sandbox.asgi import Receive, Scope, Send
from consumer.sandbox.simulator import SCIM_PREFIX, TOKEN_PATH, CxoneSimulator

STARTUP_TIMEOUT_SECONDS = 10.0


class _Mounted:
    """The simulator with its admin API mounted under `/_sim/` (admin requests are not logged)."""

    def __init__(self, simulator: CxoneSimulator) -> None:
        self._simulator = simulator
        self._admin = SimulatorAdmin(simulator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request: an admin one, or one for the simulator."""
        if scope["type"] == "http" and scope["path"].startswith(ADMIN_PREFIX):
            await self._admin(scope, receive, send)
        else:
            await self._simulator(scope, receive, send)


class SimulatorServer(StartStop):
    """Async context manager: serves the simulator on `host`:`port` (0 picks a free port)."""

    def __init__(self, simulator: CxoneSimulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self._port = port
        self._server: QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._socket is None:
            raise RuntimeError("the simulator server is not running")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """The root URL, such as `http://127.0.0.1:8123`; also the OpenID issuer."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def issuer(self) -> str:
        """The OpenID issuer; discovery lives at `{issuer}/.well-known/openid-configuration`."""
        return self.base_url

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint."""
        return self.base_url + TOKEN_PATH

    @property
    def scim_base_url(self) -> str:
        """The SCIM root, ending in `/scim/v2`, as `CXONE_SCIM_BASE_URL` expects."""
        return self.base_url + SCIM_PREFIX + "/v2"

    async def start(self) -> None:
        """Start serving and return once the socket is listening."""
        config = uvicorn.Config(
            _Mounted(self.simulator),
            http="h11",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level=logging.CRITICAL,
            # Held requests are released on stop; anything left after this is cut off.
            timeout_graceful_shutdown=2,
        )
        # Binding here makes a taken port an OSError for the caller, not uvicorn's sys.exit.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # asyncio sets TCP_NODELAY only on sockets it creates; without it every response waits
        # for the client's delayed ACK (about 40 ms). Accepted connections inherit it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self._port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.simulator.resume_holding()
        self._server = QuietServer(config)
        self._task = asyncio.create_task(self._serve(self._server, sock), name="cxone-simulator")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if self._task.done():
                task, self._task, self._server = self._task, None, None
                self._close_socket()
                task.result()
                raise RuntimeError("the simulator server stopped before it started")
            if loop.time() > deadline:
                await self.stop()
                raise TimeoutError("the simulator server did not start in time")
            await asyncio.sleep(0.01)

    @staticmethod
    async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exit_:
            # uvicorn exits the process on start-up failure; in a task that would stop the loop.
            raise RuntimeError(f"the simulator server failed (exit {exit_.code})") from exit_

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def stop(self) -> None:
        """Release held requests, stop serving and wait for the server to finish."""
        if self._server is None or self._task is None:
            return
        self.simulator.release_held_requests()
        self._server.should_exit = True
        self._server.exit_requested.set()
        try:
            await self._task
        finally:
            self._server = None
            self._task = None
            self._close_socket()
