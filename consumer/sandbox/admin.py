"""The simulator's admin API under `/_sim/`, so another process can seed users and cause trouble.

It has no authentication: the simulator listens on 127.0.0.1 only. It turns the knobs of
`SimulatorKnobs`, the narrow interface the simulator offers; `server.py` mounts it beside the
simulator, which knows nothing of it.

    POST   /_sim/users            a SCIM user with its id: store it        -> 201 the user
    GET    /_sim/users/{id}       the user as stored                       -> 200 / 404
    GET    /_sim/requests         the request log                          -> 200 [records]
    DELETE /_sim/requests         forget the log                           -> 204
    POST   /_sim/faults           {latency_ms, jitter_ms, script, probability, kind,
                                   include_token_endpoint}                 -> 204
    DELETE /_sim/faults           remove latency, faults, outage, rules    -> 204
    POST   /_sim/token-faults     {latency_ms, jitter_ms, script, probability, kind, outage}
                                  for the token endpoint alone             -> 204
    POST   /_sim/users/{id}/rules {method, answer, scim_type, detail, times} -> 204
    DELETE /_sim/users/{id}/rules serve the user normally again            -> 204
    POST   /_sim/outage           {"on": bool}                             -> 204
    POST   /_sim/rate-limit       {per_minute, burst, retry_after}         -> 204
    DELETE /_sim/rate-limit       stop throttling                          -> 204
    POST   /_sim/etags            {"on": bool}                             -> 204
    POST   /_sim/searches-forbidden {"on": bool}                           -> 204
    POST   /_sim/revoke           invalidate every token                   -> 204
    GET    /_sim/stats            {token_requests, requests}               -> 200
    GET    /_sim/                 this list of routes                      -> 200 {routes}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from consumer.sandbox.asgi import Receive, Scope, Send, read_body, send_json
from consumer.sandbox.faults import Fault, UserAnswer
from consumer.sandbox.nice import CxoneUser
from consumer.sandbox.request_log import RequestRecord
from consumer.sandbox.throttle import RetryAfterStyle

ADMIN_PREFIX = "/_sim/"


class SimulatorKnobs(Protocol):
    """What the admin API may read and turn on a simulator, and nothing more."""

    etags: bool
    searches_forbidden: bool
    faults_on_token_endpoint: bool

    @property
    def requests(self) -> Sequence[RequestRecord]: ...
    @property
    def token_requests(self) -> int: ...
    def store_user(self, user: CxoneUser) -> dict[str, Any]: ...
    def get_user(self, user_id: str) -> dict[str, Any]: ...
    def clear_requests(self) -> None: ...
    def set_latency(self, seconds: float, *, jitter_seconds: float = 0.0) -> None: ...
    def set_fault_probability(self, probability: float, kind: Fault) -> None: ...
    def script_faults(self, *faults: Fault) -> None: ...
    def clear_faults(self) -> None: ...
    def set_outage(self, on: bool) -> None: ...
    def set_token_latency(self, seconds: float, *, jitter_seconds: float = 0.0) -> None: ...
    def set_token_fault_probability(self, probability: float, kind: Fault) -> None: ...
    def script_token_faults(self, *faults: Fault) -> None: ...
    def set_token_outage(self, on: bool) -> None: ...
    def set_user_rule(
        self,
        user_id: str,
        method: str,
        answer: UserAnswer,
        *,
        scim_type: str | None = None,
        detail: str = "injected by the simulator",
        times: int | None = None,
    ) -> None: ...
    def clear_user_rules(self, user_id: str | None = None) -> None: ...
    def set_rate_limit(
        self,
        per_minute: float,
        *,
        burst: int = 1,
        retry_after: RetryAfterStyle = RetryAfterStyle.SECONDS,
    ) -> None: ...
    def clear_rate_limit(self) -> None: ...
    def revoke_tokens(self) -> None: ...


# A fault is written as a status code (503) or a word ("reset").
FaultField = Annotated[Fault, BeforeValidator(Fault.parse)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultsInput(_Input):
    """The body of `POST /_sim/faults`; fields left out keep their current setting."""

    latency_ms: float | None = Field(default=None, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    script: list[FaultField] = []
    probability: float | None = Field(default=None, ge=0, le=1)
    kind: FaultField = Fault.SERVER_ERROR
    include_token_endpoint: bool | None = None


class TokenFaultsInput(_Input):
    """The body of `POST /_sim/token-faults`; fields left out keep their current setting."""

    latency_ms: float | None = Field(default=None, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    script: list[FaultField] = []
    probability: float | None = Field(default=None, ge=0, le=1)
    kind: FaultField = Fault.UNAVAILABLE
    outage: bool | None = None


class UserRuleInput(_Input):
    """The body of `POST /_sim/users/{id}/rules`."""

    method: str = Field(pattern="^(GET|PUT|PATCH)$")
    answer: Annotated[UserAnswer, BeforeValidator(UserAnswer.parse)]
    scim_type: str | None = None
    detail: str = "injected by the simulator"
    times: int | None = Field(default=None, ge=1)


class SwitchInput(_Input):
    """The body of an on/off switch."""

    on: bool


class RateLimitInput(_Input):
    """The body of `POST /_sim/rate-limit`."""

    per_minute: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)
    retry_after: RetryAfterStyle = RetryAfterStyle.SECONDS


ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "users", "store a SCIM user with its id"),
    ("GET", "users/{id}", "the user as stored"),
    ("GET", "requests", "the request log"),
    ("DELETE", "requests", "forget the request log"),
    (
        "POST",
        "faults",
        "{latency_ms, jitter_ms, script, probability, kind, include_token_endpoint}",
    ),
    ("DELETE", "faults", "remove latency, faults and the outage"),
    ("POST", "outage", '{"on": bool}: every SCIM request answers 503'),
    ("POST", "rate-limit", "{per_minute, burst, retry_after}: answer 429 beyond it"),
    ("DELETE", "rate-limit", "stop throttling"),
    ("POST", "etags", '{"on": bool}: send ETags and honour If-Match'),
    ("POST", "searches-forbidden", '{"on": bool}: searches answer 403, single users are served'),
    ("POST", "revoke", "invalidate every token"),
    ("GET", "stats", "{token_requests, requests}"),
    ("GET", "", "this list of routes"),
)
"""Every admin route as (method, path under /_sim/, what it does)."""


class SimulatorAdmin:
    """The ASGI app of `/_sim/`, a thin layer over the simulator's own methods."""

    def __init__(self, simulator: SimulatorKnobs) -> None:
        self.simulator = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one admin request."""
        method: str = scope["method"]
        parts = scope["path"].removeprefix("/_sim/").strip("/").split("/")
        body = await read_body(receive)
        try:
            status, answer = self._route(method, parts, body)
        except (ValidationError, ValueError) as error:
            # ValidationError is a ValueError; its text names the offending field.
            status, answer = 400, {"error": str(error)}
        if status == 204:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send_json(send, status, answer)

    def _route(self, method: str, parts: list[str], body: bytes) -> tuple[int, Any]:
        simulator = self.simulator
        match method, parts:
            case "POST", ["users"]:
                user = CxoneUser.model_validate(json.loads(body))
                return 201, simulator.store_user(user)
            case "GET", ["users", user_id]:
                try:
                    return 200, simulator.get_user(user_id)
                except KeyError:
                    return 404, {"error": f"no user {user_id!r}"}
            case "GET", ["requests"]:
                return 200, [record.as_json() for record in simulator.requests]
            case "DELETE", ["requests"]:
                simulator.clear_requests()
            case "POST", ["faults"]:
                self._set_faults(FaultsInput.model_validate_json(body))
            case "DELETE", ["faults"]:
                simulator.clear_faults()
            case "POST", ["token-faults"]:
                self._set_token_faults(TokenFaultsInput.model_validate_json(body))
            case "POST", ["users", user_id, "rules"]:
                rule = UserRuleInput.model_validate_json(body)
                simulator.set_user_rule(
                    user_id,
                    rule.method,
                    rule.answer,
                    scim_type=rule.scim_type,
                    detail=rule.detail,
                    times=rule.times,
                )
            case "DELETE", ["users", user_id, "rules"]:
                simulator.clear_user_rules(user_id)
            case "POST", ["outage"]:
                simulator.set_outage(SwitchInput.model_validate_json(body).on)
            case "POST", ["rate-limit"]:
                limit = RateLimitInput.model_validate_json(body)
                simulator.set_rate_limit(
                    limit.per_minute, burst=limit.burst, retry_after=limit.retry_after
                )
            case "DELETE", ["rate-limit"]:
                simulator.clear_rate_limit()
            case "POST", ["etags"]:
                simulator.etags = SwitchInput.model_validate_json(body).on
            case "POST", ["searches-forbidden"]:
                simulator.searches_forbidden = SwitchInput.model_validate_json(body).on
            case "POST", ["revoke"]:
                simulator.revoke_tokens()
            case "GET", [""]:
                routes = [
                    {"method": method, "path": f"/_sim/{path}", "does": does}
                    for method, path, does in ROUTES
                ]
                return 200, {"routes": routes}
            case "GET", ["stats"]:
                stats = {"token_requests": simulator.token_requests}
                return 200, stats | {"requests": len(simulator.requests)}
            case _:
                return 404, {"error": f"no admin route {method} /_sim/{'/'.join(parts)}"}
        return 204, None

    def _set_faults(self, faults: FaultsInput) -> None:
        simulator = self.simulator
        if faults.latency_ms is not None:
            simulator.set_latency(faults.latency_ms / 1000, jitter_seconds=faults.jitter_ms / 1000)
        if faults.probability is not None:
            simulator.set_fault_probability(faults.probability, faults.kind)
        if faults.include_token_endpoint is not None:
            simulator.faults_on_token_endpoint = faults.include_token_endpoint
        simulator.script_faults(*faults.script)

    def _set_token_faults(self, faults: TokenFaultsInput) -> None:
        simulator = self.simulator
        if faults.latency_ms is not None:
            simulator.set_token_latency(
                faults.latency_ms / 1000, jitter_seconds=faults.jitter_ms / 1000
            )
        if faults.probability is not None:
            simulator.set_token_fault_probability(faults.probability, faults.kind)
        if faults.outage is not None:
            simulator.set_token_outage(faults.outage)
        simulator.script_token_faults(*faults.script)
