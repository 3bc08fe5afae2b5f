"""Tests of the simulator's token issuer: grants, client authentication, expiry, revocation."""

from __future__ import annotations

import base64

import pytest

from consumer.sandbox.tokens import TokenIssuer, TokenRefused
from tests.conftest import TEST_CREDENTIALS, ManualClock

CREDS = TEST_CREDENTIALS


def basic(client_id: str, secret: str) -> str:
    """Return an HTTP Basic header value."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_client_credentials_with_basic_auth_issues_a_token(manual_clock: ManualClock) -> None:
    """A good client by Basic gets a token valid until its lifetime ends."""
    issuer = TokenIssuer(CREDS, lifetime_seconds=300, clock=manual_clock)
    token = issuer.issue(
        {"grant_type": "client_credentials"}, basic(CREDS.client_id, CREDS.client_secret)
    )
    assert token.as_json() == {
        "access_token": token.access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "AdminApi",
    }
    assert issuer.is_valid(token.access_token)
    manual_clock.advance(299.9)
    assert issuer.is_valid(token.access_token)
    manual_clock.advance(0.1)
    assert not issuer.is_valid(token.access_token)


def test_password_grant_with_form_client_auth_echoes_the_scope() -> None:
    """The access key grant with client fields in the form works and keeps the asked scope."""
    issuer = TokenIssuer(CREDS)
    token = issuer.issue(
        {
            "grant_type": "password",
            "username": CREDS.access_key_id,
            "password": CREDS.access_key_secret,
            "client_id": CREDS.client_id,
            "client_secret": CREDS.client_secret,
            "scope": "RealTimeApi AdminApi",
        },
        None,
    )
    assert token.scope == "RealTimeApi AdminApi"
    assert issuer.is_valid(token.access_token)


@pytest.mark.parametrize(
    ("form", "authorization", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, basic(CREDS.client_id, "x"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, "Basic !!notbase64", 401, "invalid_client"),
        (
            {"grant_type": "password", "username": CREDS.access_key_id, "password": "x"},
            basic(CREDS.client_id, CREDS.client_secret),
            400,
            "invalid_grant",
        ),
        ({}, basic(CREDS.client_id, CREDS.client_secret), 400, "invalid_request"),
        (
            {"grant_type": "implicit"},
            basic(CREDS.client_id, CREDS.client_secret),
            400,
            "unsupported_grant_type",
        ),
    ],
)
def test_bad_requests_are_refused_with_the_oauth_error(
    form: dict[str, str], authorization: str | None, status: int, error: str
) -> None:
    """Each kind of bad token request gets its RFC 6749 status and error code."""
    issuer = TokenIssuer(CREDS)
    with pytest.raises(TokenRefused) as refused:
        issuer.issue(form, authorization)
    assert (refused.value.status, refused.value.error) == (status, error)
    assert issuer.token_requests == 1


def test_revocation_invalidates_every_issued_token() -> None:
    """After revoke_all no earlier token is valid; a new one is."""
    issuer = TokenIssuer(CREDS)
    auth = basic(CREDS.client_id, CREDS.client_secret)
    first = issuer.issue({"grant_type": "client_credentials"}, auth)
    second = issuer.issue({"grant_type": "client_credentials"}, auth)
    issuer.revoke_all()
    assert not issuer.is_valid(first.access_token)
    assert not issuer.is_valid(second.access_token)
    assert issuer.is_valid(issuer.issue({"grant_type": "client_credentials"}, auth).access_token)
    assert issuer.token_requests == 3
    assert not issuer.is_valid("never-issued")
