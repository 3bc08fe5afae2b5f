"""The errors of cxone-role-sync, and the one place that decides whether to retry.

::

    SyncError                      anything that stops one event from being applied
    ├── TransientError             retriable=True: wait and retry, never skip the event
    │   ├── RateLimited            429, carries the server's Retry-After
    │   ├── ServerError            500/502/503/504, 408
    │   ├── NetworkError           timeouts, resets, refused connections, malformed responses
    │   ├── AuthError              401 after a token refresh, token endpoint trouble
    │   │   └── CredentialsRejected  the token endpoint refuses the credentials or scopes
    │   └── Conflict               409/412: re-read the user and redo the write (bounded)
    ├── PermanentError             retriable=False: audit as `failed`, move on
    │   ├── UserNotFound           404 on the user
    │   ├── ScimRejected           any other 4xx, a 409 with scimType uniqueness
    │   ├── Forbidden              403 on the user, with the SCIM Error detail
    │   ├── ConflictsExhausted     409/412 still after the bounded re-reads
    │   └── UnexpectedRedirect     a 3xx: never followed with credentials, never a success
    ├── PolicyRejection            the policy refused the change (audited as `rejected`)
    └── InvalidEvent               the record is not a valid event (audited as `invalid`)

    ConfigurationError             a setting or a policy file is missing or malformed
"""

from __future__ import annotations


class SyncError(Exception):
    """Something stopped one event from being applied."""

    retriable: bool = False
    reason: str = "error"


class TransientError(SyncError):
    """Trouble that passes: retry with backoff, never skip the event."""

    retriable = True
    reason = "server_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(TransientError):
    """CXone answered 429; `retry_after` is its hint in seconds, when it gave one."""

    reason = "rate_limited"

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(TransientError):
    """CXone answered 5xx or 408."""

    reason = "server_error"


class NetworkError(TransientError):
    """The request never got an answer: timeout, reset, refused."""

    reason = "network"


class AuthError(TransientError):
    """Authentication failed even after a fresh token; systemic, so it trips the circuit."""

    reason = "auth"


class CredentialsRejected(AuthError):
    """The token endpoint refused for good (bad client, grant or scopes): an operator must act.

    At start-up it stops the service; mid-run the service stays alive but not ready and asks
    again slowly, since credentials may be rotated under it.
    """


class Conflict(TransientError):
    """The user changed under us (409/412): re-read and redo the read-modify-write."""

    reason = "conflict"


class PermanentError(SyncError):
    """CXone refused for good: the event is audited as `failed`."""

    retriable = False
    reason = "scim_rejected"

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.attempts = 0


class UserNotFound(PermanentError):
    """The user id does not exist in CXone."""

    reason = "user_not_found"


class ScimRejected(PermanentError):
    """CXone answered a 4xx that retrying cannot fix."""

    reason = "scim_rejected"


class Forbidden(PermanentError):
    """CXone answered 403: these credentials may not change this user."""

    reason = "forbidden"


class ConflictsExhausted(PermanentError):
    """The user kept changing under us (409/412) through every bounded re-read."""

    reason = "conflict"


class UnexpectedRedirect(PermanentError):
    """CXone answered a 3xx: not followed (it would carry the token), and not a success."""

    reason = "unexpected_redirect"


class PolicyRejection(SyncError):
    """The least-privilege policy refused the change."""

    retriable = False


class InvalidEvent(SyncError):
    """The record is not a valid event: `invalid_json`, `schema_violation`, `too_large` or
    `key_mismatch`.

    `event_id` is the record's `id` when its JSON parsed and carried one an event could have.
    """

    retriable = False

    def __init__(self, reason: str, detail: str, *, event_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.event_id = event_id


class ConfigurationError(Exception):
    """A setting or the policy file is missing or malformed; start-up stops."""
