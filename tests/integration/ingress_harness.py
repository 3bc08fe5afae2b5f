"""Running the SCIM ingress against the test broker and simulator, and talking to it as an IdP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from consumer.events import RoleChangeEvent, parse_event
from consumer.ingress.service import Ingress, IngressTuning
from consumer.ingress.settings import IngressSettings, load_ingress_settings
from consumer.sandbox.feed import TopicReader
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import Pipeline, fast_tuning, make_pipeline

TOKEN = "ingress-test-token-0123456789-abcdefghij"
SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def ingress_pipeline(topics: Topics, server: SimulatorServer, **extra: str) -> Pipeline:
    """Unique topics (input, audit, dlq, ingress state) and the ingress's environment."""
    (state,) = await topics.create("ingress-state")
    environment = {
        "INGRESS_TOKEN": TOKEN,
        "INGRESS_PORT": "0",
        "INGRESS_STATE_TOPIC": state,
        "INGRESS_SOURCE": "okta/acme-test",
        "INGRESS_RETRY_SECONDS": "0.5",
        **extra,
    }
    return await make_pipeline(topics, server, **environment)


def ingress_settings(pipeline: Pipeline, **overrides: object) -> IngressSettings:
    """The ingress's settings from the pipeline's environment, plus overrides."""
    fields: dict[str, object] = {k.lower(): v for k, v in pipeline.environment.items()}
    fields.update(overrides)
    return load_ingress_settings(**fields)


@asynccontextmanager
async def running_ingress(pipeline: Pipeline, **overrides: object) -> AsyncIterator[Ingress]:
    """Start the ingress in-process; stop it when the block ends."""
    ingress = Ingress(
        ingress_settings(pipeline, **overrides),
        IngressTuning(metrics_host="127.0.0.1", service=fast_tuning()),
    )
    await ingress.start()
    try:
        # One consumer-group join: the instance owns the state topic and serves.
        assert await ingress.serving_within(30.0), "the ingress did not become the writer"
        yield ingress
    finally:
        await ingress.stop()


def idp_client(ingress: Ingress, token: str = TOKEN) -> httpx.AsyncClient:
    """An HTTP client speaking to the ingress as an IdP does (bearer token, SCIM JSON)."""
    return httpx.AsyncClient(
        base_url=ingress.url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM, "Accept": SCIM},
        timeout=10.0,
    )


async def provision(
    idp: httpx.AsyncClient, user_name: str, group_name: str
) -> tuple[str, dict[str, Any]]:
    """Create a user and a group holding it, as an IdP does; return the user id and the group."""
    user = await idp.post("/Users", json={"schemas": [USER_SCHEMA], "userName": user_name})
    assert user.status_code == 201, user.text
    group = await idp.post(
        "/Groups",
        json={
            "schemas": [GROUP_SCHEMA],
            "displayName": group_name,
            "members": [{"value": user.json()["id"]}],
        },
    )
    assert group.status_code == 201, group.text
    return str(user.json()["id"]), group.json()


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp body."""
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


class EventLog:
    """The input events the ingress emitted, read from the input topic."""

    def __init__(self, reader: TopicReader) -> None:
        self._reader = reader

    @property
    def events(self) -> list[RoleChangeEvent]:
        """Every event read so far, in topic order."""
        return [parse_event(value) for _, value, _ in self._reader.records]

    async def poll(self) -> None:
        """Fetch what arrived on the topic since the last look."""
        await self._reader.poll()

    async def settle(self, ingress: Ingress, count: int, *, within: float = 15.0) -> None:
        """Wait until the emitter is idle and `count` events in all are on the topic."""
        assert ingress.emitter is not None
        await ingress.emitter.settled()
        await self._reader.wait_until(
            lambda reader: len(reader.records) >= count, within=within, what=f"{count} events"
        )

    def summary(self) -> list[tuple[str, str, tuple[str, ...], str | None]]:
        """(type, user, roles with the primary first, approval ticket) of each event."""
        return [
            (
                event.type.value.removeprefix("idp.user."),
                event.user_id,
                tuple(role.role_id for role in event.desired_roles),
                event.data.approval.ticket if event.data.approval else None,
            )
            for event in self.events
        ]


@asynccontextmanager
async def event_log(pipeline: Pipeline) -> AsyncIterator[EventLog]:
    """Read the pipeline's input topic from the beginning."""
    async with TopicReader(pipeline.bootstrap_servers, pipeline.input_topic) as reader:
        yield EventLog(reader)
