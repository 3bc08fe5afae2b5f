"""What goes wrong on purpose in the simulator: latency, scripted or random faults, an outage,
and per-user answers (a 403, a conflict, a redirect, a broken response) for chosen users."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote


class Fault(StrEnum):
    """One injected failure: an HTTP status, a reset connection, or a request held too long."""

    SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    GATEWAY_TIMEOUT = "504"
    RATE_LIMITED = "429"
    RESET = "reset"
    TIMEOUT = "timeout"
    # Token endpoint refusals (RFC 6749 §5.2), answered on the token endpoint only.
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"

    @classmethod
    def parse(cls, value: int | str) -> Fault:
        """Return the fault named by a status code (503) or a word ("reset")."""
        return cls(str(value).strip().lower())

    @property
    def status(self) -> int | None:
        """The HTTP status answered, or None when no response is sent at all."""
        if self is Fault.INVALID_CLIENT:
            return 401
        if self is Fault.INVALID_GRANT:
            return 400
        return int(self.value) if self.value.isdigit() else None

    @property
    def oauth_error(self) -> str:
        """The RFC 6749 error code a token endpoint answers with this fault."""
        if self in (Fault.INVALID_CLIENT, Fault.INVALID_GRANT):
            return self.value
        return "temporarily_unavailable"


class UserAnswer(StrEnum):
    """How the simulator answers requests on one user instead of serving them."""

    FORBIDDEN = "403"
    CONFLICT = "409"
    PRECONDITION_FAILED = "412"
    FOUND = "302"
    TEMPORARY_REDIRECT = "307"
    # 200 with a body that is not JSON.
    MALFORMED_BODY = "malformed_body"
    # 200 declaring more bytes than it sends, then closing the connection.
    WRONG_CONTENT_LENGTH = "wrong_content_length"
    # Bytes that are not an HTTP response at all, then closing the connection.
    MALFORMED_RESPONSE = "malformed_response"
    # Held until the client gives up (or the simulator's hold time passes), never answered.
    HANG = "hang"

    @classmethod
    def parse(cls, value: int | str) -> UserAnswer:
        """Return the answer named by a status code (403) or a word ("hang")."""
        return cls(str(value).strip().lower())

    @property
    def status(self) -> int | None:
        """The HTTP status answered, or None when the answer is not a plain status."""
        return int(self.value) if self.value.isdigit() else None


@dataclass
class UserRule:
    """An answer for one method on one user: `times` requests (None: every one from now on)."""

    answer: UserAnswer
    scim_type: str | None = None
    detail: str = "injected by the simulator"
    times: int | None = None


@dataclass
class LatePut:
    """PUTs on one user held `seconds` and then applied, whether or not the client still waits.

    A server finishes a request whose client gave up (timed out, cancelled, went away). With
    `checked_on_receipt` the server checks `If-Match` as the request arrives and writes later
    whatever the version is by then (a write queued behind its check); otherwise the check
    happens when the write is applied. `times` PUTs are held (None: every one from now on).
    """

    seconds: float
    times: int | None = 1
    checked_on_receipt: bool = False


def user_of_path(path: str) -> str | None:
    """The user id a `/Users/{id}` path names, or None for any other path."""
    head, _, user_id = path.rpartition("/")
    return unquote(user_id) if head.endswith("/Users") and user_id else None


class FaultPlan:
    """Decides, request by request, the delay and the fault to inject.

    A scripted sequence is served first, one fault per request; after it, each request fails
    with `probability`, with the fault `kind`. `outage` fails every request with 503.
    """

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._script: deque[Fault] = deque()
        self.latency_seconds = 0.0
        self.jitter_seconds = 0.0
        self.probability = 0.0
        self.kind = Fault.SERVER_ERROR
        self.outage = False
        self.include_token_endpoint = False
        self._user_rules: dict[tuple[str, str], UserRule] = {}
        # Users every request about whom gets 503: one user stuck while the others flow.
        self.stuck_users: set[str] = set()
        self._late_puts: dict[str, LatePut] = {}

    def set_late_put(self, user_id: str, late: LatePut) -> None:
        """Hold the next PUTs on `user_id` as `late` says, then apply them anyway."""
        if late.seconds < 0:
            raise ValueError("a hold cannot be negative")
        if late.times is not None and late.times < 1:
            raise ValueError("times must be at least 1 (or None for every PUT)")
        self._late_puts[user_id] = late

    def late_put(self, method: str, user_id: str | None) -> LatePut | None:
        """The hold for this request, spending one of its `times`, or None to serve it now."""
        if method.upper() != "PUT" or user_id is None:
            return None
        late = self._late_puts.get(user_id)
        if late is not None and late.times is not None:
            late.times -= 1
            if late.times == 0:
                del self._late_puts[user_id]
        return late

    def set_user_rule(self, user_id: str, method: str, rule: UserRule) -> None:
        """Answer `method` requests on `user_id` by `rule` instead of serving them."""
        if rule.times is not None and rule.times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        self._user_rules[(method.upper(), user_id)] = rule

    def clear_user_rules(self, user_id: str | None = None) -> None:
        """Forget the rules of one user, or of every user."""
        if user_id is None:
            self._user_rules.clear()
            return
        for key in [key for key in self._user_rules if key[1] == user_id]:
            del self._user_rules[key]

    def user_rule(self, method: str, user_id: str) -> UserRule | None:
        """Return the rule for this request, spending one of its `times`, or None to serve it."""
        key = (method.upper(), user_id)
        rule = self._user_rules.get(key)
        if rule is None:
            return None
        if rule.times is not None:
            rule.times -= 1
            if rule.times == 0:
                del self._user_rules[key]
        return rule

    def set_latency(self, seconds: float, *, jitter_seconds: float = 0.0) -> None:
        """Delay every request by `seconds` plus a uniform random share of `jitter_seconds`."""
        if seconds < 0 or jitter_seconds < 0:
            raise ValueError("latency and jitter cannot be negative")
        self.latency_seconds = seconds
        self.jitter_seconds = jitter_seconds

    def set_probability(self, probability: float, kind: Fault = Fault.SERVER_ERROR) -> None:
        """Fail each unscripted request with `probability`, with the fault `kind`."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("a probability lies between 0 and 1")
        self.probability = probability
        self.kind = kind

    def script(self, faults: Iterable[Fault | int | str]) -> None:
        """Queue faults for the next requests, one each, in order."""
        self._script.extend(f if isinstance(f, Fault) else Fault.parse(f) for f in faults)

    @property
    def scripted(self) -> tuple[Fault, ...]:
        """The scripted faults not served yet."""
        return tuple(self._script)

    def clear(self) -> None:
        """Forget the scripted and random faults, the latency, the outage and the user rules."""
        self._script.clear()
        self._user_rules.clear()
        self.set_latency(0.0)
        self.set_probability(0.0)
        self.outage = False
        self.stuck_users.clear()
        self._late_puts.clear()

    def delay(self) -> float:
        """Return how long to hold the next request before answering it."""
        if self.jitter_seconds == 0.0:
            return self.latency_seconds
        return self.latency_seconds + self._rng.uniform(0.0, self.jitter_seconds)

    def stuck_fault(self, path: str) -> Fault | None:
        """503 for a request on `/Users/{id}` of a stuck user, else None."""
        if self.stuck_users and user_of_path(path) in self.stuck_users:
            return Fault.UNAVAILABLE
        return None

    def next_fault(self) -> Fault | None:
        """Return the fault for the next request, or None to serve it."""
        if self.outage:
            return Fault.UNAVAILABLE
        if self._script:
            return self._script.popleft()
        if self.probability and self._rng.random() < self.probability:
            return self.kind
        return None
