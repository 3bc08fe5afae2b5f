"""scim2-tester, an independent RFC 7643/7644 checker, against the running ingress over HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from scim2_client.client import BaseSyncSCIMClient
from scim2_client.errors import RequestNetworkException
from scim2_tester import Status, check_server

from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.ingress_harness import TOKEN, ingress_pipeline, running_ingress

pytestmark = pytest.mark.timeout(180)

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


class HttpxScimClient(BaseSyncSCIMClient):
    """scim2-client's sync client over an httpx.Client (its own network engine uses httpx2)."""

    def __init__(self, client: httpx.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        url = self.client.build_request("GET", endpoint).url
        base = self.client.base_url
        return (
            url.host == base.host
            and url.port == base.port
            and url.raw_path.startswith(base.raw_path)
        )

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)
        except httpx.RequestError as error:
            raise RequestNetworkException() from error


def run_checks(base_url: str) -> list[Any]:
    """Every check scim2-tester has, against the server at `base_url`, collected, not raised."""
    with httpx.Client(
        base_url=base_url + "/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0
    ) as http:
        return check_server(HttpxScimClient(http), raise_exceptions=False)


async def test_every_scim2_tester_check_passes_for_users_groups_patch_and_discovery(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Discovery, CRUD and PATCH checks for User and Group all pass; none fails or is skipped."""
    # The checker sends ~400 requests in a few seconds: the rate limit has its own test.
    pipeline = await ingress_pipeline(
        topics, simulator_server, INGRESS_RATE_LIMIT_PER_MINUTE="600000"
    )
    async with running_ingress(pipeline) as ingress:
        # The checker is synchronous: it runs in a thread while the ingress serves in this loop.
        results = await asyncio.to_thread(run_checks, ingress.url)
    tally = Counter(result.status.name for result in results)
    failing = [
        (result.resource_type, result.title, result.status.name, result.reason)
        for result in results
        if result.status not in PASSING
    ]
    by_type = Counter(result.resource_type or "server" for result in results)
    by_tag = Counter(tag for result in results for tag in result.tags)
    print(f"scim2-tester: {len(results)} checks, {dict(tally)}, by resource type {dict(by_type)}")
    print(f"scim2-tester: by tag {dict(sorted(by_tag.items()))}")
    assert failing == []
    covered = {tag for result in results for tag in result.tags}
    assert {"discovery", "crud:create", "crud:read", "crud:update", "crud:delete"} <= covered
    assert {result.resource_type for result in results} >= {"User", "Group"}
    assert any("patch" in tag for tag in covered), covered
