"""OAuth2 access tokens for CXone: fetched once, shared by every request, refreshed on 401.

`TokenProvider` talks to the token endpoint (found by OpenID discovery when only the issuer is
configured) and caches the token; `CxoneAuth` is the httpx auth flow that puts it on requests.
No token, secret or token-endpoint body ever reaches a log line or an exception message.

A failed refresh is not repeated at once: until its backoff has passed, every caller gets the
same failure without a request (exponential from `TokenBackoff.initial`, slow and steady once
the endpoint has refused the credentials, since only an operator can fix those).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import structlog
from pydantic import SecretStr

from consumer.errors import (
    AuthError,
    ConfigurationError,
    CredentialsRejected,
    NetworkError,
    RateLimited,
    ServerError,
    TransientError,
)
from consumer.observability.metrics import AUTH_REJECTED
from consumer.scim.client import TRANSPORT_ERRORS, parse_retry_after
from consumer.settings import Settings, require_safe_url

log = structlog.get_logger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
DEFAULT_SAFETY_MARGIN_SECONDS = 60.0
# RFC 6749 makes expires_in optional; without it, assume a short life and let 401s correct us.
DEFAULT_EXPIRES_IN_SECONDS = 300.0
# Error codes from RFC 6749 section 5.2: safe to repeat because they are a fixed vocabulary,
# unlike error_description, which a server may fill with anything it was sent.
_OAUTH_ERROR_CODES = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
# RFC 6749 §5.2 codes that say the credentials themselves are wrong; retrying will not help.
_REFUSAL_CODES = frozenset({"invalid_client", "invalid_grant", "unauthorized_client"})
_REFUSAL_STATUSES = frozenset({400, 401})


@dataclass(frozen=True)
class TokenBackoff:
    """How long to wait before asking the token endpoint again after it failed."""

    initial: float = 1.0
    maximum: float = 60.0
    # Refused credentials are fixed by an operator, not by asking often.
    rejected: float = 60.0

    def after(self, error: TransientError, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row, which was `error`."""
        if isinstance(error, CredentialsRejected):
            return self.rejected
        wait = min(self.initial * 2.0 ** (failures - 1), self.maximum)
        if isinstance(error, RateLimited) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.maximum))
        return wait


class TokenSource(Protocol):
    """Anything that hands out bearer tokens and can be told one was refused."""

    async def token(self) -> str:
        """A bearer token that is believed to be valid."""
        ...

    def invalidate(self, token: str) -> None:
        """Forget `token` if it is still the current one."""
        ...


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float


