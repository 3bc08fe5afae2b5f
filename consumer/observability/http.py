"""The small HTTP server beside the consumer: /metrics, /healthz, /readyz and the guard release."""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from pydantic import SecretStr

from consumer.lifecycle import StartStop
from consumer.observability.metrics import CIRCUIT_OPEN, REGISTRY

log = structlog.get_logger(__name__)

# Prometheus scrapes from another host or container, so all interfaces by default.
DEFAULT_HOST = "0.0.0.0"  # noqa: S104

GuardRelease = Callable[[], bool] | Callable[[], Awaitable[bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What an HTML form can send cross-site without a CORS preflight: such a request never acts.
FORM_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)


class HealthState:
    """What the consumer reports about itself; the circuit flag mirrors into its gauge.

    The guard is read, never written: the revocation gate owns its state and its gauge, and the
    service points `guard_tripped_probe` at it.
    """

    def __init__(self) -> None:
        self.joined = False
        self._circuit_open = False
        self.guard_tripped_probe: Callable[[], bool] | None = None
        # The guard's share, budget and window, for /readyz; None without a guard.
        self.guard_status_probe: Callable[[], dict[str, object] | None] = lambda: None
        # The publisher answers whether a record it cannot publish for good holds a partition.
        self.publish_blocked_probe: Callable[[], bool] = lambda: False
        # Set by the service: True while the token endpoint refuses the credentials.
        self.auth_failed_probe: Callable[[], bool] | None = None
        CIRCUIT_OPEN.set(0)

    @property
    def circuit_open(self) -> bool:
        """Whether the circuit breaker is keeping new work away from CXone."""
        return self._circuit_open

    @circuit_open.setter
    def circuit_open(self, value: bool) -> None:
        self._circuit_open = value
        CIRCUIT_OPEN.set(int(value))

    @property
    def guard_tripped(self) -> bool:
        """Whether the mass-revocation guard is holding revocations back (False without one)."""
        return self.guard_tripped_probe is not None and self.guard_tripped_probe()

    def not_ready_reason(self) -> str | None:
        """Why the consumer should get no traffic right now, or None when it is ready."""
        if not self.joined:
            return "not_joined"
        if self.publish_blocked_probe():
            return "publish_blocked"
        if self.auth_failed_probe is not None and self.auth_failed_probe():
            return "auth_failed"
        if self.circuit_open:
            return "circuit_open"
        return None


class HealthServer(StartStop):
    """Serves the consumer's metrics, liveness, readiness and guard release on one port."""

    def __init__(
        self,
        state: HealthState,
        *,
        host: str = DEFAULT_HOST,
        port: int = 9400,
        release_guard: GuardRelease | None = None,
        admin_token: SecretStr | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.state = state
        self._admin_token = admin_token
        self.host = host
        self._requested_port = port
        self._release_guard = release_guard
        self._registry = registry
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def application(self) -> web.Application:
        """The aiohttp application with every route."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_post("/guard/release", self._admin(self._guard_release))
        return app

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 asked the system to choose)."""
        if self._port is None:
            raise RuntimeError("the health server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL of the running server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind the port and start serving."""
        # One access line per scrape every few seconds would drown the event lines.
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("health.listening", host=self.host, port=self._port)

    async def stop(self) -> None:
        """Stop serving and release the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = web.Response(body=encoder(self._registry))
        # Set whole: the header carries parameters (version, charset) aiohttp would split.
        response.headers["Content-Type"] = content_type
        return response

    async def _healthz(self, _request: web.Request) -> web.Response:
        # Answering at all proves the process and its event loop are alive.
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reason = self.state.not_ready_reason()
        body: dict[str, object] = {"ready": reason is None}
        if reason is not None:
            body["reason"] = reason
        body["guard_tripped"] = self.state.guard_tripped
        if (guard := self.state.guard_status_probe()) is not None:
            body["guard"] = guard
        return web.json_response(body, status=200 if reason is None else 503)

    def _admin(self, action: Handler) -> Handler:
        """Wrap an admin action: it runs only for a bearer of ADMIN_TOKEN, never for a form."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self._refuse_admin(request)
            if refusal is not None:
                log.warning(
                    "admin.refused",
                    path=request.path,
                    status=refusal.status,
                    remote=request.remote,
                )
                return refusal
            return await action(request)

        return guarded

    def _refuse_admin(self, request: web.Request) -> web.Response | None:
        """The answer to an admin request that must not act, or None when it may."""
        if self._admin_token is None:
            return web.json_response(
                {
                    "error": "admin_disabled",
                    "detail": "admin actions need ADMIN_TOKEN; without it, restart to release",
                },
                status=404,
            )
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in FORM_CONTENT_TYPES:
            return web.json_response({"error": "form_content_type_refused"}, status=415)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return web.json_response(
                {"error": "unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="cxone-role-sync admin"'},
            )
        expected = self._admin_token.get_secret_value().encode()
        if not hmac.compare_digest(given.strip().encode(errors="replace"), expected):
            return web.json_response({"error": "forbidden"}, status=403)
        return None

    async def _guard_release(self, request: web.Request) -> web.Response:
        if self._release_guard is None:
            return web.json_response(
                {"released": False, "reason": "guard_not_configured"}, status=409
            )
        # Releasing lets held revocations through: the gate's `guard.released` line says who asked.
        with structlog.contextvars.bound_contextvars(remote=request.remote):
            outcome = self._release_guard()
            released = await outcome if inspect.isawaitable(outcome) else outcome
        if not released:
            return web.json_response({"released": False, "reason": "not_tripped"}, status=409)
        return web.json_response({"released": True})
