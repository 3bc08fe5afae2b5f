"""Every row of the README's status table over real HTTP, against the simulator's user rules.

Each test turns one answer of the simulator on for one user and checks what the client did:
the outcome and reason, how many requests it sent, whether it retried and how it waited.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from stamina.instrumentation import RetryDetails

from consumer.catalog import load_policy
from consumer.errors import Conflict, NetworkError, ServerError
from consumer.events import Outcome, SourcePosition, SyncResult
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import TOKEN_PATH
from consumer.scim.auth import TokenBackoff
from consumer.scim.circuit import ProbeVerdict
from consumer.scim.client import MAX_CONFLICT_RETRIES
from consumer.settings import HttpTransport
from consumer.sync import Synchronizer
from tests.integration.harness import EXAMPLE_POLICY, wait_until
from tests.integration.test_scim_resilience import (
    TRANSPORTS,
    ScimStack,
    answered,
    grant,
    retries,
    retries_counted,
    role_change,
    role_values,
    scim_records,
    scim_stack,
    seed,
)

__all__ = ["retries"]  # the fixture, imported so pytest finds it here


async def apply(stack: ScimStack, user_id: str, *roles: str) -> SyncResult:
    """Apply one role change for `user_id` through the real synchronizer."""
    synchronizer = Synchronizer(load_policy(EXAMPLE_POLICY), stack.client)
    applied = await synchronizer.apply(
        role_change(user_id, *roles),
        source=SourcePosition(topic="t", partition=0, offset=1),
        received_at=time.monotonic(),
    )
    return applied.result


async def test_403_on_the_put_fails_the_user_as_forbidden_with_the_detail_unretried(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """A PUT answered 403 ends the event failed/forbidden with CXone's detail, after one try."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.set_user_rule("u-1", "PUT", 403, detail="User is outside your business unit")

    async with scim_stack(simulator_server) as stack:
        result = await apply(stack, "u-1", "agent_voice")

    assert result.outcome is Outcome.FAILED
    assert result.reason == "forbidden"
    assert result.http_status == 403
    assert result.detail == "User is outside your business unit"
    assert answered(simulator) == [("GET", 200), ("PUT", 403)]
    assert role_values(simulator, "u-1") == ["agent_basic"]
    assert retries == []


async def test_a_run_of_403s_across_users_opens_the_circuit(
    simulator_server: SimulatorServer,
) -> None:
    """Twelve users all answered 403 each fail as forbidden, and the run opens the circuit."""
    simulator = simulator_server.simulator
    users = [f"u-{n}" for n in range(12)]
    for user_id in users:
        seed(simulator, user_id)
        simulator.set_user_rule(user_id, "GET", 403, detail="insufficient permissions")

    async with scim_stack(simulator_server) as stack:
        results = [await apply(stack, user_id, "agent_voice") for user_id in users]
        is_open = stack.circuit.is_open

    assert [(r.outcome, r.reason) for r in results] == [(Outcome.FAILED, "forbidden")] * 12
    assert is_open is True
    assert stack.circuit_changes == [True]
    assert answered(simulator) == [("GET", 403)] * 12


