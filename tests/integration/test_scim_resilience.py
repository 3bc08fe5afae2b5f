"""The SCIM client stack against the simulator over real HTTP, riding out CXone's trouble.

Each test builds the client the way the service does (transport, token provider, auth flow,
adaptive rate limiter, circuit breaker, retries) with the short backoff of `FAST_RETRY`, turns
one of the simulator's knobs, and checks the request log, the retry counter and the user's
final state.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import stamina
from pydantic import SecretStr
from scim2_models import Error
from stamina.instrumentation import RetryDetails

from consumer.catalog import load_policy
from consumer.errors import (
    ConfigurationError,
    NetworkError,
    RateLimited,
    ScimRejected,
    ServerError,
    UserNotFound,
)
from consumer.events import Outcome, RoleChangeEvent, SourcePosition
from consumer.observability.metrics import REGISTRY
from consumer.sandbox.asgi import Receive, Scope, Send, read_body, send_json
from consumer.sandbox.request_log import RequestRecord
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import SCIM_MEDIA_TYPE, CxoneSimulator
from consumer.sandbox.throttle import RetryAfterStyle
from consumer.scim import mapping
from consumer.scim.auth import CxoneAuth, TokenBackoff, TokenProvider
from consumer.scim.circuit import CircuitBreaker
from consumer.scim.client import (
    Plan,
    ScimClient,
    ScimUser,
    build_http_client,
    count_retry,
)
from consumer.scim.throttle import AdaptiveRateLimiter
from consumer.settings import HttpTransport, load_settings
from consumer.sync import Synchronizer
from tests.conftest import TEST_CREDENTIALS, ManualClock
from tests.integration.harness import EXAMPLE_POLICY, FAST_RETRY

TRANSPORTS = pytest.mark.parametrize("transport", list(HttpTransport), ids=str)
NICE_URN = "urn:ietf:params:scim:schemas:extension:nice:2.0:User"


@dataclass
class ScimStack:
    """The client as the service assembles it, and the parts a test looks into."""

    client: ScimClient
    tokens: TokenProvider
    limiter: AdaptiveRateLimiter
    circuit: CircuitBreaker
    circuit_changes: list[bool] = field(default_factory=list)


@asynccontextmanager
async def scim_stack(
    server: SimulatorServer,
    *,
    transport: HttpTransport = HttpTransport.AIOHTTP,
    request_timeout: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    max_connections: int = 32,
    token_backoff: TokenBackoff | None = None,
) -> AsyncIterator[ScimStack]:
    """Build the real client stack, as `consumer.service` does, against `server`."""
    http = build_http_client(transport, timeout=request_timeout, max_connections=max_connections)
    try:
        tokens = TokenProvider(
            http,
            token_url=server.token_url,
            client_id=TEST_CREDENTIALS.client_id,
            client_secret=SecretStr(TEST_CREDENTIALS.client_secret),
            access_key_id=TEST_CREDENTIALS.access_key_id,
            access_key_secret=SecretStr(TEST_CREDENTIALS.access_key_secret),
            clock=clock,
            backoff=token_backoff,
        )
        changes: list[bool] = []
        circuit = CircuitBreaker(on_change=changes.append, probe_interval=0.2)
        limiter = AdaptiveRateLimiter()
        client = ScimClient(
            server.scim_base_url,
            http,
            auth=CxoneAuth(tokens),
            limiter=limiter,
            circuit=circuit,
            retry=FAST_RETRY,
        )
        yield ScimStack(client, tokens, limiter, circuit, changes)
    finally:
        await http.aclose()


@pytest.fixture
def retries() -> Iterator[list[RetryDetails]]:
    """Every stamina retry of the test, beside the service's own retry metric hook."""
    saved = stamina.instrumentation.get_on_retry_hooks()
    seen: list[RetryDetails] = []

    def record(details: RetryDetails) -> None:
        seen.append(details)

    stamina.instrumentation.set_on_retry_hooks([count_retry, record])
    yield seen
    stamina.instrumentation.set_on_retry_hooks(saved)


def retries_counted(reason: str) -> float:
    """The value of `cxone_sync_retries_total{reason}` right now."""
    return REGISTRY.get_sample_value("cxone_sync_retries_total", {"reason": reason}) or 0.0


