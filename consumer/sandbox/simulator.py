"""The CXone simulator: its state, the knobs tests turn, and the ASGI app that serves them.

Routes: `/.well-known/openid-configuration`, `POST /auth/token` and `/scim/v2/...` (scim2-server);
`server.py` mounts the admin API (`admin.py`) beside it under `/_sim/`. Latency, faults, the outage
and the rate limit apply to SCIM requests, and to token requests when `faults_on_token_endpoint`.
`token_faults` is a plan of its own for the token endpoint alone (an outage, slowness,
`invalid_client`); user rules answer chosen requests on one user (403, 409, 412, redirects, a
malformed or cut-short response, a hang) instead of serving them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

from scim2_models import Email, Error, Name, NotFoundException, PhoneNumber, Role

from consumer.sandbox.asgi import (
    Message,
    Receive,
    Scope,
    Send,
    abort_connection,
    header,
    origin,
    read_body,
    replay,
    send_json,
    write_raw_and_close,
)
from consumer.sandbox.faults import (
    Fault,
    FaultPlan,
    LatePut,
    UserAnswer,
    UserRule,
    user_of_path,
)
from consumer.sandbox.nice import CxoneUser, NiceUser
from consumer.sandbox.request_log import RequestLog, RequestRecord
from consumer.sandbox.scim_app import CxoneScimApplication
from consumer.sandbox.throttle import RetryAfterStyle, TokenBucket, retry_after_value
from consumer.sandbox.tokens import Credentials, TokenIssuer, TokenRefused

TOKEN_PATH = "/auth/token"  # noqa: S105 - a URL path, not a secret
DISCOVERY_PATH = "/.well-known/openid-configuration"
SCIM_PREFIX = "/scim"
SCIM_MEDIA_TYPE = "application/scim+json"
USERS_PREFIX = SCIM_PREFIX + "/v2/Users/"

SeedRole = tuple[str, str | None, bool]
"""A role to seed: (value, display, primary)."""


class CxoneSimulator:
    """An in-memory CXone: OAuth tokens, SCIM users, and trouble on demand.

    Drive it in-process through its methods, or from another process through `/_sim/` (the
    admin API `server.py` mounts beside it).
    `clock` (monotonic seconds) rules token expiry and the rate limit.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        etags: bool = False,
        token_lifetime_seconds: int = 3600,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.tokens = TokenIssuer(credentials, lifetime_seconds=token_lifetime_seconds, clock=clock)
        self.scim = CxoneScimApplication(self.tokens, etags=etags)
        self.faults = FaultPlan(rng=rng)
        self.token_faults = FaultPlan(rng=rng)
        self.log = RequestLog()
        self.rate_limit: TokenBucket | None = None
        self.retry_after_style = RetryAfterStyle.SECONDS
        # What a scripted or random 429 asks the client to wait.
        self.fault_retry_after_seconds = 1.0
        # A "timeout" fault holds the request this long unless the client gives up first.
        self.hold_seconds = 60.0
        # Users whose reads get a 200 with JSON nested deeper than any parser takes.
        self.bottomless_users: set[str] = set()
        self._clock = clock
        self._released = asyncio.Event()

    # Users

    def seed_user(
        self,
        user_id: str,
        user_name: str,
        *,
        given_name: str | None = None,
        family_name: str | None = None,
        emails: Sequence[str] = (),
        phone_numbers: Sequence[str] = (),
        title: str | None = None,
        team: str | None = None,
        login_authenticator: str | None = None,
        roles: Iterable[SeedRole] = (),
        active: bool = True,
    ) -> dict[str, Any]:
        """Store a full CXone user under `user_id` and return it as stored."""
        user = CxoneUser(
            id=user_id,
            user_name=user_name,
            name=Name(given_name=given_name, family_name=family_name),
            title=title,
            active=active,
            emails=[
                Email(value=address, type=Email.Type.work, primary=index == 0)
                for index, address in enumerate(emails)
            ]
            or None,
            phone_numbers=[
                PhoneNumber(value=number, type=PhoneNumber.Type.work, primary=index == 0)
                for index, number in enumerate(phone_numbers)
            ]
            or None,
            roles=[
                Role(value=value, display=display, primary=primary)
                for value, display, primary in roles
            ]
            or None,
        )
        user[NiceUser] = NiceUser(team=team, login_authenticator=login_authenticator)
        return self.store_user(user)

    def store_user(self, user: CxoneUser) -> dict[str, Any]:
        """Store a user under its own id, replacing any user of that id; return it as stored."""
        if not user.id:
            raise ValueError("a seeded user needs an id")
        self.scim.store_user(user)
        return self.get_user(user.id)

    def get_user(self, user_id: str) -> dict[str, Any]:
        """Return a stored user as SCIM JSON; raises `KeyError` when there is none."""
        try:
            user = self.scim.load_user(user_id)
        except NotFoundException:
            raise KeyError(user_id) from None
        return user.model_dump()

    # Knobs

    @property
    def etags(self) -> bool:
        """Whether users are versioned: GET answers `ETag`, a stale `If-Match` gets 412."""
        return self.scim.cxone_service.etags

    @etags.setter
    def etags(self, on: bool) -> None:
        self.scim.cxone_service.etags = on

    @property
    def searches_forbidden(self) -> bool:
        """Whether searches answer 403 while reads and writes of single users are served."""
        return self.scim.cxone_service.searches_forbidden

    @searches_forbidden.setter
    def searches_forbidden(self, on: bool) -> None:
        self.scim.cxone_service.searches_forbidden = on

    @property
    def faults_on_token_endpoint(self) -> bool:
        """Whether latency, faults and the outage apply to token requests as well as SCIM ones."""
        return self.faults.include_token_endpoint

    @faults_on_token_endpoint.setter
    def faults_on_token_endpoint(self, on: bool) -> None:
        self.faults.include_token_endpoint = on

    @property
    def token_lifetime_seconds(self) -> int:
        """The `expires_in` of tokens issued from now on."""
        return self.tokens.lifetime_seconds

    @token_lifetime_seconds.setter
    def token_lifetime_seconds(self, seconds: int) -> None:
        self.tokens.lifetime_seconds = seconds

    @property
    def token_requests(self) -> int:
        """How many requests the token endpoint received, refused ones included."""
        return self.tokens.token_requests

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, admin requests excepted, oldest first."""
        return self.log.records

    def clear_requests(self) -> None:
        """Forget every request received so far."""
        self.log.clear()

    def revoke_tokens(self) -> None:
        """Invalidate every issued token: the next SCIM request with one gets 401."""
        self.tokens.revoke_all()

    def set_latency(self, seconds: float, *, jitter_seconds: float = 0.0) -> None:
        """Delay every affected request by `seconds` plus up to `jitter_seconds`."""
        self.faults.set_latency(seconds, jitter_seconds=jitter_seconds)

    def script_faults(self, *faults: Fault | int | str) -> None:
        """Fail the next requests, one fault each: 500, 503, 429, "reset", "timeout"..."""
        self.faults.script(faults)

    def set_fault_probability(self, probability: float, kind: Fault | int | str = 500) -> None:
        """Fail each unscripted request with `probability`, with the fault `kind`."""
        self.faults.set_probability(
            probability, kind if isinstance(kind, Fault) else Fault.parse(kind)
        )

    def set_outage(self, on: bool) -> None:
        """Answer every affected request with 503 until switched off."""
        self.faults.outage = on

    def set_stuck(self, user_id: str, on: bool = True) -> None:
        """Answer every request about `user_id` with 503 until switched off; others are served."""
        if on:
            self.faults.stuck_users.add(user_id)
        else:
            self.faults.stuck_users.discard(user_id)

    def clear_faults(self) -> None:
        """Remove latency, scripted and random faults, the outage and user rules, everywhere."""
        self.faults.clear()
        self.token_faults.clear()

    def set_user_rule(
        self,
        user_id: str,
        method: str,
        answer: UserAnswer | int | str,
        *,
        scim_type: str | None = None,
        detail: str = "injected by the simulator",
        times: int | None = None,
    ) -> None:
        """Answer `method` requests on `user_id` with `answer`, `times` times (None: forever)."""
        kind = answer if isinstance(answer, UserAnswer) else UserAnswer.parse(answer)
        rule = UserRule(kind, scim_type=scim_type, detail=detail, times=times)
        self.faults.set_user_rule(user_id, method, rule)

    def hold_puts_then_apply(
        self,
        user_id: str,
        seconds: float,
        *,
        times: int | None = 1,
        checked_on_receipt: bool = False,
    ) -> None:
        """Hold the next `times` PUTs on `user_id` for `seconds`, then apply them even if the
        client has gone; with ETags, `checked_on_receipt` checks `If-Match` on arrival only."""
        late = LatePut(seconds, times=times, checked_on_receipt=checked_on_receipt)
        self.faults.set_late_put(user_id, late)

    def clear_user_rules(self, user_id: str | None = None) -> None:
        """Serve the user (or every user) normally again."""
        self.faults.clear_user_rules(user_id)

    def set_token_outage(self, on: bool) -> None:
        """Answer every token request with 503 until switched off; SCIM is unaffected."""
        self.token_faults.outage = on

    def set_token_latency(self, seconds: float, *, jitter_seconds: float = 0.0) -> None:
        """Delay every token request by `seconds` plus up to `jitter_seconds` (not SCIM)."""
        self.token_faults.set_latency(seconds, jitter_seconds=jitter_seconds)

    def script_token_faults(self, *faults: Fault | int | str) -> None:
        """Fail the next token requests, one fault each; SCIM is unaffected."""
        self.token_faults.script(faults)

    def set_token_fault_probability(
        self, probability: float, kind: Fault | int | str = Fault.UNAVAILABLE
    ) -> None:
        """Fail each unscripted token request with `probability`, with the fault `kind`."""
        self.token_faults.set_probability(
            probability, kind if isinstance(kind, Fault) else Fault.parse(kind)
        )

    def set_rate_limit(
        self,
        per_minute: float,
        *,
        burst: int = 1,
        retry_after: RetryAfterStyle | str = RetryAfterStyle.SECONDS,
    ) -> None:
        """Throttle SCIM requests with a token bucket; excess requests get 429 + `Retry-After`."""
        self.rate_limit = TokenBucket(per_minute, burst, clock=self._clock)
        self.retry_after_style = RetryAfterStyle(retry_after)

    def clear_rate_limit(self) -> None:
        """Stop throttling."""
        self.rate_limit = None

    def release_held_requests(self) -> None:
        """Drop the connections of requests held by latency or a "timeout" fault, for shutdown."""
        self._released.set()

    def resume_holding(self) -> None:
        """Hold requests again after `release_held_requests`; a server calls it as it starts."""
        self._released = asyncio.Event()

    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request."""
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        body = await read_body(receive)
        record = self.log.open(
            RequestRecord(
                method=scope["method"],
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                # The token request body holds secrets; it is never kept.
                body=b"" if path == TOKEN_PATH else body,
                if_match=header(scope, "if-match"),
            )
        )
        raw_send, send = send, _recording(send, record)
        try:
            if path == DISCOVERY_PATH:
                await self._serve_discovery(scope, send)
            elif path == TOKEN_PATH:
                answered = await self._misbehave(
                    self.token_faults, record, send, raw_send, receive, scim=False
                ) or (
                    self.faults.include_token_endpoint
                    and await self._misbehave(
                        self.faults, record, send, raw_send, receive, scim=False
                    )
                )
                if not answered:
                    await self._serve_token(scope, body, send)
            elif path == SCIM_PREFIX or path.startswith(SCIM_PREFIX + "/"):
                # A tenant's gateway counts a request as it arrives, before any work on it (the
                # injected latency included), so the bucket sees the client's own spacing.
                if await self._throttled(send):
                    return
                late = self.faults.late_put(record.method, user_of_path(path))
                rule = None if late is not None else self._user_rule(scope)
                if late is not None:
                    record.fault = "late"
                    await self._apply_late(late, scope, body, send)
                elif rule is not None:
                    record.fault = rule.answer.value
                    await self._answer_by_rule(rule, scope, send, raw_send, receive)
                elif not await self._misbehave(
                    self.faults, record, send, raw_send, receive, scim=True
                ):
                    await self._serve_scim(scope, body, send)
            else:
                await send_json(send, 404, {"error": "not_found"})
        finally:
            record.finished = True

    async def _serve_discovery(self, scope: Scope, send: Send) -> None:
        if scope["method"] != "GET":
            await send_json(send, 405, {"error": "method_not_allowed"}, headers={"allow": "GET"})
            return
        issuer = origin(scope)
        await send_json(
            send,
            200,
            {
                "issuer": issuer,
                "token_endpoint": issuer + TOKEN_PATH,
                "grant_types_supported": ["client_credentials", "password"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "response_types_supported": ["token"],
            },
        )

    async def _serve_token(self, scope: Scope, body: bytes, send: Send) -> None:
        no_store = {"cache-control": "no-store", "pragma": "no-cache"}
        if scope["method"] != "POST":
            await send_json(send, 405, {"error": "method_not_allowed"}, headers={"allow": "POST"})
            return
        content_type = (header(scope, "content-type") or "").partition(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            refusal = TokenRefused(400, "invalid_request", "the body must be form-encoded")
            await send_json(send, refusal.status, refusal.as_json(), headers=no_store)
            return
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        try:
            token = self.tokens.issue(form, header(scope, "authorization"))
        except TokenRefused as refusal:
            headers = dict(no_store)
            if refusal.status == 401:
                headers["www-authenticate"] = 'Basic realm="cxone"'
            await send_json(send, refusal.status, refusal.as_json(), headers=headers)
            return
        await send_json(send, 200, token.as_json(), headers=no_store)

    async def _throttled(self, send: Send) -> bool:
        """Answer 429 with `Retry-After` when the token bucket is empty; True when it did."""
        wait = self.rate_limit.take() if self.rate_limit is not None else 0.0
        if wait <= 0:
            return False
        await _send_error(
            send,
            429,
            "too many requests",
            scim=True,
            headers={"retry-after": retry_after_value(wait, self.retry_after_style)},
        )
        return True

    async def _serve_scim(self, scope: Scope, body: bytes, send: Send) -> None:
        inner = dict(scope, root_path=scope.get("root_path", "") + SCIM_PREFIX)
        await self.scim(inner, replay(body), send)

    async def _apply_late(self, late: LatePut, scope: Scope, body: bytes, send: Send) -> None:
        """Serve a PUT `late.seconds` after it came, whether or not its client still waits."""
        if late.checked_on_receipt and self.etags:
            user_id = user_of_path(scope["path"])
            if_match = header(scope, "if-match")
            if if_match is not None and if_match != self._version_of(user_id):
                await self._serve_scim(scope, body, send)  # refused now: 412
                return
            # Checked: written later whatever the version has become meanwhile.
            headers = [
                (key, value) for key, value in scope["headers"] if key.lower() != b"if-match"
            ]
            scope = dict(scope, headers=headers)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(late.seconds):
                await self._released.wait()
            return  # the server is stopping: the held write is dropped
        await self._serve_scim(scope, body, _heedless(send))

    def _version_of(self, user_id: str | None) -> str | None:
        """The ETag a user has now, or None when there is no such user."""
        if user_id is None:
            return None
        try:
            return self.scim.load_user(user_id).meta.version  # type: ignore[union-attr]
        except NotFoundException:
            return None

    def _user_rule(self, scope: Scope) -> UserRule | None:
        path: str = scope["path"]
        if not path.startswith(USERS_PREFIX):
            return None
        user_id = unquote(path.removeprefix(USERS_PREFIX))
        return self.faults.user_rule(scope["method"], user_id)

    async def _answer_by_rule(
        self, rule: UserRule, scope: Scope, send: Send, raw_send: Send, receive: Receive
    ) -> None:
        """Answer one request on a user as its rule says."""
        answer = rule.answer
        if answer in (UserAnswer.FOUND, UserAnswer.TEMPORARY_REDIRECT):
            # Back to the same user: a client that followed would resend its token and body.
            location = origin(scope) + scope["path"]
            await send_json(send, int(answer.value), {}, headers={"location": location})
        elif answer.status is not None:
            error = Error(status=answer.status, scim_type=rule.scim_type, detail=rule.detail)
            await send_json(send, answer.status, error.model_dump(), content_type=SCIM_MEDIA_TYPE)
        elif answer is UserAnswer.MALFORMED_BODY:
            await _send_raw_body(send, b'{"id": "cut short", "userName": ', length=None)
        elif answer is UserAnswer.WRONG_CONTENT_LENGTH:
            body = b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}'
            await _send_raw_body(send, body, length=len(body) + 100)
        elif answer is UserAnswer.MALFORMED_RESPONSE:
            await write_raw_and_close(raw_send, receive, b"HTTP/1.1 two hundred OK\r\n\x00\r\n\r\n")
        else:
            if await self._hold(receive, self.hold_seconds):
                await abort_connection(raw_send, receive)

    async def _misbehave(
        self,
        plan: FaultPlan,
        record: RequestRecord,
        send: Send,
        raw_send: Send,
        receive: Receive,
        *,
        scim: bool,
    ) -> bool:
        """Apply latency and any fault `plan` has; return True when the request got its answer.

        `raw_send` is the server's own `send`, through which a connection can be reset.
        """
        delay = plan.delay()
        if delay > 0 and not await self._hold(receive, delay):
            record.fault = "client_gone"
            return True
        if record.method == "GET" and user_of_path(record.path) in self.bottomless_users:
            record.fault = "bottomless_json"
            await _send_bottomless_json(send)
            return True
        fault = plan.stuck_fault(record.path) or plan.next_fault()
        if fault is None:
            return False
        record.fault = fault.value
        if fault is Fault.RESET:
            await abort_connection(raw_send, receive)
        elif fault is Fault.TIMEOUT:
            if await self._hold(receive, self.hold_seconds):
                await abort_connection(raw_send, receive)
        else:
            status = fault.status
            assert status is not None
            headers = {}
            if status == 429:
                headers["retry-after"] = retry_after_value(
                    self.fault_retry_after_seconds, self.retry_after_style
                )
            detail = f"injected fault {fault.value}"
            await _send_error(
                send, status, detail, scim=scim, headers=headers, oauth_error=fault.oauth_error
            )
        return True

    async def _hold(self, receive: Receive, seconds: float) -> bool:
        """Wait `seconds`; return False early if the client hangs up, True otherwise."""
        gone = asyncio.ensure_future(receive())
        released = asyncio.ensure_future(self._released.wait())
        try:
            done, _ = await asyncio.wait(
                {gone, released}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
            released.cancel()
        return gone not in done


def _recording(send: Send, record: RequestRecord) -> Send:
    """Wrap `send` so the record learns the status answered."""

    async def recorded(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = int(message["status"])
        await send(message)

    return recorded


def _heedless(send: Send) -> Send:
    """Wrap `send` so that a client gone away does not stop the answer being made."""

    async def answer(message: Message) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            await send(message)

    return answer


async def _send_bottomless_json(send: Send) -> None:
    """A 200 whose body is well-formed JSON nested 100,000 arrays deep."""
    body = b"[" * 100_000 + b"]" * 100_000
    headers = {"content-type": SCIM_MEDIA_TYPE, "content-length": str(len(body))}
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send,
    status: int,
    detail: str,
    *,
    scim: bool,
    headers: dict[str, str],
    oauth_error: str = "temporarily_unavailable",
) -> None:
    """Answer an error as SCIM does on SCIM paths, and as OAuth does on the token endpoint."""
    if scim:
        body: Any = Error(status=status, detail=detail).model_dump()
        await send_json(send, status, body, headers=headers, content_type=SCIM_MEDIA_TYPE)
    else:
        body = {"error": oauth_error, "error_description": detail}
        await send_json(send, status, body, headers=headers)


async def _send_raw_body(send: Send, body: bytes, *, length: int | None) -> None:
    """Answer 200 with `body` as SCIM JSON, declaring `length` bytes (its own when None)."""
    declared = len(body) if length is None else length
    headers = [
        (b"content-type", SCIM_MEDIA_TYPE.encode()),
        (b"content-length", str(declared).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
