"""scim2-server shaped like CXone: bearer tokens, a required list filter, ETags on or off.

Searches may be forbidden (403) while reads and writes of single users are served, as for an
API user whose role may manage users but not list them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    Filter,
    ForbiddenException,
    InvalidFilterException,
    Patch,
    Resource,
    ResourceType,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    UnauthorizedException,
    User,
)
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.conditions import Conditions
from scim2_server.memory import AsyncInMemoryStorage, InMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.service import ScimService

from consumer.sandbox.nice import CxoneUser, NiceUser
from consumer.sandbox.tokens import TokenIssuer

USER_RESOURCE_TYPE = ResourceType.from_resource(CxoneUser)
# Users are filtered on userName; CXone caps a page at 100.
MAX_RESULTS = 100


def cxone_provider(*, etags: bool) -> ScimProvider:
    """Return the SCIM provider of CXone: users with the NICE extension, no bulk, no groups."""
    config = ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=etags),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="OAuth Bearer Token",
                description="A token from the /auth/token endpoint.",
                primary=True,
            )
        ],
    )
    return ScimProvider([User, NiceUser], resource_types=[USER_RESOURCE_TYPE], config=config)


class SeededIdStorage(InMemoryStorage):
    """In-memory users that keep the id they were seeded with."""

    def generate_id(self, resource_type: ResourceType, resource: Any) -> str:
        """Keep a seeded user's id; a user created over SCIM gets a fresh one."""
        seeded: str | None = resource.id
        return seeded if seeded else super().generate_id(resource_type, resource)


class CxoneScimService(ScimService):
    """The SCIM protocol steps, with CXone's rules."""

    searches_forbidden = False
    """When set, a search (`GET /Users?filter=...`) answers 403; single users are served."""

    @property
    def etags(self) -> bool:
        """Whether users carry versions, answered as `ETag` and checked against `If-Match`."""
        return self.etag_supported

    @etags.setter
    def etags(self, on: bool) -> None:
        self.config.etag = ETag(supported=on)

    def read_search_query(
        self, resource_types: list[ResourceType], query: Mapping[str, str]
    ) -> tuple[Any, Any]:
        """Refuse a listing without a filter, as CXone does, then read the search."""
        if self.searches_forbidden:
            raise ForbiddenException(detail="this API user may not search users")
        if not query.get("filter"):
            raise InvalidFilterException(detail="listing users requires a filter")
        return super().read_search_query(resource_types, query)

    def check_preconditions(
        self, resource: Resource[Any], method: str, conditions: Conditions
    ) -> bool:
        """Ignore `If-Match` and `If-None-Match` when ETags are off, as servers without them do."""
        return super().check_preconditions(resource, method, conditions) if self.etags else True


class CxoneScimApplication(ASGIApplication):
    """The ASGI SCIM application, accepting only live bearer tokens of the issuer."""

    def __init__(self, tokens: TokenIssuer, *, etags: bool = False) -> None:
        provider = cxone_provider(etags=etags)
        self.memory = SeededIdStorage()
        self.cxone_service = CxoneScimService(provider)
        super().__init__(AsyncInMemoryStorage(self.memory), provider, self.cxone_service)
        self.tokens = tokens

    def check_auth(self, request: ScimRequest) -> None:
        """Accept a request that carries a valid, unexpired, unrevoked bearer token."""
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not self.tokens.is_valid(token.strip()):
            raise UnauthorizedException(detail="a valid bearer token is required")

    def store_user(self, user: CxoneUser) -> None:
        """Store a user under its own id, replacing any user of that id."""
        with self.cxone_service.provider:
            self.memory.create(USER_RESOURCE_TYPE, user)

    def load_user(self, user_id: str) -> CxoneUser:
        """Return a stored user; raises scim2-models' `NotFoundException` when absent."""
        return cast(CxoneUser, self.memory.get(USER_RESOURCE_TYPE, user_id))
