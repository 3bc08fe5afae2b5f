"""Tests of the CXone token provider, against a real local token endpoint, and of the auth flow."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer.errors import (
    AuthError,
    ConfigurationError,
    CredentialsRejected,
    NetworkError,
    RateLimited,
    ServerError,
)
from consumer.scim.auth import CxoneAuth, TokenBackoff, TokenProvider

CLIENT_ID = "app-client"
CLIENT_SECRET = "client-secret-value-9f2c"
ACCESS_KEY_ID = "access-key-id"
ACCESS_KEY_SECRET = "access-key-secret-value-41d7"


@dataclass
class TokenEndpoint:
    """A tiny OAuth2 token endpoint that counts requests and answers as told."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    expires_in: int = 3600
    scope: str | None = None
    token_endpoint: str | None = None
    hang: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)
    discoveries: int = 0
    api_tokens_seen: list[str] = field(default_factory=list)
    rejected_tokens: set[str] = field(default_factory=set)
    url: str = ""

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(
            {
                "authorization": request.headers.get("Authorization", ""),
                **{key: str(value) for key, value in form.items()},
            }
        )
        if self.hang:
            await asyncio.Event().wait()
        if self.status != 200:
            return web.json_response(self.body, status=self.status)
        document: dict[str, Any] = {
            "access_token": f"token-{len(self.requests)}",
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.scope is not None:
            document["scope"] = self.scope
        return web.json_response(document)

    async def discovery(self, request: web.Request) -> web.Response:
        self.discoveries += 1
        endpoint = self.token_endpoint or f"{self.url}/auth/token"
        return web.json_response({"issuer": self.url, "token_endpoint": endpoint})

    async def api(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.api_tokens_seen.append(token)
        if token in self.rejected_tokens:
            return web.json_response({"status": "401"}, status=401)
        return web.json_response({"ok": True, "body": (await request.text())})


@pytest.fixture
async def endpoint() -> AsyncIterator[TokenEndpoint]:
    """A token endpoint served over real HTTP on 127.0.0.1."""
    state = TokenEndpoint()
    app = web.Application()
    app.router.add_post("/auth/token", state.token)
    app.router.add_get("/.well-known/openid-configuration", state.discovery)
    app.router.add_put("/api", state.api)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    state.url = f"http://127.0.0.1:{server.port}"
    try:
        yield state
    finally:
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client with a short timeout."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        yield client


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider_for(
    endpoint: TokenEndpoint,
    http: httpx.AsyncClient,
    *,
    access_key: bool = False,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> TokenProvider:
    """A provider pointed at the local endpoint."""
    options: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET),
        "token_url": f"{endpoint.url}/auth/token",
    }
    if access_key:
        options["access_key_id"] = ACCESS_KEY_ID
        options["access_key_secret"] = SecretStr(ACCESS_KEY_SECRET)
    if clock is not None:
        options["clock"] = clock
    options.update(overrides)
    return TokenProvider(http, **options)


def basic_credentials(header: str) -> str:
    """The user:password pair of an HTTP Basic Authorization header."""
    scheme, _, encoded = header.partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


async def test_password_grant_sends_access_key_and_client_by_basic(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """With an access key, the password grant carries it and the client authenticates by Basic."""
    provider = provider_for(endpoint, http, access_key=True)

    token = await provider.token()

    assert token == "token-1"
    assert provider.grant_type == "password"
    [sent] = endpoint.requests
    assert sent["grant_type"] == "password"
    assert sent["username"] == ACCESS_KEY_ID
    assert sent["password"] == ACCESS_KEY_SECRET
    assert basic_credentials(sent["authorization"]) == f"{CLIENT_ID}:{CLIENT_SECRET}"


async def test_client_credentials_grant_without_access_key(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """Without an access key, the client_credentials grant is used and no username is sent."""
    provider = provider_for(endpoint, http)

    await provider.token()

    [sent] = endpoint.requests
    assert provider.grant_type == "client_credentials"
    assert sent["grant_type"] == "client_credentials"
    assert "username" not in sent
    assert basic_credentials(sent["authorization"]) == f"{CLIENT_ID}:{CLIENT_SECRET}"


async def test_token_is_cached_until_the_safety_margin(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A token lasting an hour is reused until 60 s before expiry, then refreshed."""
    clock = FakeClock()
    provider = provider_for(endpoint, http, clock=clock)

    first = await provider.token()
    clock.now += 3600 - 60 - 1
    still = await provider.token()
    clock.now += 2
    renewed = await provider.token()

    assert (first, still, renewed) == ("token-1", "token-1", "token-2")
    assert len(endpoint.requests) == 2


async def test_short_lived_token_uses_a_tenth_of_its_life_as_margin(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A token lasting 100 s is refreshed 10 s before expiry, not 60 s."""
    endpoint.expires_in = 100
    clock = FakeClock()
    provider = provider_for(endpoint, http, clock=clock)

    await provider.token()
    clock.now += 89
    cached = await provider.token()
    clock.now += 2
    renewed = await provider.token()

    assert (cached, renewed) == ("token-1", "token-2")


async def test_concurrent_waiters_on_an_expired_token_cause_one_request(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A hundred coroutines asking at once for a token share a single token request."""
    clock = FakeClock()
    provider = provider_for(endpoint, http, clock=clock)
    await provider.token()
    clock.now += 3600

    tokens = await asyncio.gather(*(provider.token() for _ in range(100)))

    assert set(tokens) == {"token-2"}
    assert len(endpoint.requests) == 2


async def test_concurrent_401s_invalidate_once(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """Fifty requests refused with the same token cause one refresh, not fifty."""
    provider = provider_for(endpoint, http)
    refused = await provider.token()

    async def refresh_after_401() -> str:
        provider.invalidate(refused)
        return await provider.token()

    tokens = await asyncio.gather(*(refresh_after_401() for _ in range(50)))

    assert set(tokens) == {"token-2"}
    assert len(endpoint.requests) == 2


async def test_invalidating_an_old_token_keeps_the_current_one(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A late 401 for a token already replaced does not throw away its replacement."""
    provider = provider_for(endpoint, http)
    old = await provider.token()
    provider.invalidate(old)
    current = await provider.token()

    provider.invalidate(old)

    assert await provider.token() == current == "token-2"
    assert len(endpoint.requests) == 2


async def test_failed_refresh_is_shared_by_all_waiters(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """When the endpoint refuses, the concurrent waiters all get that one failure."""
    endpoint.status = 401
    endpoint.body = {"error": "invalid_client"}
    provider = provider_for(endpoint, http)

    results = await asyncio.gather(*(provider.token() for _ in range(20)), return_exceptions=True)

    assert all(isinstance(result, AuthError) for result in results)
    assert len(endpoint.requests) == 1


async def test_refused_credentials_raise_auth_error_without_secrets(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A 400 invalid_grant is refused credentials naming the code and settings, nothing secret."""
    endpoint.status = 400
    endpoint.body = {
        "error": "invalid_grant",
        "error_description": f"bad password {ACCESS_KEY_SECRET} for {CLIENT_SECRET}",
    }
    provider = provider_for(endpoint, http, access_key=True)

    with pytest.raises(AuthError) as caught:
        await provider.token()

    message = str(caught.value) + repr(caught.value)
    assert caught.value.retriable is True
    assert caught.value.status == 400
    assert isinstance(caught.value, CredentialsRejected)
    assert provider.credentials_rejected is True
    assert str(caught.value) == (
        "token endpoint refused the credentials: 400 invalid_grant; check CXONE_CLIENT_ID, "
        "CXONE_CLIENT_SECRET, CXONE_ACCESS_KEY_ID, CXONE_ACCESS_KEY_SECRET"
    )
    assert ACCESS_KEY_SECRET not in message
    assert CLIENT_SECRET not in message


async def test_unknown_error_code_is_not_repeated(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """An error field outside the OAuth2 vocabulary is left out of the message."""
    endpoint.status = 401
    endpoint.body = {"error": f"oops {CLIENT_SECRET}"}
    provider = provider_for(endpoint, http)

    with pytest.raises(AuthError) as caught:
        await provider.token()

    assert str(caught.value) == (
        "token endpoint refused the credentials: 401; check CXONE_CLIENT_ID, CXONE_CLIENT_SECRET"
    )


async def test_server_error_is_transient(endpoint: TokenEndpoint, http: httpx.AsyncClient) -> None:
    """A 503 from the token endpoint is a ServerError carrying the status."""
    endpoint.status = 503
    provider = provider_for(endpoint, http)

    with pytest.raises(ServerError) as caught:
        await provider.token()

    assert caught.value.status == 503


async def test_rate_limited_token_endpoint(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A 429 from the token endpoint is RateLimited."""
    endpoint.status = 429
    provider = provider_for(endpoint, http)

    with pytest.raises(RateLimited):
        await provider.token()


async def test_refused_connection_is_a_network_error(http: httpx.AsyncClient) -> None:
    """A token endpoint that refuses connections raises NetworkError."""
    endpoint = TokenEndpoint()
    app = web.Application()
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    closed_port = server.port
    await server.close()
    endpoint.url = f"http://127.0.0.1:{closed_port}"
    provider = provider_for(endpoint, http)

    with pytest.raises(NetworkError) as caught:
        await provider.token()

    assert caught.value.retriable is True
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_timeout_is_a_network_error(endpoint: TokenEndpoint) -> None:
    """A token endpoint that never answers raises NetworkError once the client times out."""
    endpoint.hang = True
    async with httpx.AsyncClient(timeout=0.2) as http:
        provider = provider_for(endpoint, http)

        with pytest.raises(NetworkError) as caught:
            await provider.token()

    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


async def test_missing_required_scope_stops_start_up(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A token whose scope lacks a required one is refused credentials naming the scope."""
    endpoint.scope = "RealTimeApi AdminApi"
    provider = provider_for(endpoint, http, required_scopes=frozenset({"AdminApi", "UserApi"}))

    with pytest.raises(CredentialsRejected) as caught:
        await provider.token()

    assert str(caught.value) == (
        "the CXone token lacks required scopes: UserApi; "
        f"grant them to CXONE_CLIENT_ID {CLIENT_ID!r}"
    )
    assert caught.value.retriable is True
    assert provider.credentials_rejected is True


async def test_granted_scopes_pass(endpoint: TokenEndpoint, http: httpx.AsyncClient) -> None:
    """A token carrying every required scope is accepted."""
    endpoint.scope = "AdminApi UserApi"
    provider = provider_for(endpoint, http, required_scopes=frozenset({"AdminApi"}))

    assert await provider.token() == "token-1"


async def test_discovery_finds_the_token_endpoint_once(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """With only an issuer URL, the token endpoint is discovered once and then reused."""
    clock = FakeClock()
    provider = provider_for(
        endpoint, http, clock=clock, token_url=None, issuer_url=endpoint.url + "/"
    )

    await provider.token()
    clock.now += 3600
    token = await provider.token()

    assert token == "token-2"
    assert endpoint.discoveries == 1
    assert len(endpoint.requests) == 2


async def test_discovery_refuses_a_clear_text_remote_endpoint(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A discovered token endpoint over plain http to another host is refused."""
    endpoint.token_endpoint = "http://auth.example.com/token"
    provider = provider_for(endpoint, http, token_url=None, issuer_url=endpoint.url)

    with pytest.raises(CredentialsRejected, match="token_endpoint"):
        await provider.token()

    assert endpoint.requests == []


async def test_unsafe_token_url_is_refused(http: httpx.AsyncClient) -> None:
    """A configured token URL over plain http to a remote host is a configuration error."""
    with pytest.raises(ConfigurationError, match="CXONE_TOKEN_URL"):
        TokenProvider(
            http,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            token_url="http://cxone.example.com/auth/token",
        )


async def test_a_token_or_issuer_url_is_required(http: httpx.AsyncClient) -> None:
    """A provider with neither a token URL nor an issuer URL cannot be built."""
    with pytest.raises(ConfigurationError, match="CXONE_TOKEN_URL"):
        TokenProvider(http, client_id=CLIENT_ID, client_secret=SecretStr("x"))


async def test_repr_shows_no_secret_and_no_token(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """The provider's repr names the endpoint and client but no secret or token."""
    provider = provider_for(endpoint, http, access_key=True)
    token = await provider.token()

    shown = repr(provider) + repr(CxoneAuth(provider))

    assert CLIENT_ID in shown
    for secret in (CLIENT_SECRET, ACCESS_KEY_SECRET, token):
        assert secret not in shown


async def test_refresh_log_carries_no_secret_and_no_token(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """The refresh is logged by grant type only."""
    provider = provider_for(endpoint, http, access_key=True)

    with capture_logs() as logs:
        token = await provider.token()

    assert logs == [
        {"event": "auth.token_refreshed", "grant_type": "password", "log_level": "info"}
    ]
    assert token not in repr(logs)


class CountingTokens:
    """A token source handing out t1, t2, ... and remembering what was invalidated."""

    def __init__(self) -> None:
        self.issued = 0
        self.current: str | None = None
        self.invalidated: list[str] = []

    async def token(self) -> str:
        if self.current is None:
            self.issued += 1
            self.current = f"t{self.issued}"
        return self.current

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)
        if token == self.current:
            self.current = None


def put_request() -> httpx.Request:
    """A PUT with a JSON body, as the SCIM client sends."""
    return httpx.Request("PUT", "https://cxone.example.com/scim/v2/Users/u-1", json={"a": 1})


async def test_flow_sets_the_bearer_token_and_stops_on_success() -> None:
    """A request gets the current bearer token and the flow ends after a 200."""
    tokens = CountingTokens()
    flow = CxoneAuth(tokens).async_auth_flow(put_request())

    sent = await flow.__anext__()
    with pytest.raises(StopAsyncIteration):
        await flow.asend(httpx.Response(200, request=sent))

    assert sent.headers["Authorization"] == "Bearer t1"
    assert tokens.invalidated == []


async def test_flow_refreshes_once_after_a_401() -> None:
    """After a 401 the token is invalidated and the request resent with a fresh one."""
    tokens = CountingTokens()
    flow = CxoneAuth(tokens).async_auth_flow(put_request())

    first = await flow.__anext__()
    assert first.headers["Authorization"] == "Bearer t1"
    second = await flow.asend(httpx.Response(401, request=first))
    with pytest.raises(StopAsyncIteration):
        await flow.asend(httpx.Response(200, request=second))

    assert second.headers["Authorization"] == "Bearer t2"
    assert second.content == b'{"a":1}'
    assert tokens.invalidated == ["t1"]


async def test_flow_returns_a_second_401_to_the_caller() -> None:
    """A second 401 ends the flow without another refresh, leaving the caller to report it."""
    tokens = CountingTokens()
    flow = CxoneAuth(tokens).async_auth_flow(put_request())

    first = await flow.__anext__()
    second = await flow.asend(httpx.Response(401, request=first))
    with pytest.raises(StopAsyncIteration):
        await flow.asend(httpx.Response(401, request=second))

    assert tokens.issued == 2
    assert tokens.invalidated == ["t1"]


async def test_flow_does_not_refresh_on_403() -> None:
    """A 403 is returned as is: a new token does not grant missing permissions."""
    tokens = CountingTokens()
    flow = CxoneAuth(tokens).async_auth_flow(put_request())

    first = await flow.__anext__()
    with pytest.raises(StopAsyncIteration):
        await flow.asend(httpx.Response(403, request=first))

    assert tokens.invalidated == []


async def test_auth_over_http_resends_after_a_revoked_token(endpoint: TokenEndpoint) -> None:
    """Over real HTTP, a request refused for a revoked token succeeds with a fresh one."""
    endpoint.rejected_tokens.add("token-1")
    async with httpx.AsyncClient(timeout=2.0) as api:
        # One client for everything, as in the service: the provider's own discovery and token
        # requests must not go through the CxoneAuth that waits on the provider.
        provider = provider_for(endpoint, api, token_url=None, issuer_url=endpoint.url)
        api.auth = CxoneAuth(provider)

        response = await api.put(f"{endpoint.url}/api", json={"roles": ["agent"]})

    assert response.status_code == 200
    assert response.json()["body"] == '{"roles":["agent"]}'
    assert endpoint.api_tokens_seen == ["token-1", "token-2"]
    assert endpoint.discoveries == 1


def test_sync_clients_are_refused() -> None:
    """CxoneAuth cannot be used with a synchronous httpx client."""
    with (
        httpx.Client(auth=CxoneAuth(CountingTokens())) as client,
        pytest.raises(RuntimeError, match="AsyncClient"),
    ):
        client.get("http://127.0.0.1:9/")


async def test_a_failed_refresh_is_not_repeated_until_its_backoff_has_passed(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """After a 503, callers within the backoff get the failure without a request; then one more."""
    endpoint.status = 503
    clock = FakeClock()
    provider = provider_for(
        endpoint, http, clock=clock, backoff=TokenBackoff(initial=1.0, maximum=8.0)
    )

    for _ in range(5):
        with pytest.raises(ServerError):
            await provider.token()
    after_first = len(endpoint.requests)
    clock.now += 1.0
    with pytest.raises(ServerError):
        await provider.token()
    clock.now += 1.0
    with pytest.raises(ServerError, match=r"next token request in 1\.0s"):
        await provider.token()
    after_second = len(endpoint.requests)
    endpoint.status = 200
    clock.now += 1.0
    token = await provider.token()

    assert after_first == 1
    assert after_second == 2
    assert token == "token-3"
    assert provider.credentials_rejected is False


async def test_refused_credentials_are_asked_again_slowly_and_recover(
    endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> None:
    """A 401 invalid_client waits the slow `rejected` backoff, then a rotated secret works."""
    endpoint.status = 401
    endpoint.body = {"error": "invalid_client"}
    clock = FakeClock()
    provider = provider_for(endpoint, http, clock=clock, backoff=TokenBackoff(rejected=30.0))

    with pytest.raises(CredentialsRejected):
        await provider.token()
    rejected = provider.credentials_rejected
    clock.now += 29.0
    with pytest.raises(CredentialsRejected):
        await provider.token()
    endpoint.status = 200
    clock.now += 1.0
    token = await provider.token()

    assert rejected is True
    assert len(endpoint.requests) == 2
    assert token == "token-2"
    assert provider.credentials_rejected is False


def test_token_backoff_doubles_up_to_its_maximum_and_honours_retry_after() -> None:
    """Waits double from `initial` to `maximum`; a longer Retry-After wins; refusals wait long."""
    backoff = TokenBackoff(initial=1.0, maximum=10.0, rejected=60.0)
    error = ServerError("503", status=503)

    waits = [backoff.after(error, failures) for failures in range(1, 7)]

    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.after(RateLimited("429", retry_after=7.0), 1) == 7.0
    assert backoff.after(CredentialsRejected("401", status=401), 1) == 60.0
