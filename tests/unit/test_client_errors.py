"""Tests of the pure parts of the SCIM client: error classes, Retry-After, paths, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from consumer.errors import (
    AuthError,
    Conflict,
    Forbidden,
    InvalidEvent,
    NetworkError,
    PolicyRejection,
    RateLimited,
    ScimRejected,
    ServerError,
    SyncError,
    UnexpectedRedirect,
    UserNotFound,
)
from consumer.scim.client import (
    RetryPolicy,
    error_for_response,
    parse_retry_after,
    retry_backoff,
    user_path,
)

NOW = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)
USER_URL = "https://cxone.example.com/scim/v2/Users/u-1"


def response(
    status: int,
    *,
    method: str = "PUT",
    headers: dict[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
) -> httpx.Response:
    """A response to a request on a user, built without any I/O."""
    return httpx.Response(
        status,
        headers=headers,
        json=json,
        content=content,
        request=httpx.Request(method, USER_URL),
    )


def scim_error(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    """A SCIM Error body (RFC 7644 §3.12)."""
    body: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": str(status),
        "detail": detail,
    }
    if scim_type is not None:
        body["scimType"] = scim_type
    return body


@pytest.mark.parametrize("status", [200, 201, 204])
def test_success_is_no_error(status: int) -> None:
    """A 2xx response stands for no error."""
    assert error_for_response(response(status), now=NOW) is None


@pytest.mark.parametrize("status", [301, 302, 303, 304, 307, 308])
def test_a_redirect_is_a_permanent_failure_never_a_success(status: int) -> None:
    """A 3xx is `unexpected_redirect`: not followed, not retried, and naming where it pointed."""
    location = "https://user:pass@elsewhere.example.com/scim/v2/Users/u-1?token=abc"
    error = error_for_response(response(status, headers={"Location": location}), now=NOW)
    assert isinstance(error, UnexpectedRedirect)
    assert error.retriable is False
    assert error.reason == "unexpected_redirect"
    assert error.status == status
    assert error.detail == (
        f"HTTP {status} to https://elsewhere.example.com/scim/v2/Users/u-1; not followed"
    )


def test_429_is_rate_limited_with_retry_after_seconds() -> None:
    """429 is a retriable RateLimited carrying the server's Retry-After in seconds."""
    error = error_for_response(response(429, headers={"Retry-After": "7"}), now=NOW)
    assert isinstance(error, RateLimited)
    assert error.retriable is True
    assert error.reason == "rate_limited"
    assert error.retry_after == 7.0
    assert error.status == 429
    assert str(error) == "PUT /scim/v2/Users/u-1: rate limited"


def test_429_with_an_http_date() -> None:
    """A Retry-After given as an HTTP date becomes the seconds until then."""
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    error = error_for_response(response(429, headers={"Retry-After": later}), now=NOW)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 90.0


def test_429_without_retry_after() -> None:
    """A 429 without a hint is still rate limited, with no wait imposed."""
    error = error_for_response(response(429), now=NOW)
    assert isinstance(error, RateLimited)
    assert error.retry_after is None


def test_401_after_the_refresh_is_transient() -> None:
    """A 401 (after the auth flow's own refresh) is a retriable auth error."""
    error = error_for_response(response(401), now=NOW)
    assert isinstance(error, AuthError)
    assert error.retriable is True
    assert error.reason == "auth"
    assert error.status == 401


def test_403_is_forbidden_for_good_with_the_scim_detail() -> None:
    """A 403 on a user fails that user as `forbidden`, carrying CXone's detail."""
    body = scim_error(403, "User is outside your business unit")
    error = error_for_response(response(403, json=body), now=NOW)
    assert isinstance(error, Forbidden)
    assert error.retriable is False
    assert error.reason == "forbidden"
    assert error.status == 403
    assert error.detail == "User is outside your business unit"


def test_409_uniqueness_is_permanent() -> None:
    """A 409 with scimType uniqueness is refused for good: re-reading cannot fix it."""
    body = scim_error(409, "userName is taken", scim_type="uniqueness")
    error = error_for_response(response(409, json=body), now=NOW)
    assert isinstance(error, ScimRejected)
    assert error.retriable is False
    assert error.reason == "scim_rejected"
    assert error.detail == "uniqueness: userName is taken"


def test_409_with_another_scim_type_is_a_conflict() -> None:
    """A 409 whose scimType is not uniqueness is re-read and retried."""
    body = scim_error(409, "version mismatch", scim_type="invalidVers")
    error = error_for_response(response(409, json=body), now=NOW)
    assert isinstance(error, Conflict)


@pytest.mark.parametrize("status", [409, 412])
def test_conflicts_are_transient(status: int) -> None:
    """409/412 mean the user changed under us: re-read and retry."""
    error = error_for_response(response(status), now=NOW)
    assert isinstance(error, Conflict)
    assert error.retriable is True
    assert error.reason == "conflict"
    assert error.status == status


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    """408 and 5xx are retriable server errors."""
    error = error_for_response(response(status, method="GET"), now=NOW)
    assert isinstance(error, ServerError)
    assert error.retriable is True
    assert error.reason == "server_error"
    assert error.status == status
    assert str(error) == f"GET /scim/v2/Users/u-1: HTTP {status}"


