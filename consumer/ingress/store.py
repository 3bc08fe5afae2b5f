"""scim2-server's in-memory storage, with every change written through to the state topic.

The SCIM semantics (filters, PATCH, ETags, uniqueness) stay scim2-server's; this adds only
durability and notice: a change is applied in memory, written to the state topic and
acknowledged, and only then answered, and the users it may concern are handed to the emitter.
A write the broker refuses is undone in memory and answered 503, so the IdP retries it.
Operations run one at a time (an asyncio lock held across the acknowledged write): a PUT's read
and write can never interleave with another request's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from scim2_models import PayloadTooLargeException, Resource, ResourceType, SCIMException, User
from scim2_server.memory import InMemoryStorage
from scim2_server.storage import AsyncScimStorage, SearchPage, projection, search_page

from consumer.ingress.resources import affected_users, resource_class
from consumer.ingress.state_topic import StateTopic

__all__ = ["PersistedStorage", "StoreUnavailable", "resource_key"]

log = structlog.get_logger(__name__)


class StoreUnavailable(SCIMException):
    """The state store could not take the change: nothing was changed, try again."""

    status = 503
    _default_detail = "the state store is unavailable; nothing was changed, retry later"


def resource_key(resource: Resource[Any]) -> str:
    """The state topic key of a stored resource: `User/<id>` or `Group/<id>`."""
    assert resource.meta is not None
    return f"{resource.meta.resource_type}/{resource.id}"


class PersistedStorage(AsyncScimStorage):
    """Users and groups in memory, every change acknowledged on the state topic first."""

    supports_cursors = True

    def __init__(
        self,
        journal: StateTopic,
        *,
        on_change: Callable[[frozenset[str]], None],
        max_record_bytes: int,
    ) -> None:
        self.memory = InMemoryStorage()
        self._journal = journal
        self._on_change = on_change
        self._max_record_bytes = max_record_bytes
        self._lock = asyncio.Lock()

    def load(self, records: dict[str, dict[str, Any]]) -> None:
        """Take the resources read back from the state topic (at start-up, before serving)."""
        resources = [
            resource_class(key.partition("/")[0]).model_validate(document)
            for key, document in records.items()
            if key.startswith(("User/", "Group/"))
        ]
        self.memory.resources = resources
        # Versions carry on past the last one given out, so an ETag from before a restart
        # can never match a different state after it.
        numbers = [_version_number(r) for r in resources]
        self.memory.versions = itertools.count(max(numbers, default=0) + 1)

    def resources(self) -> list[Resource[Any]]:
        """Every stored user and group (copies are not needed: callers only read)."""
        return self.memory.resources

    def operation(self) -> AbstractAsyncContextManager[None]:
        """One SCIM operation at a time, from its first read to its acknowledged write."""
        return self._one_at_a_time()

    @asynccontextmanager
    async def _one_at_a_time(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def get(
        self, resource_type: ResourceType, resource_id: str, *, response_parameters: Any = None
    ) -> Resource[Any]:
        return self.memory.get(
            resource_type, resource_id, **projection(self.memory, response_parameters)
        )

    async def search(
        self, resource_types: list[ResourceType], search_request: Any, *, position: Any = None
    ) -> SearchPage:
        return search_page(self.memory, resource_types, search_request, position)

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        stored = self.memory.create(resource_type, _without_secrets(resource))
        try:
            await self._write(stored)
        except BaseException:
            self.memory.delete(resource_type, str(stored.id))
            raise
        self._on_change(affected_users(None, stored))
        return stored

    async def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        before = self.memory.get(resource_type, str(resource.id))
        stored = self.memory.update(
            resource_type, _without_secrets(resource), expected_version=expected_version
        )
        try:
            await self._write(stored)
        except BaseException:
            self._restore(before)
            raise
        self._on_change(affected_users(before, stored))
        return stored

    async def delete(
        self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None
    ) -> None:
        before = self.memory.get(resource_type, resource_id)
        self.memory.delete(resource_type, resource_id, expected_version=expected_version)
        try:
            await self._put(resource_key(before), None)
        except BaseException:
            self._restore(before)
            raise
        self._on_change(affected_users(before, None))

    async def _write(self, stored: Resource[Any]) -> None:
        document = stored.model_dump(mode="json")
        # The record must fit the topic: a group grown past it is refused, not half-stored.
        if len(json.dumps(document, separators=(",", ":"))) > self._max_record_bytes - 1024:
            raise PayloadTooLargeException(
                detail="the resource is larger than the state store takes (KAFKA_MAX_RECORD_BYTES)"
            )
        await self._put(resource_key(stored), document)

    async def _put(self, key: str, document: dict[str, Any] | None) -> None:
        try:
            await self._journal.put(key, document)
        except KafkaError as error:
            log.warning("ingress.store_failed", error=type(error).__name__)
            raise StoreUnavailable() from error

    def _restore(self, resource: Resource[Any]) -> None:
        """Put a resource back as it was (through the storage's public setter: rare, O(n))."""
        key = resource_key(resource)
        kept = [r for r in self.memory.resources if resource_key(r) != key]
        self.memory.resources = [*kept, resource]


def _version_number(resource: Resource[Any]) -> int:
    version = (resource.meta.version if resource.meta else None) or ""
    digits = version.removeprefix('W/"').removesuffix('"')
    return int(digits) if digits.isdigit() else 0


def _without_secrets(resource: Resource[Any]) -> Resource[Any]:
    """The resource without a password: nothing the ingress needs, so never stored anywhere."""
    if isinstance(resource, User) and resource.password is not None:
        return resource.model_copy(update={"password": None})
    return resource
