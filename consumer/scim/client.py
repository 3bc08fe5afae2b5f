"""CXone's SCIM API over HTTP: one user read or write per call, and the retried read-modify-write.

Every response is classified once, by `error_for_response`, into the error tree of
`consumer.errors`, and every transport failure of either transport (httpx's own or aiohttp's
under httpx-aiohttp) becomes a `NetworkError`; the retry loop asks the error whether it is
retriable and never skips. Conflicts are the one bounded retry: after `MAX_CONFLICT_RETRIES`
re-reads the event fails with reason `conflict`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import httpx
import structlog
from httpx_aiohttp import AiohttpTransport
from pydantic import ValidationError
from scim2_models import Error
from stamina.instrumentation import RetryDetails

from consumer.attempts import first_then_retried
from consumer.errors import (
    AuthError,
    Conflict,
    ConflictsExhausted,
    Forbidden,
    InvalidEvent,
    NetworkError,
    PermanentError,
    RateLimited,
    ScimRejected,
    ServerError,
    SyncError,
    TransientError,
    UnexpectedRedirect,
    UserNotFound,
)
from consumer.events import is_valid_user_id
from consumer.observability.metrics import RETRIES, SCIM_DURATION, SCIM_REQUESTS
from consumer.observability.retries import install_retry_hook
from consumer.scim.circuit import CircuitBreaker, ProbeVerdict
from consumer.scim.cookieless import CookielessClient
from consumer.scim.probe_targets import ProbeTargets
from consumer.scim.throttle import RateLimiter
from consumer.settings import HttpTransport

log = structlog.get_logger(__name__)

SCIM_MEDIA_TYPE = "application/scim+json"
# The breaker's probe reads a user the service asked about (ProbeTargets); before any, this
# search (GET /Users needs a filter): no user has this name, so the answer is an empty list.
PROBE_PATH = "Users"
PROBE_FILTER = 'userName eq "cxone-role-sync.probe"'
MAX_RETRY_AFTER_SECONDS = 300.0
MAX_CONFLICT_RETRIES = 5
PARSED_URLS = 4096
"""Parsed request URLs kept, by path: one per recently written user."""
_DETAIL_LIMIT = 300
_DELAY_SECONDS = re.compile(r"[0-9]+")
# RFC 7644 §3.12: a uniqueness conflict stays one however often the user is re-read.
_PERMANENT_SCIM_TYPES = frozenset({"uniqueness"})

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    # httpx-aiohttp maps only some of aiohttp's errors; a malformed response, for one, arrives
    # as a raw ClientResponseError, and a broken parser as an HttpProcessingError.
    aiohttp.ClientError,
    aiohttp.http_exceptions.HttpProcessingError,
    # Timeouts and socket errors that slip past both libraries' own wrappers.
    OSError,
)
"""Everything either transport raises when a request got no usable answer."""


@dataclass(frozen=True)
class ScimUser:
    """A CXone user document exactly as served, with its ETag when the server gave one."""

    document: dict[str, Any]
    etag: str | None


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts; attempts are unbounded because an event is never skipped."""

    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS


@dataclass(frozen=True)
class WriteOutcome:
    """What a read-modify-write did: the user before, and the bytes written, if any."""

    before: ScimUser
    payload: bytes | None
    status: int | None
    attempts: int


class WriteFence(Protocol):
    """Says when a write may go: awaited right before each PUT is sent, retries included."""

    async def wait(self) -> None:
        """Return once a write may start; the waiting work may be cancelled meanwhile."""
        ...


Plan = Callable[[ScimUser], Awaitable[bytes | None]]
"""Given the user as read, the exact PUT body to write, or None to write nothing."""


