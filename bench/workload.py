"""The benchmark's input: valid role changes under the example policy, as Kafka records.

Every event gives its user one non-privileged role, primary, and the next event of the same user
gives the next role of `ROLE_CYCLE`. So each event adds a role the user does not hold: none is a
pure revocation, none needs an approval, and the first one differs from the `agent_basic` the
simulator seeds. Each swap still takes some access away, which the mass-revocation guard counts,
so the benchmark runs under bench/workload-policy.yaml, the example catalog without the guard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from consumer.sandbox.samples import user_id

ROLE_CYCLE = (
    "agent_voice",
    "agent_digital",
    "qa_evaluator",
    "reporting_analyst",
    "wfm_scheduler",
    "agent_basic",
)
"""Non-privileged roles of the example policy, in the order a user is given them."""


def user_number(sequence: int, users: int) -> int:
    """The sample user (1..users) that event `sequence` is about: users take turns."""
    return sequence % users + 1


def role_of(sequence: int, users: int) -> str:
    """The role event `sequence` gives its user: the next one in `ROLE_CYCLE` each turn."""
    return ROLE_CYCLE[(sequence // users) % len(ROLE_CYCLE)]


def event_id(run: str, sequence: int) -> str:
    """The CloudEvents id of event `sequence` of a run."""
    return f"{run}-{sequence}"


def role_change(sequence: int, users: int, *, run: str) -> tuple[bytes, bytes]:
    """Event `sequence` of a run as a (key, value) record: key = user id, CloudEvents JSON."""
    number = user_number(sequence, users)
    uid = user_id(number)
    event = {
        "specversion": "1.0",
        "id": event_id(run, sequence),
        "source": "bench/load",
        "type": "idp.user.roles.changed",
        "time": "2026-11-28T15:00:00Z",
        "subject": uid,
        "data": {
            "user_id": uid,
            "roles": [{"role_id": role_of(sequence, users), "primary": True}],
        },
    }
    return uid.encode(), json.dumps(event, separators=(",", ":")).encode()


def role_changes(start: int, count: int, users: int, *, run: str) -> Iterator[tuple[bytes, bytes]]:
    """Events `start` .. `start + count - 1` of a run, lazily."""
    for sequence in range(start, start + count):
        yield role_change(sequence, users, run=run)