async def test_409_uniqueness_is_refused_for_good(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """A 409 with scimType uniqueness fails the event as scim_rejected, with no re-read."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.set_user_rule(
        "u-1", "PUT", 409, scim_type="uniqueness", detail="userName is already taken"
    )

    async with scim_stack(simulator_server) as stack:
        result = await apply(stack, "u-1", "agent_voice")

    assert (result.outcome, result.reason) == (Outcome.FAILED, "scim_rejected")
    assert result.detail == "uniqueness: userName is already taken"
    assert result.http_status == 409
    assert answered(simulator) == [("GET", 200), ("PUT", 409)]
    assert retries == []


@pytest.mark.parametrize(("status", "scim_type"), [(412, None), (409, "invalidVers"), (409, None)])
async def test_a_conflict_forever_is_retried_with_backoff_five_times_then_fails(
    simulator_server: SimulatorServer,
    retries: list[RetryDetails],
    status: int,
    scim_type: str | None,
) -> None:
    """A PUT answered 412 (or a plain 409) forever is re-read 5 times with backoff, then fails."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.set_user_rule("u-1", "PUT", status, scim_type=scim_type)
    counted = retries_counted("conflict")

    async with scim_stack(simulator_server) as stack:
        result = await apply(stack, "u-1", "agent_voice")

    requests = len(scim_records(simulator))
    print(f"always-{status}: {requests} requests for one user before it failed as conflict")
    assert (result.outcome, result.reason) == (Outcome.FAILED, "conflict")
    assert result.http_status == status
    assert result.attempts == MAX_CONFLICT_RETRIES + 1
    assert answered(simulator) == [("GET", 200), ("PUT", status)] * (MAX_CONFLICT_RETRIES + 1)
    assert retries_counted("conflict") - counted == MAX_CONFLICT_RETRIES
    assert [type(d.caused_by) for d in retries] == [Conflict] * MAX_CONFLICT_RETRIES
    # Paced by the backoff, not redone at once.
    assert all(d.wait_for > 0 for d in retries)
    assert role_values(simulator, "u-1") == ["agent_basic"]


async def test_a_passing_conflict_is_re_read_and_then_synced(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """Two 412s and then a served PUT end synced after three attempts."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.set_user_rule("u-1", "PUT", 412, times=2)

    async with scim_stack(simulator_server) as stack:
        result = await apply(stack, "u-1", "agent_voice")

    assert result.outcome is Outcome.SYNCED
    assert result.attempts == 3
    assert answered(simulator) == [("GET", 200), ("PUT", 412)] * 2 + [("GET", 200), ("PUT", 200)]
    assert role_values(simulator, "u-1") == ["agent_voice"]


@TRANSPORTS
@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_a_redirect_is_never_followed_and_fails_as_unexpected_redirect(
    simulator_server: SimulatorServer,
    retries: list[RetryDetails],
    transport: HttpTransport,
    status: int,
    method: str,
) -> None:
    """A 302/307 on the GET or the PUT is not followed (no token resent) and is no success."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.set_user_rule("u-1", method, status)

    async with scim_stack(simulator_server, transport=transport) as stack:
        result = await apply(stack, "u-1", "agent_voice")

    assert (result.outcome, result.reason) == (Outcome.FAILED, "unexpected_redirect")
    assert result.http_status == status
    assert result.detail == (
        f"HTTP {status} to {simulator_server.base_url}/scim/v2/Users/u-1; not followed"
    )
    expected = [("GET", status)] if method == "GET" else [("GET", 200), ("PUT", status)]
    assert answered(simulator) == expected
    assert role_values(simulator, "u-1") == ["agent_basic"]
    assert retries == []


@TRANSPORTS
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("malformed_body", ServerError),
        ("wrong_content_length", NetworkError),
        ("malformed_response", NetworkError),
    ],
)
async def test_a_broken_response_is_retried_then_the_write_lands(
    simulator_server: SimulatorServer,
    retries: list[RetryDetails],
    transport: HttpTransport,
    answer: str,
    error: type[Exception],
) -> None:
    """A GET answered with a broken body or broken HTTP is a transient error of the tree."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.set_user_rule("u-1", "GET", answer, times=1)

    async with scim_stack(simulator_server, transport=transport) as stack:
        result = await apply(stack, "u-1", "agent_voice")

    assert result.outcome is Outcome.SYNCED
    assert role_values(simulator, "u-1") == ["agent_voice"]
    assert [type(d.caused_by) for d in retries] == [error]
    faults = [record.fault for record in scim_records(simulator)]
    assert faults == [answer, None, None]


async def test_a_get_that_hangs_is_given_up_and_retried(
    simulator_server: SimulatorServer, retries: list[RetryDetails]
) -> None:
    """A GET the server never answers times out as a NetworkError and is retried."""
    simulator = simulator_server.simulator
    seed(simulator)
    simulator.set_user_rule("u-1", "GET", "hang", times=1)

    async with scim_stack(simulator_server, request_timeout=1.0) as stack:
        result = await apply(stack, "u-1", "agent_voice")

    assert result.outcome is Outcome.SYNCED
    assert [type(d.caused_by) for d in retries] == [NetworkError]
    assert [record.fault for record in scim_records(simulator)] == ["hang", None, None]


async def test_before_any_user_the_breaker_probe_is_one_filtered_users_read(
    simulator_server: SimulatorServer,
) -> None:
    """A client that asked about no user yet probes with a GET /Users filter, answered 200."""
    simulator = simulator_server.simulator

    async with scim_stack(simulator_server) as stack:
        verdict = await stack.client.probe()

    [record] = scim_records(simulator)
    assert (record.method, record.path, record.status) == ("GET", "/scim/v2/Users", 200)
    assert "filter=userName" in record.query
    assert verdict is ProbeVerdict.WORKS


async def test_the_breaker_probe_reads_the_users_the_service_asked_about_in_turn(
    simulator_server: SimulatorServer,
) -> None:
    """Once users were read, the probe reads them, newest first and in turn, never searching."""
    simulator = simulator_server.simulator
    simulator.searches_forbidden = True
    for user_id in ("u-1", "u-2"):
        seed(simulator, user_id)

    async with scim_stack(simulator_server) as stack:
        await stack.client.get_user("u-1")
        await stack.client.get_user("u-2")
        simulator.clear_requests()
        verdicts = [await stack.client.probe() for _ in range(3)]

    paths = [(record.path, record.status) for record in scim_records(simulator)]
    assert paths == [
        ("/scim/v2/Users/u-2", 200),
        ("/scim/v2/Users/u-1", 200),
        ("/scim/v2/Users/u-2", 200),
    ]
    assert verdicts == [ProbeVerdict.WORKS] * 3


async def test_a_probe_answered_403_is_forbidden_not_an_outage(
    simulator_server: SimulatorServer,
) -> None:
    """A 403 to the probe's search or user read is the FORBIDDEN verdict; a 503 still raises."""
    simulator = simulator_server.simulator
    simulator.searches_forbidden = True
    seed(simulator, "u-1")

    async with scim_stack(simulator_server) as stack:
        searched = await stack.client.probe()
        await stack.client.get_user("u-1")
        simulator.set_user_rule("u-1", "GET", 403)
        read = await stack.client.probe()
        simulator.clear_user_rules()
        simulator.set_outage(True)
        with pytest.raises(ServerError):
            await stack.client.probe()

    assert (searched, read) == (ProbeVerdict.FORBIDDEN, ProbeVerdict.FORBIDDEN)