def build_http_client(
    transport: HttpTransport, *, timeout: float, max_connections: int
) -> httpx.AsyncClient:
    """A cookieless httpx client over the chosen transport; aiohttp's costs far less CPU."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    if transport is HttpTransport.AIOHTTP:
        return CookielessClient(
            transport=AiohttpTransport(limits=limits), timeout=timeout, follow_redirects=False
        )
    return CookielessClient(limits=limits, timeout=timeout, follow_redirects=False)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header given in seconds or as an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    # str.isdigit() accepts "²" and other digits float() refuses: ASCII only.
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _scim_error(response: httpx.Response) -> Error | None:
    try:
        return Error.model_validate(response.json())
    except (ValueError, ValidationError):
        return None


def _scim_error_detail(response: httpx.Response) -> str:
    error = _scim_error(response)
    parts = [] if error is None else [str(p) for p in (error.scim_type, error.detail) if p]
    return (": ".join(parts) or f"HTTP {response.status_code}")[:_DETAIL_LIMIT]


def _redirect_detail(response: httpx.Response) -> str:
    location = response.headers.get("Location")
    if not location:
        return f"HTTP {response.status_code} without a Location; not followed"
    try:
        # Query and userinfo are left out: a redirect may carry anything in them.
        target = httpx.URL(location).copy_with(query=None, fragment=None, userinfo=b"")
        shown = str(target)
    except httpx.InvalidURL:
        shown = "an invalid Location"
    return f"HTTP {response.status_code} to {shown}; not followed"[:_DETAIL_LIMIT]


def error_for_response(response: httpx.Response, *, now: datetime) -> SyncError | None:
    """The error a SCIM response stands for, or None when it succeeded (a 2xx)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    where = f"{response.request.method} {response.request.url.path}"
    if status < 400:
        # Following would resend the bearer token to wherever CXone points; nothing was written.
        detail = _redirect_detail(response)
        return UnexpectedRedirect(f"{where}: {detail}", status=status, detail=detail)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        return RateLimited(f"{where}: rate limited", retry_after=retry_after)
    if status == 401:
        return AuthError(f"{where}: HTTP 401 after a token refresh", status=status)
    if status == 403:
        detail = _scim_error_detail(response)
        return Forbidden(f"{where}: HTTP 403", status=status, detail=detail)
    if status in (409, 412):
        error = _scim_error(response)
        if status == 409 and error is not None and error.scim_type in _PERMANENT_SCIM_TYPES:
            detail = _scim_error_detail(response)
            return ScimRejected(f"{where}: HTTP 409", status=status, detail=detail)
        return Conflict(f"{where}: HTTP {status}, the user changed concurrently", status=status)
    if status == 408 or status >= 500:
        return ServerError(f"{where}: HTTP {status}", status=status)
    detail = _scim_error_detail(response)
    if status == 404:
        return UserNotFound(f"{where}: user not found", status=status, detail=detail)
    return ScimRejected(f"{where}: HTTP {status}", status=status, detail=detail)


def retry_backoff(policy: RetryPolicy) -> Callable[[Exception], bool | float]:
    """The stamina hook: retry what is transient with backoff, honouring Retry-After."""

    def backoff(error: Exception) -> bool | float:
        if not isinstance(error, SyncError) or not error.retriable:
            return False
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(error.retry_after, policy.max_retry_after)
        # Conflicts too: a user that changes under every write is not helped by hurrying.
        return True

    return backoff


def count_retry(details: RetryDetails) -> None:
    """The SCIM client's retry hook: count a retry by reason and say why at INFO."""
    cause = details.caused_by
    if not isinstance(cause, TransientError):
        return
    reason = cause.reason
    RETRIES.labels(reason=reason).inc()
    log.info(
        "scim.retry",
        reason=reason,
        retry=details.retry_num,
        wait_seconds=round(details.wait_for, 3),
        error=str(cause),
    )


def instrument_retries() -> None:
    """Count and log the SCIM client's retries (its errors are all TransientErrors)."""
    install_retry_hook("scim", (TransientError,), count_retry)


def user_path(user_id: str) -> str:
    """The URL path of a user, refusing any id that could escape it."""
    if not is_valid_user_id(user_id):
        raise InvalidEvent("schema_violation", "user_id is not a valid CXone SCIM id")
    return f"Users/{quote(user_id, safe='')}"


