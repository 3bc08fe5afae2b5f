"""The SCIM endpoint an IdP provisions to: scim2-server's ASGI app, guarded and counted.

Before scim2-server sees a request: the bearer token (compared in constant time), the request
rate (429 with `Retry-After`), the body size (413), and whether this instance serves at all (503
until its state is rebuilt). Every answer, refusals included, is an RFC 7644 error body, and is
counted by operation and status. Tokens and bodies are never logged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from scim2_models import (
    InvalidSyntaxException,
    PayloadTooLargeException,
    SCIMException,
    ScimProvider,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication, Receive, Scope, Send
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.service import ScimService

from consumer.ingress.compat import standard_patch
from consumer.ingress.store import PersistedStorage
from consumer.observability.metrics import INGRESS_REQUESTS
from consumer.token_bucket import TokenBucket

__all__ = ["IngressApplication", "NotServing", "TooManyRequests"]

SCIM_ROOT = "/scim"
# Discovery needs no state: it is answered even before the state is rebuilt.
DISCOVERY = frozenset(
    {
        Operation.service_provider_config,
        Operation.resource_types,
        Operation.resource_type,
        Operation.schemas,
        Operation.schema,
    }
)


class TooManyRequests(SCIMException):
    """More requests than INGRESS_RATE_LIMIT_PER_MINUTE allows: try again after a while."""

    status = 429
    _default_detail = "too many requests; retry after the time Retry-After gives"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class NotServing(SCIMException):
    """This instance does not serve SCIM requests right now (state not rebuilt yet)."""

    status = 503
    _default_detail = "the SCIM ingress is starting; retry later"


class _QuietScimLog(logging.Filter):
    """scim2-server logs each client error with its message; ours are counted instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


class IngressApplication(ASGIApplication):
    """scim2-server's ASGI application with the ingress's token, limits and readiness."""

    def __init__(
        self,
        storage: PersistedStorage,
        provider: ScimProvider,
        *,
        token: SecretStr,
        bucket: TokenBucket,
        max_body_bytes: int,
        serving: Callable[[], bool],
    ) -> None:
        super().__init__(storage, provider, _LimitedService(provider, max_body_bytes))
        self._token = token.get_secret_value().encode()
        self._bucket = bucket
        self._max_body_bytes = max_body_bytes
        self._serving = serving
        self.log.addFilter(_QuietScimLog())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve under `/scim/v2` (the URL IdPs are given) as well as at the root."""
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == SCIM_ROOT or path.startswith(SCIM_ROOT + "/")):
            scope = {**scope, "root_path": scope.get("root_path", "") + SCIM_ROOT}
        await super().__call__(scope, receive, send)

    def check_auth(self, request: ScimRequest) -> None:
        """Accept only `Authorization: Bearer <INGRESS_TOKEN>`, compared in constant time."""
        scheme, _, given = (request.header("Authorization") or "").partition(" ")
        presented = given.strip().encode("utf-8", "surrogatepass")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, self._token):
            raise UnauthorizedException(detail="a valid bearer token is required")

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        """Rate, size and readiness first; then the token and scim2-server's own steps."""
        wait = self._bucket.take()
        if wait > 0:
            raise TooManyRequests(retry_after=max(1, int(wait + 0.999)))
        if len(request.body or b"") > self._max_body_bytes:
            raise PayloadTooLargeException(
                detail=f"the body is larger than {self._max_body_bytes} bytes"
            )
        operation = _operation(self.service, request)
        if not self._serving() and operation not in DISCOVERY:
            raise NotServing()
        if operation is Operation.patch and request.body:
            request.body = standard_patch(request.body)
        return await super().dispatch_request(request)

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        """An RFC 7644 error body for everything; a body nested too deep is bad syntax."""
        if isinstance(exception, RecursionError):
            exception = InvalidSyntaxException(detail="the JSON body is nested too deeply")
        response = super().handle_exception(request, exception)
        if isinstance(exception, TooManyRequests):
            response.headers["Retry-After"] = str(exception.retry_after)
        return response

    def finalize_response(self, request: ScimRequest, response: ScimResponse) -> ScimResponse:
        """Count the answer by operation and status."""
        operation = _operation(self.service, request)
        name = operation.value if operation is not None else "unknown"
        INGRESS_REQUESTS.labels(operation=name, status=str(int(response.status))).inc()
        return super().finalize_response(request, response)


class _LimitedService(ScimService):
    """scim2-server's service, reading at most the ingress's body limit of any request."""

    def __init__(self, provider: ScimProvider, max_body_bytes: int) -> None:
        super().__init__(provider)
        self._max_body_bytes = max_body_bytes

    def max_body_size(self, request: ScimRequest) -> int | None:
        """Every request is read to at most one byte past the limit, so a larger one is 413."""
        inner = super().max_body_size(request)
        return self._max_body_bytes if inner is None else min(inner, self._max_body_bytes)


def _operation(service: ScimService, request: ScimRequest) -> Operation | None:
    try:
        with service.provider:
            operation: Any = service.match(request).operation
    except SCIMException:
        return None
    return operation if isinstance(operation, Operation) else None