class TokenProvider:
    """Fetches and caches CXone access tokens; one refresh at a time however many wait."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: SecretStr,
        token_url: str | None = None,
        issuer_url: str | None = None,
        access_key_id: str | None = None,
        access_key_secret: SecretStr | None = None,
        required_scopes: frozenset[str] = frozenset(),
        safety_margin_seconds: float = DEFAULT_SAFETY_MARGIN_SECONDS,
        backoff: TokenBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if token_url is None and issuer_url is None:
            raise ConfigurationError("configuration error: CXONE_TOKEN_URL is required")
        if (access_key_id is None) != (access_key_secret is None):
            raise ConfigurationError(
                "configuration error: CXONE_ACCESS_KEY_ID and CXONE_ACCESS_KEY_SECRET go together"
            )
        if token_url is not None:
            token_url = _safe(token_url, "CXONE_TOKEN_URL")
        if issuer_url is not None:
            issuer_url = _safe(issuer_url, "CXONE_ISSUER_URL")
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = token_url
        self._issuer_url = issuer_url
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._required_scopes = required_scopes
        self._safety_margin = safety_margin_seconds
        self._clock = clock
        self._current: _Token | None = None
        self._refreshing: asyncio.Task[_Token] | None = None
        self._backoff = backoff or TokenBackoff()
        self._failures = 0
        self._last_failure: TransientError | None = None
        self._retry_at = -math.inf
        self._rejected = False
        # The scopes the endpoint said the last token carries; None when it did not say.
        self.granted_scopes: frozenset[str] | None = None
        AUTH_REJECTED.set(0)

    @property
    def credentials_rejected(self) -> bool:
        """True since the token endpoint refused the credentials, until it issues a token."""
        return self._rejected

    @property
    def grant_type(self) -> str:
        """`password` when an access key is configured, else `client_credentials`."""
        return "password" if self._access_key_id is not None else "client_credentials"

    def __repr__(self) -> str:
        endpoint = self._token_url or self._issuer_url
        return (
            f"TokenProvider(endpoint={endpoint!r}, client_id={self._client_id!r}, "
            f"grant_type={self.grant_type!r})"
        )

    async def token(self) -> str:
        """The cached token, or a fresh one when it is missing, stale or near expiry."""
        current = self._current
        if current is not None and self._clock() < current.refresh_at:
            return current.value
        if self._refreshing is None:
            failure = self._last_failure
            wait = self._retry_at - self._clock()
            if failure is not None and wait > 0:
                raise _again(failure, wait)
            # A shared task rather than a lock: when the endpoint fails, every waiter gets that
            # one failure instead of queueing up to repeat it one after another.
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            self._refreshing.add_done_callback(self._refresh_done)
        # Shielded so that one waiter being cancelled does not cancel the refresh for the rest.
        fresh = await asyncio.shield(self._refreshing)
        return fresh.value

    def invalidate(self, token: str) -> None:
        """Mark `token` stale if it is still the current one, so many 401s cause one refresh."""
        current = self._current
        if current is not None and current.value == token:
            self._current = None

    def _refresh_done(self, task: asyncio.Task[_Token]) -> None:
        self._refreshing = None
        if task.cancelled():
            return
        # Reading it marks the failure as seen even when every waiter was cancelled meanwhile.
        error = task.exception()
        if error is None:
            self._failures = 0
            self._last_failure = None
            self._retry_at = -math.inf
            self._set_rejected(False)
        elif isinstance(error, TransientError):
            self._failures += 1
            self._last_failure = error
            wait = self._backoff.after(error, self._failures)
            self._retry_at = self._clock() + wait
            self._set_rejected(isinstance(error, CredentialsRejected))
            log.warning(
                "auth.token_refresh_failed",
                error=str(error),
                failures=self._failures,
                retry_in_seconds=round(wait, 3),
            )

    def _set_rejected(self, rejected: bool) -> None:
        self._rejected = rejected
        AUTH_REJECTED.set(int(rejected))

    async def _refresh(self) -> _Token:
        token_url = await self._resolve_token_url()
        fetched = self._clock()
        response = await self._post_token_request(token_url)
        token = self._parse(response, fetched)
        self._current = token
        log.info("auth.token_refreshed", grant_type=self.grant_type)
        return token

    async def _resolve_token_url(self) -> str:
        if self._token_url is not None:
            return self._token_url
        assert self._issuer_url is not None  # the constructor requires one of the two
        self._token_url = await self._discover(self._issuer_url)
        return self._token_url

    async def _discover(self, issuer_url: str) -> str:
        url = issuer_url.rstrip("/") + DISCOVERY_PATH
        try:
            # auth=None: the shared client may carry CxoneAuth, which would wait on us.
            response = await self._http.get(url, auth=None)
        except TRANSPORT_ERRORS as error:
            raise NetworkError(f"OpenID discovery failed: {type(error).__name__}") from error
        _raise_for_status(response, "OpenID discovery")
        document = _json_object(response)
        endpoint = None if document is None else document.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise CredentialsRejected("CXONE_ISSUER_URL: discovery document has no token_endpoint")
        try:
            return require_safe_url(endpoint)
        except ValueError as error:
            raise CredentialsRejected(
                f"CXONE_ISSUER_URL: token_endpoint from OpenID discovery: {error}"
            ) from None

    async def _post_token_request(self, token_url: str) -> httpx.Response:
        form = {"grant_type": self.grant_type}
        if self._access_key_id is not None and self._access_key_secret is not None:
            form["username"] = self._access_key_id
            form["password"] = self._access_key_secret.get_secret_value()
        basic = httpx.BasicAuth(self._client_id, self._client_secret.get_secret_value())
        try:
            return await self._http.post(
                token_url, data=form, auth=basic, headers={"Accept": "application/json"}
            )
        except TRANSPORT_ERRORS as error:
            # httpx messages name the URL at most; the form and the Basic header stay out.
            raise NetworkError(f"token endpoint unreachable: {type(error).__name__}") from error

    def _parse(self, response: httpx.Response, fetched: float) -> _Token:
        _raise_for_status(response, "token endpoint", settings=self._credential_settings())
        document = _json_object(response)
        if document is None:
            raise AuthError("token endpoint answered without a JSON object", status=200)
        value = document.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError("token endpoint answered without an access_token", status=200)
        token_type = document.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise AuthError("token endpoint answered a token that is not a bearer token")
        scope = document.get("scope")
        self._check_scopes(scope)
        self.granted_scopes = frozenset(scope.split()) if isinstance(scope, str) else None
        expires_in = _expires_in(document.get("expires_in"))
        margin = min(self._safety_margin, expires_in / 10)
        return _Token(value=value, refresh_at=fetched + expires_in - margin)

    def _check_scopes(self, scope: object) -> None:
        if not self._required_scopes or not isinstance(scope, str):
            return
        missing = self._required_scopes - set(scope.split())
        if missing:
            # Mid-run (scopes withdrawn from the client) as much as at start-up: not a crash,
            # an auth failure the service waits out, not ready.
            raise CredentialsRejected(
                "the CXone token lacks required scopes: "
                + " ".join(sorted(missing))
                + f"; grant them to CXONE_CLIENT_ID {self._client_id!r}"
            )

    def _credential_settings(self) -> str:
        names = ["CXONE_CLIENT_ID", "CXONE_CLIENT_SECRET"]
        if self._access_key_id is not None:
            names += ["CXONE_ACCESS_KEY_ID", "CXONE_ACCESS_KEY_SECRET"]
        return ", ".join(names)


def token_provider(
    settings: Settings, http: httpx.AsyncClient, *, backoff: TokenBackoff | None = None
) -> TokenProvider:
    """The token provider the CXone settings describe."""
    return TokenProvider(
        http,
        token_url=settings.cxone_token_url,
        issuer_url=settings.cxone_issuer_url,
        client_id=settings.cxone_client_id,
        client_secret=settings.cxone_client_secret,
        access_key_id=settings.cxone_access_key_id,
        access_key_secret=settings.cxone_access_key_secret,
        required_scopes=settings.required_scopes,
        backoff=backoff,
    )


class CxoneAuth(httpx.Auth):
    """Bearer authentication for httpx: on a 401, refresh the token once and resend."""

    # The first attempt's body must survive for the resend after a 401.
    requires_request_body = True
    requires_response_body = False

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def __repr__(self) -> str:
        return f"CxoneAuth({self._tokens!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Refuse synchronous clients: fetching a token is asynchronous."""
        raise RuntimeError("CxoneAuth works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send with the current token; after a 401, send once more with a fresh one."""
        await request.aread()
        token = await self._tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        self._tokens.invalidate(token)
        token = await self._tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        # A second 401 goes back to the caller, which reports it as an AuthError.
        yield request


def _safe(url: str, name: str) -> str:
    try:
        return require_safe_url(url)
    except ValueError as error:
        raise ConfigurationError(f"configuration error: {name}: {error}") from error


def _again(failure: TransientError, wait: float) -> TransientError:
    """A fresh copy of the last refresh failure, for a caller who asked during its backoff."""
    message = f"{failure} (next token request in {wait:.1f}s)"
    if isinstance(failure, RateLimited):
        return RateLimited(message, status=failure.status, retry_after=failure.retry_after)
    return type(failure)(message, status=failure.status)


def _raise_for_status(response: httpx.Response, where: str, *, settings: str = "") -> None:
    status = response.status_code
    if httpx.codes.is_success(status):
        return
    if status == httpx.codes.TOO_MANY_REQUESTS:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=_utcnow())
        raise RateLimited(f"{where} rate limited", retry_after=retry_after)
    if status >= httpx.codes.INTERNAL_SERVER_ERROR or status == httpx.codes.REQUEST_TIMEOUT:
        raise ServerError(f"{where} answered {status}", status=status)
    # Anything else means our credentials or configuration are wrong: systemic, never a reason
    # to skip an event, so transient; the circuit breaker stops the spinning.
    document = _json_object(response)
    code = None if document is None else document.get("error")
    known = code if isinstance(code, str) and code in _OAUTH_ERROR_CODES else None
    suffix = f" {known}" if known else ""
    if settings and (status in _REFUSAL_STATUSES or known in _REFUSAL_CODES):
        raise CredentialsRejected(
            f"{where} refused the credentials: {status}{suffix}; check {settings}", status=status
        )
    raise AuthError(f"{where} refused the request: {status}{suffix}", status=status)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _json_object(response: httpx.Response) -> Mapping[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        # Not chained: a JSONDecodeError keeps the whole body, which may hold a token.
        return None
    return document if isinstance(document, dict) else None


def _expires_in(value: object) -> float:
    if isinstance(value, bool):
        return DEFAULT_EXPIRES_IN_SECONDS
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return DEFAULT_EXPIRES_IN_SECONDS
    else:
        return DEFAULT_EXPIRES_IN_SECONDS
    if not math.isfinite(seconds) or seconds <= 0:
        return DEFAULT_EXPIRES_IN_SECONDS
    return seconds