async def test_a_token_outage_is_asked_with_backoff_and_feeds_the_breaker(
    simulator_server: SimulatorServer,
) -> None:
    """In a token outage, 16 writers share backed-off token requests and open the circuit."""
    simulator = simulator_server.simulator
    users = [f"u-{n}" for n in range(16)]
    for user_id in users:
        seed(simulator, user_id)
    simulator.set_token_outage(True)
    backoff = TokenBackoff(initial=0.2, maximum=1.0)

    async with scim_stack(simulator_server, token_backoff=backoff) as stack:
        writers = [
            asyncio.create_task(stack.client.update_user(user_id, grant("agent_voice")))
            for user_id in users
        ]
        await wait_for_token_requests(simulator_server, 4, within=30)
        opened = list(stack.circuit_changes)
        token_times = [r.received_at for r in simulator.requests if r.path == TOKEN_PATH]
        simulator.set_token_outage(False)
        outcomes = await asyncio.wait_for(asyncio.gather(*writers), timeout=60)

    gaps = [later - earlier for earlier, later in itertools.pairwise(token_times)]
    assert opened == [True]
    # Single flight and backoff: 16 writers, yet each token request waits out the one before.
    # (A slow machine only lengthens the gaps.)
    assert len(gaps) >= 3
    assert all(gap >= wanted * 0.9 for gap, wanted in zip(gaps, [0.2, 0.4, 0.8], strict=False))
    assert [outcome.status for outcome in outcomes] == [200] * 16
    assert all(role_values(simulator, user_id) == ["agent_voice"] for user_id in users)


def token_requests(server: SimulatorServer) -> int:
    """Token requests received, answered or not."""
    return sum(1 for record in server.simulator.requests if record.path == TOKEN_PATH)


async def wait_for_token_requests(server: SimulatorServer, count: int, *, within: float) -> None:
    """Wait until the token endpoint has received `count` requests."""
    await wait_until(
        lambda: token_requests(server) >= count, within=within, what=f"{count} token requests"
    )