def test_404_is_user_not_found() -> None:
    """404 on a user is a permanent user_not_found, with the SCIM detail."""
    error = error_for_response(
        response(404, method="GET", json=scim_error(404, "Resource u-1 not found")), now=NOW
    )
    assert isinstance(error, UserNotFound)
    assert error.retriable is False
    assert error.reason == "user_not_found"
    assert error.status == 404
    assert error.detail == "Resource u-1 not found"


def test_400_is_scim_rejected_with_type_and_detail() -> None:
    """Another 4xx is a permanent scim_rejected carrying scimType and detail."""
    error = error_for_response(
        response(400, json=scim_error(400, "roles[0].value is unknown", "invalidValue")), now=NOW
    )
    assert isinstance(error, ScimRejected)
    assert error.retriable is False
    assert error.reason == "scim_rejected"
    assert error.status == 400
    assert error.detail == "invalidValue: roles[0].value is unknown"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html>Bad Request</html>", "text/html"), (b'{"unexpected": true}', "application/json")],
)
def test_4xx_without_a_scim_error_body(body: bytes, content_type: str) -> None:
    """A 4xx whose body is not a SCIM Error still classifies, with the status as detail."""
    error = error_for_response(
        response(422, content=body, headers={"Content-Type": content_type}), now=NOW
    )
    assert isinstance(error, ScimRejected)
    assert error.detail == "HTTP 422"


def test_scim_error_detail_is_bounded() -> None:
    """A huge SCIM error detail is cut to a bounded length."""
    error = error_for_response(response(400, json=scim_error(400, "x" * 5000)), now=NOW)
    assert isinstance(error, ScimRejected)
    assert error.detail == "x" * 300


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("Sat, 28 Nov 2026 15:00:30 GMT", 30.0),
        ("Sat, 28 Nov 2026 14:59:00 GMT", 0.0),
        ("Sat, 28 Nov 2026 15:02:00 +0000", 120.0),
    ],
)
def test_parse_retry_after(value: str, expected: float) -> None:
    """Retry-After in delay-seconds or as an HTTP date gives seconds to wait, never negative."""
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "1.5",
        "Sat, 99 Foo 2026",
        "²",
        "1²",
        "\u0663",
        "\uff11\uff10",
        "+5",
    ],
)
def test_parse_retry_after_ignores_what_it_cannot_read(value: str | None) -> None:
    """An absent or unreadable Retry-After gives no hint rather than an error."""
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    ("user_id", "path"),
    [
        ("u-1", "Users/u-1"),
        ("a.b_c-d", "Users/a.b_c-d"),
        ("jdoe@example.com", "Users/jdoe%40example.com"),
        ("urn:okta:42", "Users/urn%3Aokta%3A42"),
    ],
)
def test_user_path_percent_encodes(user_id: str, path: str) -> None:
    """A valid id becomes one percent-encoded path segment."""
    assert user_path(user_id) == path


@pytest.mark.parametrize(
    "user_id",
    ["", "../admin", "a/b", "..", "a..b", ".hidden", "a b", "a%2Fb", "a?x=1", "a#b", "x" * 129],
)
def test_user_path_refuses_ids_that_could_escape(user_id: str) -> None:
    """An id that is not a valid CXone SCIM id never becomes a URL path."""
    with pytest.raises(InvalidEvent) as caught:
        user_path(user_id)
    assert caught.value.reason == "schema_violation"


POLICY = RetryPolicy(wait_initial=0.1, wait_max=1.0, wait_jitter=0.0, max_retry_after=60.0)


@pytest.mark.parametrize(
    ("error", "decision"),
    [
        (RateLimited("429", retry_after=7.0), 7.0),
        (RateLimited("429", retry_after=0.0), 0.0),
        (RateLimited("429", retry_after=3600.0), 60.0),
        (RateLimited("429", retry_after=None), True),
        (ServerError("503", status=503), True),
        (NetworkError("reset"), True),
        (AuthError("401", status=401), True),
        (Conflict("412", status=412), True),
        (Forbidden("403", status=403), False),
        (UnexpectedRedirect("302", status=302), False),
        (UserNotFound("404", status=404), False),
        (ScimRejected("400", status=400), False),
        (InvalidEvent("schema_violation", "bad id"), False),
        (PolicyRejection("no"), False),
        (SyncError("unclassified"), False),
        (ValueError("a bug"), False),
        (RuntimeError("a bug"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else repr(value),
)
def test_retry_backoff_decisions(error: Exception, decision: bool | float) -> None:
    """Transient errors are retried with backoff (Retry-After capped); nothing else is."""
    answer = retry_backoff(POLICY)(error)
    # bool is an int: compare types too, so False is never mistaken for a wait of 0.0.
    assert (type(answer), answer) == (type(decision), decision)


def test_retry_backoff_caps_with_the_default_policy() -> None:
    """The default policy caps a server's Retry-After at five minutes."""
    assert retry_backoff(RetryPolicy())(RateLimited("429", retry_after=10_000.0)) == 300.0
