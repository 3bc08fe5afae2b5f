"""Hostile requests to the ingress: each gets an RFC 7644 error body, none emits an event."""

from __future__ import annotations

import httpx
import pytest

from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.ingress_harness import (
    SCIM,
    TOKEN,
    USER_SCHEMA,
    event_log,
    idp_client,
    ingress_pipeline,
    patch,
    running_ingress,
)

pytestmark = pytest.mark.timeout(120)

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def scim_error(response: httpx.Response, status: int) -> dict[str, object]:
    """The error body of a response, checked to be RFC 7644's with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    return body  # type: ignore[no-any-return]


def nested(depth: int) -> bytes:
    """A JSON document nested `depth` arrays deep, inside a user's name."""
    return (
        b'{"schemas":["'
        + USER_SCHEMA.encode()
        + b'"],"userName":'
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )


async def test_hostile_bodies_filters_and_types_get_scim_errors_and_emit_nothing(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Huge, deep, non-JSON, mistyped and unknown-attribute bodies and bad filters are refused."""
    simulator_server.simulator.seed_user("u-1001", "jdoe@example.com")
    pipeline = await ingress_pipeline(topics, simulator_server, INGRESS_MAX_BODY_BYTES="65536")
    async with running_ingress(pipeline) as ingress, event_log(pipeline) as log:
        async with idp_client(ingress) as idp:
            huge = b'{"userName":"' + b"a" * 70_000 + b'"}'
            assert "65536" in str(scim_error(await idp.post("/Users", content=huge), 413)["detail"])
            scim_error(await idp.post("/Users", content=nested(20_000)), 400)
            scim_error(await idp.post("/Users", content=b"{not json"), 400)
            scim_error(
                await idp.post("/Users", json={"schemas": [USER_SCHEMA], "userName": 12}), 400
            )
            scim_error(
                await idp.post(
                    "/Users",
                    json={"schemas": [USER_SCHEMA], "userName": "x@example.com", "active": "maybe"},
                ),
                400,
            )
            unknown = await idp.post(
                "/Users",
                json={
                    "schemas": [USER_SCHEMA],
                    "userName": "y@example.com",
                    "favouriteColour": "blue",
                },
            )
            body = scim_error(unknown, 400)
            assert body["scimType"] == "invalidSyntax"
            assert "favouriteColour" in str(body["detail"])
            for bad in ("userName eq", 'userName xx "a"', '((userName eq "a"', "a" * 5000):
                body = scim_error(await idp.get("/Users", params={"filter": bad}), 400)
                assert body["scimType"] == "invalidFilter"
            scim_error(await idp.get("/Users/does-not-exist"), 404)
            scim_error(
                await idp.patch(
                    "/Users/does-not-exist",
                    json=patch({"op": "add", "path": "displayName", "value": "x"}),
                ),
                404,
            )
            scim_error(await idp.post("/Widgets", json={}), 404)
        assert ingress.emitter is not None
        await ingress.emitter.settled()
        await log.poll()
        assert log.events == []


async def test_a_missing_or_wrong_token_is_401_with_a_scim_error_and_a_challenge(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """No token, another token, or another scheme: 401, WWW-Authenticate, nothing stored."""
    pipeline = await ingress_pipeline(topics, simulator_server)
    async with running_ingress(pipeline) as ingress:
        user = {"schemas": [USER_SCHEMA], "userName": "mallory@example.com"}
        async with httpx.AsyncClient(base_url=ingress.url, headers={"Content-Type": SCIM}) as anon:
            for headers in (
                {},
                {"Authorization": "Bearer " + TOKEN[:-1] + "x"},
                {"Authorization": "Basic " + TOKEN},
                {"Authorization": "Bearer"},
                {"Authorization": "Bearer " + TOKEN + " extra"},
            ):
                response = await anon.post("/Users", json=user, headers=headers)
                scim_error(response, 401)
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert TOKEN not in response.text
            # Discovery of the configuration needs no token (RFC 7643 §5).
            assert (await anon.get("/ServiceProviderConfig")).status_code == 200
        async with idp_client(ingress) as idp:
            found = await idp.get("/Users", params={"filter": 'userName eq "mallory@example.com"'})
            assert found.json()["totalResults"] == 0


async def test_more_requests_than_the_rate_allows_get_429_with_retry_after(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With 6 a minute (a burst of 1), the second request at once is 429 with Retry-After."""
    pipeline = await ingress_pipeline(topics, simulator_server, INGRESS_RATE_LIMIT_PER_MINUTE="6")
    async with running_ingress(pipeline) as ingress, idp_client(ingress) as idp:
        first = await idp.get("/Users", params={"filter": 'userName eq "a"'})
        assert first.status_code == 200
        second = await idp.get("/Users", params={"filter": 'userName eq "a"'})
        body = scim_error(second, 429)
        assert int(second.headers["Retry-After"]) >= 1
        assert "Retry-After" in str(body["detail"])