def grant(*roles: str) -> Plan:
    """A plan that gives the user exactly `roles` (the first one primary), nothing else."""
    desired = tuple(
        mapping.DesiredRole(value=role, display=None, primary=index == 0)
        for index, role in enumerate(roles)
    )

    async def plan(user: ScimUser) -> bytes:
        document = user.document
        active = mapping.is_active(document)
        return mapping.encode(mapping.with_roles(document, desired, active=active))

    return plan


def seed(simulator: CxoneSimulator, user_id: str = "u-1") -> dict[str, Any]:
    """Seed a user with attributes the service does not own, holding `agent_basic`."""
    return simulator.seed_user(
        user_id,
        f"{user_id}@example.com",
        given_name="Ada",
        family_name="Lovelace",
        emails=[f"{user_id}@example.com"],
        phone_numbers=["+1 555 0100"],
        team="Support EMEA",
        roles=[("agent_basic", "Standard Agent", True)],
    )


def role_values(simulator: CxoneSimulator, user_id: str) -> list[str]:
    """The role ids the simulator holds for a user."""
    return [role["value"] for role in simulator.get_user(user_id).get("roles") or []]


def scim_records(simulator: CxoneSimulator) -> list[RequestRecord]:
    """The SCIM requests the simulator received, oldest first."""
    return [record for record in simulator.requests if record.path.startswith("/scim/")]


def answered(simulator: CxoneSimulator) -> list[tuple[str, int | str | None]]:
    """(method, status or fault) of every SCIM request, oldest first."""
    return [
        (record.method, record.status if record.status is not None else record.fault)
        for record in scim_records(simulator)
    ]


# Rate limits


@TRANSPORTS
async def test_429_with_retry_after_in_seconds_is_honoured(
    simulator_server: SimulatorServer, transport: HttpTransport, retries: list[RetryDetails]
) -> None:
    """Two 429s asking for one second each are waited out exactly, then the write succeeds."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.fault_retry_after_seconds = 1.0
    simulator.script_faults(429, 429)
    counted = retries_counted("rate_limited")

    async with scim_stack(simulator_server, transport=transport) as stack:
        outcome = await stack.client.update_user("u-1", grant("agent_voice"))

    assert outcome.status == 200
    assert outcome.attempts == 3
    assert role_values(simulator, "u-1") == ["agent_voice"]
    assert answered(simulator) == [("GET", 429), ("GET", 429), ("GET", 200), ("PUT", 200)]
    assert retries_counted("rate_limited") - counted == 2
    assert [type(d.caused_by) for d in retries] == [RateLimited, RateLimited]
    assert [d.wait_for for d in retries] == [pytest.approx(1.0), pytest.approx(1.0)]


@TRANSPORTS
async def test_429_with_retry_after_as_http_date_is_honoured(
    simulator_server: SimulatorServer, transport: HttpTransport, retries: list[RetryDetails]
) -> None:
    """A 429 whose Retry-After is an HTTP date three seconds ahead is waited out, then retried."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.retry_after_style = RetryAfterStyle.HTTP_DATE
    simulator.fault_retry_after_seconds = 3.0
    simulator.script_faults(429)
    counted = retries_counted("rate_limited")

    async with scim_stack(simulator_server, transport=transport) as stack:
        outcome = await stack.client.update_user("u-1", grant("agent_voice"))

    assert outcome.status == 200
    assert role_values(simulator, "u-1") == ["agent_voice"]
    assert answered(simulator) == [("GET", 429), ("GET", 200), ("PUT", 200)]
    assert retries_counted("rate_limited") - counted == 1
    [retry] = retries
    assert isinstance(retry.caused_by, RateLimited)
    # The date has whole seconds, so the wait is what is left of three seconds: more than one
    # (far above FAST_RETRY's own backoff, so the date was read) and never more than three.
    assert retry.caused_by.retry_after is not None
    assert 1.0 < retry.wait_for <= 3.0