class ScimClient:
    """CXone's SCIM `/Users` endpoints, rate-limited, circuit-broken and instrumented."""

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        auth: httpx.Auth | None,
        limiter: RateLimiter | None = None,
        circuit: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
        write_fence: WriteFence | None = None,
        on_abandoned_write: Callable[[str], None] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/") + "/"
        # Parsing the URL string was about a tenth of the service's CPU per event (httpx parses
        # and checks every component in Python); a user's GET and PUT, and its later events,
        # reuse the parsed URL. httpx.URL is immutable, so sharing one is safe.
        self._url = functools.lru_cache(maxsize=PARSED_URLS)(self._parse_url)
        self._write_fence = write_fence
        self._on_abandoned_write = on_abandoned_write
        self._http = http
        self._auth = auth
        self._limiter = limiter
        self._circuit = circuit
        self._retry = retry or RetryPolicy()
        self._backoff = retry_backoff(self._retry)
        self._probe_targets = ProbeTargets()

    async def get_user(self, user_id: str) -> ScimUser:
        """Read one user; a single attempt."""
        self._probe_targets.note(user_id)
        response = await self._send("GET", user_path(user_id))
        try:
            document = response.json()
        except ValueError as error:
            raise ServerError("GET user: CXone answered with a body that is not JSON") from error
        if not isinstance(document, dict):
            raise ServerError("GET user: CXone answered with a body that is not an object")
        return ScimUser(document=document, etag=response.headers.get("ETag"))

    async def find_user_id(self, user_name: str) -> str | None:
        """The id of the one CXone user with this userName, or None; a single attempt."""
        # RFC 7644 filter strings are JSON strings: a quote or backslash in a name is escaped.
        literal = json.dumps(user_name, ensure_ascii=False)
        params = {"filter": f"userName eq {literal}", "count": "2"}
        response = await self._send("GET", PROBE_PATH, params=params)
        try:
            found = response.json().get("Resources") or []
        except (ValueError, AttributeError) as error:
            raise ServerError("GET users: CXone answered with a body that is not a list") from error
        ids = [item.get("id") for item in found if isinstance(item, dict)]
        # Two users of one name (CXone compares case-insensitively) resolve to none: guessing
        # which one the IdP meant could give one person's roles to another.
        return ids[0] if len(ids) == 1 and isinstance(ids[0], str) else None

    async def put_user(self, user_id: str, payload: bytes, *, etag: str | None) -> int:
        """Replace one user with exactly `payload`; a single attempt."""
        headers = {"Content-Type": SCIM_MEDIA_TYPE}
        if etag is not None:
            headers["If-Match"] = etag
        self._probe_targets.note(user_id)
        response = await self._send(
            "PUT", user_path(user_id), content=payload, headers=headers, fenced=True
        )
        return response.status_code

    async def probe(self) -> ProbeVerdict:
        """One read that tests what the service needs; raises what a failed request raises.

        It reads a user the service asked about, in turn (the search only before any), bypasses
        the circuit (it is how the breaker tests it) and reports nothing to it.
        """
        user_id = self._probe_targets.next()
        try:
            if user_id is None:
                params = {"filter": PROBE_FILTER, "count": "1"}
                await self._send("GET", PROBE_PATH, params=params, probe=True)
            else:
                await self._send("GET", user_path(user_id), probe=True)
        except Forbidden:
            # Reachable, but refused: the breaker handles this apart from an outage.
            return ProbeVerdict.FORBIDDEN
        except (UserNotFound, ScimRejected):
            # A refusal of the probe itself still shows a working service.
            return ProbeVerdict.WORKS
        return ProbeVerdict.WORKS

    async def update_user(self, user_id: str, plan: Plan) -> WriteOutcome:
        """Read, plan and write one user until it succeeds or fails for good; never skips.

        Transient trouble is retried for as long as it takes; conflicts (409/412) are re-read
        and retried with backoff at most `MAX_CONFLICT_RETRIES` times.
        """
        conflicts = 0

        async def attempt(number: int) -> WriteOutcome:
            nonlocal conflicts
            try:
                before = await self.get_user(user_id)
                payload = await plan(before)
                if payload is None:
                    return WriteOutcome(before, None, None, number)
                status = await self._put_or_abandon(user_id, payload, etag=before.etag)
            except PermanentError as error:
                error.attempts = number
                raise
            except Conflict as conflict:
                conflicts += 1
                if conflicts > MAX_CONFLICT_RETRIES:
                    raise _exhausted(conflict, conflicts, number) from conflict
                raise
            return WriteOutcome(before, payload, status, number)

        return await first_then_retried(
            attempt,
            on=self._backoff,
            attempts=None,
            wait_initial=self._retry.wait_initial,
            wait_max=self._retry.wait_max,
            wait_jitter=self._retry.wait_jitter,
        )

    def _parse_url(self, path: str) -> httpx.URL:
        return httpx.URL(self._base_url + path)

    async def _put_or_abandon(self, user_id: str, payload: bytes, *, etag: str | None) -> int:
        """`put_user`, reporting a PUT that got no answer: CXone may still apply it later."""
        try:
            return await self.put_user(user_id, payload, etag=etag)
        except NetworkError:
            if self._on_abandoned_write is not None:
                self._on_abandoned_write(user_id)
            raise

    async def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        probe: bool = False,
        fenced: bool = False,
    ) -> httpx.Response:
        circuit = None if probe else self._circuit
        holds_probe = await circuit.wait_until_allowed() if circuit is not None else False
        fence = self._write_fence if fenced else None
        try:
            return await self._exchange(
                method,
                path,
                content=content,
                headers=headers,
                params=params,
                circuit=circuit,
                fence=fence,
            )
        except asyncio.CancelledError:
            if holds_probe and circuit is not None:
                # Nobody will report this probe's outcome; let another go at once.
                circuit.abandon_probe()
            raise

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None,
        headers: dict[str, str] | None,
        params: dict[str, str] | None,
        circuit: CircuitBreaker | None,
        fence: WriteFence | None = None,
    ) -> httpx.Response:
        sent_at = await self._limiter.acquire() if self._limiter is not None else None
        if fence is not None:
            # Last, after every other wait: a write goes only while its writer may write.
            await fence.wait()
        request_headers = {"Accept": SCIM_MEDIA_TYPE, **(headers or {})}
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method,
                self._url(path),
                content=content,
                headers=request_headers,
                params=params,
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except TransientError:
            # Raised by the auth flow: no token to be had. An outage like any other.
            if circuit is not None:
                circuit.record_failure()
            raise
        except TRANSPORT_ERRORS as failure:
            self._observe(method, "error", started)
            if circuit is not None:
                circuit.record_failure()
            # Name the underlying error: httpx-aiohttp reports a reset as ConnectTimeout.
            cause = type(failure.__cause__ or failure).__name__
            raise NetworkError(f"{method} {path}: {cause}") from failure
        self._observe(method, str(response.status_code), started)
        error = error_for_response(response, now=datetime.now(UTC))
        self._feedback(error, sent_at, circuit)
        if error is not None:
            raise error
        return response

    @staticmethod
    def _observe(method: str, status: str, started: float) -> None:
        SCIM_REQUESTS.labels(method=method, status=status).inc()
        SCIM_DURATION.labels(method=method).observe(time.perf_counter() - started)

    def _feedback(
        self, error: SyncError | None, sent_at: float | None, circuit: CircuitBreaker | None
    ) -> None:
        if self._limiter is not None:
            if isinstance(error, RateLimited):
                self._limiter.on_throttled(error.retry_after, sent_at=sent_at)
            elif error is None:
                self._limiter.on_success()
        if circuit is not None:
            # A 429 or a conflict is an answer from a healthy service, not an outage. A 403
            # fails only its user, but a run of them means the credentials lost their rights.
            if isinstance(error, ServerError | AuthError | Forbidden):
                circuit.record_failure()
            else:
                circuit.record_success()


def _exhausted(conflict: Conflict, conflicts: int, attempts: int) -> ConflictsExhausted:
    detail = f"HTTP {conflict.status} on each of {conflicts} attempts: the user kept changing"
    exhausted = ConflictsExhausted(f"{conflict}; giving up", status=conflict.status, detail=detail)
    exhausted.attempts = attempts
    return exhausted
