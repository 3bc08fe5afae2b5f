"""The CXone simulator over real HTTP: tokens, SCIM users, ETags, throttling, faults, admin API."""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from consumer.sandbox.faults import Fault
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from consumer.sandbox.throttle import RetryAfterStyle
from tests.conftest import TEST_CREDENTIALS, ManualClock
from tests.integration.harness import wait_until

USER_ID = "u-1001"
NICE_URN = "urn:ietf:params:scim:schemas:extension:nice:2.0:User"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client with a short timeout."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


async def fetch_token(http: httpx.AsyncClient, server: SimulatorServer) -> str:
    """Get a token with the client_credentials grant and HTTP Basic client authentication."""
    response = await http.post(
        server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(TEST_CREDENTIALS.client_id, TEST_CREDENTIALS.client_secret),
    )
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def client_authentication(how: str) -> tuple[dict[str, str], dict[str, str]]:
    """Return the form fields and headers that authenticate the test client, by Basic or form."""
    if how == "basic":
        pair = f"{TEST_CREDENTIALS.client_id}:{TEST_CREDENTIALS.client_secret}".encode()
        return {}, {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    fields = {
        "client_id": TEST_CREDENTIALS.client_id,
        "client_secret": TEST_CREDENTIALS.client_secret,
    }
    return fields, {}


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header of a bearer token."""
    return {"Authorization": f"Bearer {token}"}


def seed_jdoe(simulator: CxoneSimulator, user_id: str = USER_ID) -> dict[str, Any]:
    """Seed a user carrying every attribute this service must never clobber."""
    return simulator.seed_user(
        user_id,
        "jdoe@example.com",
        given_name="Jane",
        family_name="Doe",
        emails=["jdoe@example.com", "jane@example.org"],
        phone_numbers=["+1 555 0100"],
        title="Team Lead",
        team="Support EMEA",
        login_authenticator="SAML-Okta",
        roles=[("agent_basic", "Standard Agent", True), ("supervisor", "Supervisor", False)],
    )


# Discovery and tokens


async def test_discovery_names_issuer_and_token_endpoint(
    http: httpx.AsyncClient, simulator_server: SimulatorServer
) -> None:
    """OpenID discovery gives the issuer and a token endpoint that issues tokens."""
    response = await http.get(simulator_server.base_url + "/.well-known/openid-configuration")
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == simulator_server.issuer
    assert document["token_endpoint"] == simulator_server.token_url
    assert set(document["grant_types_supported"]) == {"client_credentials", "password"}


@pytest.mark.parametrize("client_auth", ["basic", "form"])
async def test_client_credentials_grant(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, client_auth: str
) -> None:
    """The client_credentials grant issues a bearer token, client authenticated either way."""
    data, headers = client_authentication(client_auth)
    data["grant_type"] = "client_credentials"
    response = await http.post(simulator_server.token_url, data=data, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("client_auth", ["basic", "form"])
async def test_password_grant_with_access_key(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, client_auth: str
) -> None:
    """The password grant takes the access key as username and password, as CXone does."""
    data, headers = client_authentication(client_auth)
    data |= {
        "grant_type": "password",
        "username": TEST_CREDENTIALS.access_key_id,
        "password": TEST_CREDENTIALS.access_key_secret,
    }
    response = await http.post(simulator_server.token_url, data=data, headers=headers)
    assert response.status_code == 200
    token = response.json()["access_token"]
    users = await http.get(
        simulator_server.scim_base_url + "/Users",
        params={"filter": 'userName eq "nobody@example.com"'},
        headers=bearer(token),
    )
    assert users.status_code == 200
    assert users.json()["totalResults"] == 0


async def test_wrong_client_secret_is_invalid_client(
    http: httpx.AsyncClient, simulator_server: SimulatorServer
) -> None:
    """A wrong client secret gets 401 invalid_client with a Basic challenge."""
    response = await http.post(
        simulator_server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(TEST_CREDENTIALS.client_id, "not-the-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_wrong_access_key_is_invalid_grant(
    http: httpx.AsyncClient, simulator_server: SimulatorServer
) -> None:
    """A wrong access key secret gets 400 invalid_grant."""
    response = await http.post(
        simulator_server.token_url,
        data={
            "grant_type": "password",
            "username": TEST_CREDENTIALS.access_key_id,
            "password": "not-the-key",
        },
        auth=(TEST_CREDENTIALS.client_id, TEST_CREDENTIALS.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_unknown_grant_type_is_refused(
    http: httpx.AsyncClient, simulator_server: SimulatorServer
) -> None:
    """A grant type the simulator does not know gets 400 unsupported_grant_type."""
    response = await http.post(
        simulator_server.token_url,
        data={"grant_type": "authorization_code"},
        auth=(TEST_CREDENTIALS.client_id, TEST_CREDENTIALS.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_token_requests_are_counted(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """Every token request counts, refused ones included."""
    await fetch_token(http, simulator_server)
    await http.post(simulator_server.token_url, data={"grant_type": "client_credentials"})
    assert simulator.token_requests == 2


async def test_expired_token_is_rejected(
    http: httpx.AsyncClient, manual_clock: ManualClock
) -> None:
    """A token past its lifetime gets 401 on SCIM, a fresh one works again."""
    simulator = CxoneSimulator(TEST_CREDENTIALS, token_lifetime_seconds=60, clock=manual_clock)
    seed_jdoe(simulator)
    async with SimulatorServer(simulator) as server:
        token = await fetch_token(http, server)
        user_url = f"{server.scim_base_url}/Users/{USER_ID}"
        assert (await http.get(user_url, headers=bearer(token))).status_code == 200
        manual_clock.advance(59)
        assert (await http.get(user_url, headers=bearer(token))).status_code == 200
        manual_clock.advance(1)
        expired = await http.get(user_url, headers=bearer(token))
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"] == 'Bearer realm="SCIM"'
        fresh = await fetch_token(http, server)
        assert (await http.get(user_url, headers=bearer(fresh))).status_code == 200


async def test_revoked_token_is_rejected(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """After revoke_tokens, a token that worked gets 401."""
    seed_jdoe(simulator)
    token = await fetch_token(http, simulator_server)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    assert (await http.get(user_url, headers=bearer(token))).status_code == 200
    simulator.revoke_tokens()
    response = await http.get(user_url, headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["status"] == "401"


async def test_scim_without_bearer_is_unauthorized(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """A SCIM request without a token gets a SCIM 401 with a Bearer challenge."""
    seed_jdoe(simulator)
    response = await http.get(f"{simulator_server.scim_base_url}/Users/{USER_ID}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="SCIM"'
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


# SCIM users


async def test_listing_users_requires_a_filter(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """GET /Users without a filter is a 400; with one it finds the seeded user."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    users_url = simulator_server.scim_base_url + "/Users"
    unfiltered = await http.get(users_url, headers=headers)
    assert unfiltered.status_code == 400
    assert unfiltered.json()["scimType"] == "invalidFilter"
    filtered = await http.get(
        users_url, params={"filter": 'userName eq "jdoe@example.com"'}, headers=headers
    )
    assert filtered.status_code == 200
    assert filtered.json()["totalResults"] == 1
    assert filtered.json()["Resources"][0]["id"] == USER_ID


async def test_forbidden_searches_answer_403_while_users_are_read_and_written(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """With searches forbidden, a filtered listing is a SCIM 403; GET and PUT of a user are 200."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    users_url = simulator_server.scim_base_url + "/Users"
    admin = simulator_server.base_url + "/_sim"
    assert (await http.post(admin + "/searches-forbidden", json={"on": True})).status_code == 204
    assert simulator.searches_forbidden is True
    search = await http.get(
        users_url, params={"filter": 'userName eq "jdoe@example.com"'}, headers=headers
    )
    read = await http.get(f"{users_url}/{USER_ID}", headers=headers)
    written = await http.put(f"{users_url}/{USER_ID}", json=read.json(), headers=headers)
    assert (search.status_code, search.json()["status"]) == (403, "403")
    assert (read.status_code, written.status_code) == (200, 200)
    assert (await http.post(admin + "/searches-forbidden", json={"on": False})).status_code == 204
    allowed = await http.get(
        users_url, params={"filter": 'userName eq "jdoe@example.com"'}, headers=headers
    )
    assert allowed.json()["totalResults"] == 1


async def test_unknown_user_is_not_found(
    http: httpx.AsyncClient, simulator_server: SimulatorServer
) -> None:
    """GET on an id nobody has gets a SCIM 404."""
    headers = bearer(await fetch_token(http, simulator_server))
    response = await http.get(f"{simulator_server.scim_base_url}/Users/u-none", headers=headers)
    assert response.status_code == 404
    assert response.json()["status"] == "404"


async def test_get_put_round_trip_keeps_unmanaged_attributes(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """A PUT of the whole user read back changes the roles and keeps everything else."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    user = (await http.get(user_url, headers=headers)).json()
    assert user["name"] == {"givenName": "Jane", "familyName": "Doe"}
    assert user[NICE_URN] == {"team": "Support EMEA", "loginAuthenticator": "SAML-Okta"}
    user["roles"] = [{"value": "admin_support", "display": "Support Admin", "primary": True}]
    written = await http.put(user_url, json=user, headers=headers)
    assert written.status_code == 200
    stored = simulator.get_user(USER_ID)
    assert stored["roles"] == user["roles"]
    assert stored["name"] == {"givenName": "Jane", "familyName": "Doe"}
    assert [e["value"] for e in stored["emails"]] == ["jdoe@example.com", "jane@example.org"]
    assert stored["phoneNumbers"] == [{"value": "+1 555 0100", "type": "work", "primary": True}]
    assert stored["title"] == "Team Lead"
    assert stored[NICE_URN] == {"team": "Support EMEA", "loginAuthenticator": "SAML-Okta"}
    assert stored["active"] is True


async def test_put_of_a_partial_user_wipes_what_it_leaves_out(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """Like CXone, a PUT replaces the whole user: the hazard every write must avoid."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    partial = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "jdoe@example.com",
        "roles": [{"value": "agent_basic", "primary": True}],
    }
    written = await http.put(
        f"{simulator_server.scim_base_url}/Users/{USER_ID}", json=partial, headers=headers
    )
    assert written.status_code == 200
    stored = simulator.get_user(USER_ID)
    assert "name" not in stored
    assert "phoneNumbers" not in stored
    assert NICE_URN not in stored


async def test_etags_on_answer_etag_and_refuse_stale_if_match(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """With ETags on, GET gives a version and a PUT with a stale If-Match gets 412."""
    simulator.etags = True
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    read = await http.get(user_url, headers=headers)
    etag = read.headers["etag"]
    assert etag == read.json()["meta"]["version"]
    user = read.json()
    user["title"] = "Manager"
    first = await http.put(user_url, json=user, headers=headers | {"If-Match": etag})
    assert first.status_code == 200
    assert first.headers["etag"] != etag
    user["title"] = "Director"
    stale = await http.put(user_url, json=user, headers=headers | {"If-Match": etag})
    assert stale.status_code == 412
    assert simulator.get_user(USER_ID)["title"] == "Manager"
    assert simulator.requests[-1].if_match == etag


async def test_etags_off_give_no_etag_and_ignore_if_match(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """With ETags off (CXone's documented behaviour), no version is served or checked."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    read = await http.get(user_url, headers=headers)
    assert "etag" not in read.headers
    assert "version" not in read.json()["meta"]
    user = read.json()
    user["title"] = "Manager"
    written = await http.put(user_url, json=user, headers=headers | {"If-Match": 'W/"999"'})
    assert written.status_code == 200
    assert simulator.get_user(USER_ID)["title"] == "Manager"
    config = await http.get(simulator_server.scim_base_url + "/ServiceProviderConfig")
    assert config.json()["etag"] == {"supported": False}


# Throttling


async def test_rate_limit_answers_429_with_retry_after_seconds(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """Past the burst, a request gets 429 and the seconds until the bucket refills."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    simulator.set_rate_limit(per_minute=1, burst=2)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    statuses = [(await http.get(user_url, headers=headers)).status_code for _ in range(2)]
    throttled = await http.get(user_url, headers=headers)
    assert statuses == [200, 200]
    assert throttled.status_code == 429
    assert 59 <= int(throttled.headers["retry-after"]) <= 60
    assert throttled.json()["status"] == "429"
    simulator.clear_rate_limit()
    assert (await http.get(user_url, headers=headers)).status_code == 200


async def test_rate_limit_retry_after_as_http_date(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """The Retry-After of a 429 can be an HTTP date about a refill away."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    simulator.set_rate_limit(per_minute=1, burst=1, retry_after=RetryAfterStyle.HTTP_DATE)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    assert (await http.get(user_url, headers=headers)).status_code == 200
    throttled = await http.get(user_url, headers=headers)
    assert throttled.status_code == 429
    retry_at = parsedate_to_datetime(throttled.headers["retry-after"])
    wait = (retry_at - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 55 <= wait <= 61


# Faults


async def test_scripted_faults_are_served_in_order(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """Scripted statuses answer the next requests one each, then service resumes."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    simulator.script_faults(503, 500, 429)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    responses = [await http.get(user_url, headers=headers) for _ in range(4)]
    assert [r.status_code for r in responses] == [503, 500, 429, 200]
    assert responses[2].headers["retry-after"] == "1"
    assert responses[0].json()["detail"] == "injected fault 503"
    assert [r.fault for r in simulator.requests[-4:]] == ["503", "500", "429", None]


async def test_reset_fault_drops_the_connection_without_a_response(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """A "reset" fault closes the connection with no response; the next request works."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    simulator.script_faults("reset")
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await http.get(user_url, headers=headers)
    record = simulator.requests[-1]
    assert (record.fault, record.status) == ("reset", None)
    assert (await http.get(user_url, headers=headers)).status_code == 200


async def test_timeout_fault_holds_past_the_client_timeout(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """A "timeout" fault never answers; the client times out and the simulator lets go."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    simulator.script_faults(Fault.TIMEOUT)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    with pytest.raises(httpx.ReadTimeout):
        await http.get(user_url, headers=headers, timeout=0.2)
    record = simulator.requests[-1]
    await wait_until(lambda: record.finished, within=5.0)
    assert (record.fault, record.status) == ("timeout", None)
    assert (await http.get(user_url, headers=headers)).status_code == 200


async def test_fault_probability_fails_requests_at_random(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """Probability 1 fails every request with the chosen kind; 0 fails none."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    simulator.set_fault_probability(1.0, 502)
    assert [(await http.get(user_url, headers=headers)).status_code for _ in range(3)] == [502] * 3
    simulator.set_fault_probability(0.0)
    assert [(await http.get(user_url, headers=headers)).status_code for _ in range(3)] == [200] * 3


async def test_outage_answers_503_until_cleared(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """During an outage every SCIM request gets 503, while tokens are still issued."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    simulator.set_outage(True)
    assert (await http.get(user_url, headers=headers)).status_code == 503
    assert (await http.get(simulator_server.scim_base_url + "/Schemas")).status_code == 503
    assert await fetch_token(http, simulator_server)
    simulator.set_outage(False)
    assert (await http.get(user_url, headers=headers)).status_code == 200


async def test_token_endpoint_faults_only_when_included(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """Faults skip the token endpoint unless it is included, then hit it too."""
    simulator.script_faults(503)
    assert await fetch_token(http, simulator_server)
    assert simulator.faults.scripted == (Fault.UNAVAILABLE,)
    simulator.faults_on_token_endpoint = True
    response = await http.post(
        simulator_server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(TEST_CREDENTIALS.client_id, TEST_CREDENTIALS.client_secret),
    )
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"


async def test_latency_holds_a_request_while_others_pass(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """A request that arrived under latency is still held when a later, prompt one is done."""
    seed_jdoe(simulator)
    headers = bearer(await fetch_token(http, simulator_server))
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    simulator.set_latency(1.0)
    slow = asyncio.create_task(http.get(user_url, headers=headers))
    await wait_until(lambda: simulator.requests[-1].path.endswith(USER_ID), within=5.0)
    slow_record = simulator.requests[-1]
    simulator.set_latency(0.0)
    prompt = await http.get(user_url, headers=headers)
    assert prompt.status_code == 200
    assert slow_record.status is None
    assert not slow.done()
    assert (await slow).status_code == 200
    assert slow_record.status == 200


# Request log


async def test_request_log_records_requests_without_credentials(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """The log keeps method, path, query, status, body and If-Match, but no secret."""
    seed_jdoe(simulator)
    token = await fetch_token(http, simulator_server)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    user = (await http.get(user_url, headers=bearer(token))).json()
    await http.put(user_url, json=user, headers=bearer(token) | {"If-Match": 'W/"1"'})
    token_record, get_record, put_record = simulator.requests
    assert (token_record.method, token_record.path, token_record.status) == (
        "POST",
        "/auth/token",
        200,
    )
    assert token_record.body == b""
    assert (get_record.method, get_record.path, get_record.status) == (
        "GET",
        f"/scim/v2/Users/{USER_ID}",
        200,
    )
    assert (put_record.method, put_record.status, put_record.if_match) == ("PUT", 200, 'W/"1"')
    assert put_record.json()["userName"] == "jdoe@example.com"
    assert put_record.received_at >= get_record.received_at
    everything = repr(simulator.requests)
    assert token not in everything
    assert TEST_CREDENTIALS.client_secret not in everything


# Admin API


async def test_admin_seeds_and_reads_users(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """POST /_sim/users stores a SCIM user under its id; GET /_sim/users/{id} reads it."""
    admin = simulator_server.base_url + "/_sim"
    user = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", NICE_URN],
        "id": "u-admin",
        "userName": "admin@example.com",
        "name": {"givenName": "Ada", "familyName": "Min"},
        "roles": [{"value": "agent_basic", "primary": True}],
        NICE_URN: {"team": "Ops"},
    }
    created = await http.post(admin + "/users", json=user)
    assert created.status_code == 201
    assert created.json()["id"] == "u-admin"
    read = await http.get(admin + "/users/u-admin")
    assert read.status_code == 200
    assert read.json()[NICE_URN] == {"team": "Ops"}
    assert simulator.get_user("u-admin")["name"] == {"givenName": "Ada", "familyName": "Min"}
    assert (await http.get(admin + "/users/u-nobody")).status_code == 404


async def test_admin_turns_the_knobs(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """The admin endpoints set faults, outage, rate limit and ETags, and clear them."""
    admin = simulator_server.base_url + "/_sim"
    faults = {"script": [503, "reset"], "latency_ms": 20, "include_token_endpoint": True}
    assert (await http.post(admin + "/faults", json=faults)).status_code == 204
    assert simulator.faults.scripted == (Fault.UNAVAILABLE, Fault.RESET)
    assert simulator.faults.latency_seconds == pytest.approx(0.02)
    assert simulator.faults_on_token_endpoint is True
    assert (await http.delete(admin + "/faults")).status_code == 204
    assert len(simulator.faults.scripted) == 0
    assert simulator.faults.latency_seconds == 0.0

    assert (await http.post(admin + "/outage", json={"on": True})).status_code == 204
    assert simulator.faults.outage is True

    limit = {"per_minute": 30, "burst": 2, "retry_after": "date"}
    assert (await http.post(admin + "/rate-limit", json=limit)).status_code == 204
    assert simulator.rate_limit is not None
    assert (simulator.rate_limit.per_minute, simulator.rate_limit.burst) == (30, 2)
    assert simulator.retry_after_style is RetryAfterStyle.HTTP_DATE
    assert (await http.delete(admin + "/rate-limit")).status_code == 204
    assert simulator.rate_limit is None

    assert (await http.post(admin + "/etags", json={"on": True})).status_code == 204
    assert simulator.etags is True


async def test_admin_sets_user_rules_and_token_faults_over_http(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """Per-user rules and token-endpoint faults set through /_sim/ answer as asked, then clear."""
    admin = simulator_server.base_url + "/_sim"
    seed_jdoe(simulator)
    token = await fetch_token(http, simulator_server)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    rule = {"method": "GET", "answer": 409, "scim_type": "uniqueness", "detail": "taken"}
    assert (await http.post(f"{admin}/users/{USER_ID}/rules", json=rule)).status_code == 204
    conflicted = await http.get(user_url, headers=bearer(token))
    assert (await http.delete(f"{admin}/users/{USER_ID}/rules")).status_code == 204
    served = await http.get(user_url, headers=bearer(token))
    faults = {"probability": 1.0, "kind": "invalid_client"}
    assert (await http.post(admin + "/token-faults", json=faults)).status_code == 204
    refused = await http.post(
        simulator_server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(TEST_CREDENTIALS.client_id, TEST_CREDENTIALS.client_secret),
    )
    bad = await http.post(f"{admin}/users/{USER_ID}/rules", json={"method": "GET", "answer": 418})

    assert conflicted.status_code == 409
    assert (conflicted.json()["scimType"], conflicted.json()["detail"]) == ("uniqueness", "taken")
    assert served.status_code == 200
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert bad.status_code == 400


async def test_admin_revokes_tokens_and_reports(
    http: httpx.AsyncClient, simulator_server: SimulatorServer, simulator: CxoneSimulator
) -> None:
    """POST /_sim/revoke kills tokens; /_sim/requests and /_sim/stats report the traffic."""
    seed_jdoe(simulator)
    admin = simulator_server.base_url + "/_sim"
    token = await fetch_token(http, simulator_server)
    user_url = f"{simulator_server.scim_base_url}/Users/{USER_ID}"
    assert (await http.get(user_url, headers=bearer(token))).status_code == 200
    assert (await http.post(admin + "/revoke")).status_code == 204
    assert (await http.get(user_url, headers=bearer(token))).status_code == 401
    log = (await http.get(admin + "/requests")).json()
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/auth/token", 200),
        ("GET", f"/scim/v2/Users/{USER_ID}", 200),
        ("GET", f"/scim/v2/Users/{USER_ID}", 401),
    ]
    assert (await http.get(admin + "/stats")).json() == {"token_requests": 1, "requests": 3}
    assert (await http.delete(admin + "/requests")).status_code == 204
    assert simulator.requests == []


async def test_admin_refuses_bad_input(
    http: httpx.AsyncClient, simulator_server: SimulatorServer
) -> None:
    """Unknown faults, unknown fields and unknown routes are refused with a reason."""
    admin = simulator_server.base_url + "/_sim"
    unknown_fault = await http.post(admin + "/faults", json={"script": ["boom"]})
    assert unknown_fault.status_code == 400
    assert "script" in unknown_fault.json()["error"]
    unknown_field = await http.post(admin + "/outage", json={"on": True, "extra": 1})
    assert unknown_field.status_code == 400
    assert (await http.get(admin + "/nothing")).status_code == 404


# Server lifecycle


async def test_stopping_releases_held_requests(http: httpx.AsyncClient) -> None:
    """Stopping the server cuts off a request held by a "timeout" fault instead of waiting."""
    simulator = CxoneSimulator(TEST_CREDENTIALS)
    seed_jdoe(simulator)
    server = SimulatorServer(simulator)
    await server.start()
    try:
        headers = bearer(await fetch_token(http, server))
        simulator.script_faults("timeout")
        held = asyncio.create_task(
            http.get(f"{server.scim_base_url}/Users/{USER_ID}", headers=headers, timeout=30)
        )
        await wait_until(lambda: simulator.requests[-1].fault == "timeout", within=5.0)
    finally:
        await asyncio.wait_for(server.stop(), timeout=5)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await held
    assert simulator.requests[-1].status is None


async def test_a_taken_port_is_refused_at_start(simulator_server: SimulatorServer) -> None:
    """Starting on a port already served fails with OSError and leaves nothing running."""
    second = SimulatorServer(CxoneSimulator(TEST_CREDENTIALS), port=simulator_server.port)
    with pytest.raises(OSError, match="in use"):
        await second.start()
    with pytest.raises(RuntimeError, match="not running"):
        _ = second.port


async def test_admin_index_lists_every_route_and_each_one_answers(
    http: httpx.AsyncClient, simulator_server: SimulatorServer
) -> None:
    """GET /_sim/ lists the admin routes, and every GET route it lists answers, not 404."""
    index = await http.get(simulator_server.base_url + "/_sim/")
    assert index.status_code == 200
    routes = index.json()["routes"]
    assert {"method": "GET", "path": "/_sim/stats", "does": "{token_requests, requests}"} in routes
    assert {(route["method"], route["path"]) for route in routes} >= {
        ("POST", "/_sim/users"),
        ("POST", "/_sim/faults"),
        ("POST", "/_sim/outage"),
        ("POST", "/_sim/rate-limit"),
        ("POST", "/_sim/revoke"),
    }
    for route in routes:
        if route["method"] == "GET" and "{" not in route["path"]:
            answer = await http.get(simulator_server.base_url + route["path"])
            assert answer.status_code == 200, route