async def test_token_bucket_429s_are_retried_until_every_write_lands(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """Under a real token bucket of 240/min, six concurrent writes all land after their 429s."""
    simulator = simulator_server.simulator
    users = [f"u-{n}" for n in range(6)]
    for user_id in users:
        seed(simulator, user_id)
    simulator.set_rate_limit(240, burst=2)
    counted = retries_counted("rate_limited")

    async with scim_stack(simulator_server) as stack:
        outcomes = await asyncio.gather(
            *(stack.client.update_user(user_id, grant("agent_digital")) for user_id in users)
        )

    assert [outcome.status for outcome in outcomes] == [200] * 6
    assert all(role_values(simulator, user_id) == ["agent_digital"] for user_id in users)
    throttled = sum(1 for record in scim_records(simulator) if record.status == 429)
    assert throttled >= 1
    assert retries_counted("rate_limited") - counted == throttled


# Server errors, resets, timeouts


@TRANSPORTS
async def test_503_burst_opens_the_circuit_then_the_write_succeeds(
    simulator_server: SimulatorServer, transport: HttpTransport, retries: list[RetryDetails]
) -> None:
    """Twelve 503s open the circuit; probes find CXone back, the circuit closes, the write lands."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.script_faults(*([503] * 12))
    counted = retries_counted("server_error")

    async with scim_stack(simulator_server, transport=transport) as stack:
        outcome = await stack.client.update_user("u-1", grant("agent_voice"))
        assert stack.circuit.is_open is False

    assert outcome.status == 200
    assert outcome.attempts == 13
    assert role_values(simulator, "u-1") == ["agent_voice"]
    assert answered(simulator) == [("GET", 503)] * 12 + [("GET", 200), ("PUT", 200)]
    assert retries_counted("server_error") - counted == 12
    assert all(isinstance(d.caused_by, ServerError) for d in retries)
    # Ten failures out of ten open it; the two failed probes keep it open; the third closes it.
    assert stack.circuit_changes == [True, False]


@TRANSPORTS
async def test_connection_resets_are_retried_until_the_write_succeeds(
    simulator_server: SimulatorServer, transport: HttpTransport, retries: list[RetryDetails]
) -> None:
    """Connections reset without an answer, twice on the GET and once on the PUT, still end in a
    correct write."""
    simulator = simulator_server.simulator
    original = seed(simulator)
    counted = retries_counted("network")
    plans = 0
    write = grant("agent_voice")

    async def plan_then_reset_the_put(user: ScimUser) -> bytes | None:
        nonlocal plans
        plans += 1
        if plans == 1:
            simulator.script_faults("reset")
        return await write(user)

    async with scim_stack(simulator_server, transport=transport) as stack:
        # A first request leaves a kept-alive connection in the pool, to be reset under it.
        await stack.client.get_user("u-1")
        simulator.script_faults("reset", "reset")
        outcome = await stack.client.update_user("u-1", plan_then_reset_the_put)

    assert outcome.status == 200
    assert role_values(simulator, "u-1") == ["agent_voice"]
    assert simulator.get_user("u-1")["phoneNumbers"] == original["phoneNumbers"]
    resets = [record for record in scim_records(simulator) if record.fault == "reset"]
    assert [record.method for record in resets] == ["GET", "GET", "PUT"]
    assert all(record.status is None for record in resets)
    if transport is HttpTransport.HTTPX:
        # Every reset reaches the client, which re-reads and redoes the write.
        expected = 3
        tail = [("GET", 200), ("PUT", "reset"), ("GET", 200), ("PUT", 200)]
    else:
        # aiohttp resends an idempotent request once by itself when a kept-alive connection
        # dies under it: the first GET reset and the PUT reset never reach the client.
        expected = 1
        tail = [("GET", 200), ("PUT", "reset"), ("PUT", 200)]
    assert answered(simulator) == [("GET", 200), ("GET", "reset"), ("GET", "reset"), *tail]
    assert outcome.attempts == expected + 1
    assert retries_counted("network") - counted == expected
    assert len(retries) == expected
    assert all(isinstance(d.caused_by, NetworkError) for d in retries)


async def test_a_request_that_hangs_times_out_and_is_retried(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """A GET held past the client timeout is abandoned and retried; the write then lands."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.script_faults("timeout")
    counted = retries_counted("network")

    async with scim_stack(simulator_server, request_timeout=2.0) as stack:
        outcome = await stack.client.update_user("u-1", grant("agent_voice"))

    assert outcome.status == 200
    assert role_values(simulator, "u-1") == ["agent_voice"]
    assert [record.fault for record in scim_records(simulator)] == ["timeout", None, None]
    assert retries_counted("network") - counted == 1
    [retry] = retries
    assert isinstance(retry.caused_by, NetworkError)


# Tokens


@pytest.mark.parametrize("client_knows", [True, False], ids=["expired-both", "expired-server"])
async def test_token_expiry_mid_run_makes_one_token_request_for_100_concurrent_writes(
    client_knows: bool,
) -> None:
    """When the token expires between two waves of 100 concurrent writes, one refresh serves all.

    `expired-both`: the client sees the expiry coming and refreshes before sending.
    `expired-server`: only CXone's clock moved; all 100 get 401 and still cause one refresh.
    """
    server_clock = ManualClock()
    client_clock = server_clock if client_knows else ManualClock()
    simulator = CxoneSimulator(TEST_CREDENTIALS, token_lifetime_seconds=120, clock=server_clock)
    users = [f"u-{n}" for n in range(100)]
    for user_id in users:
        seed(simulator, user_id)

    async with (
        SimulatorServer(simulator) as server,
        scim_stack(server, clock=client_clock) as stack,
    ):
        first = await asyncio.gather(
            *(stack.client.update_user(user_id, grant("agent_voice")) for user_id in users)
        )
        assert simulator.token_requests == 1
        server_clock.advance(121)
        second = await asyncio.gather(
            *(stack.client.update_user(user_id, grant("agent_digital")) for user_id in users)
        )

    assert simulator.token_requests == 2
    assert [outcome.status for outcome in first + second] == [200] * 200
    assert all(role_values(simulator, user_id) == ["agent_digital"] for user_id in users)
    unauthorized = sum(1 for record in scim_records(simulator) if record.status == 401)
    if client_knows:
        assert unauthorized == 0
    else:
        assert 1 <= unauthorized <= 100


async def test_revoked_token_gets_401_then_one_refresh_and_success(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """After a key rotation revokes the token, a 401 triggers one refresh and the write succeeds."""
    simulator = simulator_server.simulator
    seed(simulator)

    async with scim_stack(simulator_server) as stack:
        await stack.client.get_user("u-1")
        tokens_before = simulator.token_requests
        simulator.revoke_tokens()
        outcome = await stack.client.update_user("u-1", grant("agent_voice"))

    assert outcome.status == 200
    assert outcome.attempts == 1
    assert simulator.token_requests - tokens_before == 1
    assert answered(simulator) == [("GET", 200), ("GET", 401), ("GET", 200), ("PUT", 200)]
    assert role_values(simulator, "u-1") == ["agent_voice"]
    # The auth flow resends within the attempt: no stamina retry was needed.
    assert retries == []


# Concurrent changes


async def test_etag_race_412_rereads_and_keeps_the_concurrent_change(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """A user changed between our GET and PUT gets 412; the re-read write keeps both changes."""
    simulator = simulator_server.simulator
    simulator.etags = True
    seed(simulator)
    counted = retries_counted("conflict")
    plans = 0
    write = grant("agent_voice", "reporting_viewer")

    async def racing_plan(user: ScimUser) -> bytes | None:
        nonlocal plans
        plans += 1
        if plans == 1:
            # An administrator edits the user in CXone while we are deciding.
            simulator.seed_user(
                "u-1",
                "u-1@example.com",
                given_name="Ada",
                family_name="King",
                emails=["u-1@example.com"],
                phone_numbers=["+1 555 0199"],
                team="Support APAC",
                roles=[("agent_basic", "Standard Agent", True)],
            )
        return await write(user)

    async with scim_stack(simulator_server) as stack:
        outcome = await stack.client.update_user("u-1", racing_plan)

    assert outcome.status == 200
    assert outcome.attempts == 2
    assert plans == 2
    assert answered(simulator) == [("GET", 200), ("PUT", 412), ("GET", 200), ("PUT", 200)]
    puts = [record for record in scim_records(simulator) if record.method == "PUT"]
    assert puts[0].if_match is not None
    assert puts[1].if_match is not None
    assert puts[0].if_match != puts[1].if_match
    user = simulator.get_user("u-1")
    assert [role["value"] for role in user["roles"]] == ["agent_voice", "reporting_viewer"]
    assert user["name"]["familyName"] == "King"
    assert user["phoneNumbers"][0]["value"] == "+1 555 0199"
    assert user[NICE_URN]["team"] == "Support APAC"
    assert retries_counted("conflict") - counted == 1
    # Re-read after a backoff, like any transient trouble.
    assert [d.wait_for > 0 for d in retries] == [True]


# Permanent errors


class RefusingSimulator(CxoneSimulator):
    """The simulator, except that a PUT to a chosen user is refused for good with a SCIM Error."""

    def __init__(self) -> None:
        super().__init__(TEST_CREDENTIALS)
        self.refusals: dict[str, tuple[int, str, str]] = {}
        self.refused: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refused PUT with its error; serve everything else as the simulator does."""
        path = scope.get("path", "")
        refusal = self.refusals.get(path) if scope.get("method") == "PUT" else None
        if refusal is None:
            await super().__call__(scope, receive, send)
            return
        await read_body(receive)
        self.refused.append(path)
        status, scim_type, detail = refusal
        error = Error(status=status, scim_type=scim_type, detail=detail)
        await send_json(send, status, error.model_dump(), content_type=SCIM_MEDIA_TYPE)


def role_change(user_id: str, *roles: str) -> RoleChangeEvent:
    """A valid role-change event for `user_id` asking for `roles` (the first one primary)."""
    return RoleChangeEvent.model_validate(
        {
            "specversion": "1.0",
            "id": f"evt-{secrets.token_hex(4)}",
            "source": "okta/test",
            "type": "idp.user.roles.changed",
            "data": {
                "user_id": user_id,
                "roles": [
                    {"role_id": role, "primary": index == 0} for index, role in enumerate(roles)
                ],
            },
        }
    )


@pytest.mark.parametrize(
    ("status", "scim_type", "detail"),
    [
        (400, "invalidValue", "Role 'agent_voice' is not enabled for this tenant"),
        (422, "invalidValue", "A user may hold at most one primary role"),
    ],
)
async def test_permanent_refusal_fails_the_event_with_the_scim_detail_and_no_retry(
    status: int, scim_type: str, detail: str, retries: list[RetryDetails]
) -> None:
    """A 400 or 422 on the PUT ends the event as failed, with CXone's detail, after one try."""
    simulator = RefusingSimulator()
    seed(simulator)
    simulator.refusals["/scim/v2/Users/u-1"] = (status, scim_type, detail)

    async with SimulatorServer(simulator) as server, scim_stack(server) as stack:
        synchronizer = Synchronizer(load_policy(EXAMPLE_POLICY), stack.client)
        result = (
            await synchronizer.apply(
                role_change("u-1", "agent_voice"),
                source=SourcePosition(topic="t", partition=0, offset=7),
                received_at=time.monotonic(),
            )
        ).result

    assert result.outcome is Outcome.FAILED
    assert result.reason == "scim_rejected"
    assert result.http_status == status
    assert result.detail == f"{scim_type}: {detail}"
    assert result.roles_before == ("agent_basic",)
    assert simulator.refused == ["/scim/v2/Users/u-1"]
    assert answered(simulator) == [("GET", 200)]
    assert role_values(simulator, "u-1") == ["agent_basic"]
    assert retries == []


async def test_unknown_user_fails_the_event_as_user_not_found_without_retry(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """A 404 on the GET ends the event as failed/user_not_found, with the SCIM detail, at once."""
    simulator = simulator_server.simulator

    async with scim_stack(simulator_server) as stack:
        synchronizer = Synchronizer(load_policy(EXAMPLE_POLICY), stack.client)
        result = (
            await synchronizer.apply(
                role_change("ghost-7", "agent_voice"),
                source=SourcePosition(topic="t", partition=0, offset=8),
                received_at=time.monotonic(),
            )
        ).result

    assert result.outcome is Outcome.FAILED
    assert result.reason == "user_not_found"
    assert result.http_status == 404
    assert result.detail == "User 'ghost-7' not found"
    assert answered(simulator) == [("GET", 404)]
    assert retries == []


async def test_a_malformed_put_is_rejected_once_with_the_scim_error_detail(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """A PUT body CXone refuses as invalid raises ScimRejected with its detail, unretried."""
    simulator = simulator_server.simulator
    seed(simulator)

    async def malformed(user: ScimUser) -> bytes:
        return mapping.encode({**user.document, "active": "maybe"})

    async with scim_stack(simulator_server) as stack:
        with pytest.raises(ScimRejected) as refused:
            await stack.client.update_user("u-1", malformed)
        with pytest.raises(UserNotFound):
            await stack.client.get_user("nobody")

    assert refused.value.status == 400
    assert refused.value.detail.startswith("invalidValue: ")
    assert "active" in refused.value.detail
    assert answered(simulator) == [("GET", 200), ("PUT", 400), ("GET", 404)]
    assert retries == []


# The https rule


@pytest.mark.parametrize(
    ("setting", "url"),
    [
        ("CXONE_SCIM_BASE_URL", "http://cxone.example.com/scim/v2"),
        ("CXONE_TOKEN_URL", "http://cxone.example.com/auth/token"),
        ("CXONE_ISSUER_URL", "http://cxone.example.com"),
        ("WEBHOOK_URL", "http://hooks.example.com/cxone"),
    ],
)
def test_http_to_a_remote_host_is_refused_at_settings(setting: str, url: str) -> None:
    """A clear-text URL to anything but this machine stops start-up with a line naming it."""
    fields: dict[str, object] = {
        "cxone_scim_base_url": "https://cxone.example.com/scim/v2",
        "cxone_token_url": "https://cxone.example.com/auth/token",
        "cxone_client_id": TEST_CREDENTIALS.client_id,
        "cxone_client_secret": TEST_CREDENTIALS.client_secret,
        "policy_file": EXAMPLE_POLICY,
        "webhook_secret": "hook-secret-value",
    }
    fields[setting.lower()] = url

    with pytest.raises(ConfigurationError) as refused:
        load_settings(**fields)

    message = str(refused.value)
    assert message.startswith(f"configuration error: {setting}: ")
    assert "https" in message
    assert url not in message
    assert TEST_CREDENTIALS.client_secret not in message


def test_http_to_this_machine_is_allowed_at_settings(simulator_server: SimulatorServer) -> None:
    """The simulator's plain-http loopback URLs pass the https rule."""
    settings = load_settings(
        cxone_scim_base_url=simulator_server.scim_base_url,
        cxone_token_url=simulator_server.token_url,
        cxone_client_id=TEST_CREDENTIALS.client_id,
        cxone_client_secret=TEST_CREDENTIALS.client_secret,
        policy_file=EXAMPLE_POLICY,
    )

    assert settings.cxone_scim_base_url == simulator_server.scim_base_url
    assert settings.cxone_token_url == simulator_server.token_url


# Adaptive rate control


@pytest.mark.slow
async def test_adaptive_rate_control_settles_under_an_unpublished_limit(
    simulator_server: SimulatorServer,
) -> None:
    """Four workers under a 600/min limit learn it: under 5% of requests answered 429."""
    simulator = simulator_server.simulator
    workers, writes_per_worker = 4, 40
    users = [f"u-{n}" for n in range(workers)]
    for user_id in users:
        seed(simulator, user_id)
    simulator.set_rate_limit(600, burst=10)

    async with scim_stack(simulator_server) as stack:

        async def worker(user_id: str) -> None:
            for n in range(writes_per_worker):
                role = "agent_voice" if n % 2 == 0 else "agent_digital"
                await stack.client.update_user(user_id, grant(role))

        started = time.monotonic()
        await asyncio.gather(*(worker(user_id) for user_id in users))
        elapsed = time.monotonic() - started
        final_rate = stack.limiter.current_rate_per_minute

    records = scim_records(simulator)
    throttled = sum(1 for record in records if record.status == 429)
    fraction = throttled / len(records)
    succeeded = len(records) - throttled
    print(
        f"adaptive rate control: {len(records)} requests, {throttled} answered 429 "
        f"({fraction:.2%}), {succeeded / elapsed * 60:.0f} successful requests/min "
        f"over {elapsed:.1f}s, limiter at {final_rate:.0f}/min"
    )
    written = [record for record in records if record.method == "PUT" and record.status == 200]
    assert len(written) == workers * writes_per_worker
    assert all(role_values(simulator, user_id) == ["agent_digital"] for user_id in users)
    assert fraction < 0.05
