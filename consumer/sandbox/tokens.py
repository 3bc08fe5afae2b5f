"""The simulator's OAuth2 token issuer: CXone's `password` grant and plain `client_credentials`."""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

DEFAULT_SCOPE = "AdminApi"


@dataclass(frozen=True)
class Credentials:
    """What the simulator accepts: an OAuth client and a CXone access key."""

    client_id: str
    client_secret: str
    access_key_id: str
    access_key_secret: str


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token handed to a client."""

    access_token: str
    expires_in: int
    scope: str

    def as_json(self) -> dict[str, str | int]:
        """Return the token endpoint's JSON answer (RFC 6749 §5.1)."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class TokenRefused(Exception):
    """The token endpoint refuses a request, with an RFC 6749 §5.2 error code."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def as_json(self) -> dict[str, str]:
        """Return the token endpoint's JSON error."""
        return {"error": self.error, "error_description": self.description}


class TokenIssuer:
    """Issues, checks, expires and revokes bearer tokens.

    `clock` is monotonic seconds; tests pass a manual clock to expire tokens without waiting.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        lifetime_seconds: int = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.lifetime_seconds = lifetime_seconds
        self.token_requests = 0
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self, form: Mapping[str, str], authorization: str | None) -> IssuedToken:
        """Answer one token request, or raise `TokenRefused`."""
        self.token_requests += 1
        self._authenticate_client(form, authorization)
        grant_type = form.get("grant_type")
        if grant_type == "password":
            self._check_access_key(form)
        elif grant_type != "client_credentials":
            if grant_type is None:
                raise TokenRefused(400, "invalid_request", "grant_type is missing")
            raise TokenRefused(400, "unsupported_grant_type", f"{grant_type} is not supported")
        token = secrets.token_urlsafe(32)
        self._expiry[token] = self._clock() + self.lifetime_seconds
        return IssuedToken(token, self.lifetime_seconds, form.get("scope") or DEFAULT_SCOPE)

    def is_valid(self, token: str) -> bool:
        """Tell whether a bearer token was issued, is not revoked and has not expired."""
        expiry = self._expiry.get(token)
        return expiry is not None and self._clock() < expiry

    def revoke_all(self) -> None:
        """Invalidate every token issued so far, as a key rotation would."""
        self._expiry.clear()

    def _authenticate_client(self, form: Mapping[str, str], authorization: str | None) -> None:
        basic = _basic_credentials(authorization)
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        expected = self.credentials
        if not (
            client_id is not None
            and client_secret is not None
            and secrets.compare_digest(client_id, expected.client_id)
            and secrets.compare_digest(client_secret, expected.client_secret)
        ):
            raise TokenRefused(401, "invalid_client", "client authentication failed")

    def _check_access_key(self, form: Mapping[str, str]) -> None:
        username = form.get("username", "")
        password = form.get("password", "")
        expected = self.credentials
        if not (
            secrets.compare_digest(username, expected.access_key_id)
            and secrets.compare_digest(password, expected.access_key_secret)
        ):
            raise TokenRefused(400, "invalid_grant", "the access key is not valid")


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """Return the client id and secret of an HTTP Basic header (RFC 6749 §2.3.1), if any."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1 form-encodes both parts before joining them.
    return unquote_plus(client_id), unquote_plus(client_secret)
