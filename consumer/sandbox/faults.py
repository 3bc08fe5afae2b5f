"""What goes wrong on purpose in the simulator: latency, scripted or random faults, an outage."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
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

    @classmethod
    def parse(cls, value: int | str) -> Fault:
        """Return the fault named by a status code (503) or a word ("reset")."""
        return cls(str(value).strip().lower())

    @property
    def status(self) -> int | None:
        """The HTTP status answered, or None when no response is sent at all."""
        return int(self.value) if self.value.isdigit() else None


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
        # Users every request about whom gets 503: one user stuck while the others flow.
        self.stuck_users: set[str] = set()

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
        """Forget the scripted and random faults, the latency and the outage."""
        self._script.clear()
        self.set_latency(0.0)
        self.set_probability(0.0)
        self.outage = False
        self.stuck_users.clear()

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
