"""Sample users and IdP events for the demo: everyday changes, escalations and bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from consumer.sandbox.simulator import CxoneSimulator

_FIRST = (
    "Ava",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Femi",
    "Grace",
    "Hiro",
    "Ines",
    "Jon",
    "Kai",
    "Lena",
)
_LAST = ("Nguyen", "Okafor", "Patel", "Quinn", "Rossi", "Silva", "Tanaka", "Ueda", "Varga", "Weiss")
_TEAMS = ("Billing Support", "Tier 1 Voice", "Digital Care", "Retention")


@dataclass(frozen=True)
class SampleRecord:
    """One record to produce to the input topic."""

    key: bytes | None
    value: bytes
    label: str


def user_id(number: int) -> str:
    """The CXone id of sample user `number`."""
    return f"u-{1000 + number}"


def seed_users(simulator: CxoneSimulator, count: int = 40) -> None:
    """Seed `count` agents with full profiles: names, emails, phones, team, one role."""
    for number in range(1, count + 1):
        first, last = _FIRST[number % len(_FIRST)], _LAST[number % len(_LAST)]
        handle = f"{first}.{last}{number}".lower()
        simulator.seed_user(
            user_id(number),
            f"{handle}@example.com",
            given_name=first,
            family_name=last,
            emails=[f"{handle}@example.com"],
            phone_numbers=[f"+1-555-01{number:02d}"],
            title="Contact Center Agent",
            team=_TEAMS[number % len(_TEAMS)],
            login_authenticator="SSO",
            roles=[(SEEDED_ROLE, "Standard Agent", True)],
        )


def _event(
    number: int,
    event_id: str,
    roles: list[dict[str, Any]] | None,
    *,
    approval: bool = False,
    deactivate: bool = False,
    reactivate: bool = False,
) -> dict[str, Any]:
    data: dict[str, Any] = {"user_id": user_id(number)}
    if roles is not None:
        data["roles"] = roles
    if approval:
        data["approval"] = {"ticket": f"CHG-{4000 + number}", "approved_by": "secops"}
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "okta/acme-prod",
        "type": (
            "idp.user.deactivated"
            if deactivate
            else "idp.user.reactivated"
            if reactivate
            else "idp.user.roles.changed"
        ),
        "time": "2026-11-28T15:00:00Z",
        "subject": user_id(number),
        "data": data,
    }


def _roles(*role_ids: str) -> list[dict[str, Any]]:
    return [{"role_id": role_id, "primary": index == 0} for index, role_id in enumerate(role_ids)]


SEEDED_ROLE = "agent_basic"
UNKNOWN_ON_PURPOSE = frozenset({"super_admin"})
"""A role the samples name to show an escalation refused as unknown: no policy should define it."""


def sample_role_ids() -> frozenset[str]:
    """Every role the seeded users hold or the sample events name."""
    found = {SEEDED_ROLE}
    for record in [*promotions(), *follow_ups()]:
        try:
            data = json.loads(record.value).get("data") or {}
        except ValueError:
            continue  # the deliberately broken records
        found.update(str(role["role_id"]) for role in data.get("roles") or [])
    return frozenset(found)


def promotions(users: int = 40) -> list[SampleRecord]:
    """The first wave: every seeded agent moves to the voice queue."""
    return [
        _record("promotion", _event(number, f"evt-{number}-a", _roles("agent_voice")))
        for number in range(1, users + 1)
    ]


def _record(label: str, event: dict[str, Any]) -> SampleRecord:
    return SampleRecord(
        key=event["data"]["user_id"].encode(), value=json.dumps(event).encode(), label=label
    )


def follow_ups() -> list[SampleRecord]:
    """The second wave: every kind of change the service meets, bad input included."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("unchanged: already held", _event(1, "evt-1-b", _roles("agent_voice"))),
        (
            "approved privileged grant",
            _event(2, "evt-2-b", _roles("agent_voice", "admin_support"), approval=True),
        ),
        (
            "escalation refused: unknown role",
            _event(3, "evt-3-b", _roles("agent_voice", "super_admin")),
        ),
        (
            "escalation refused: no approval",
            _event(4, "evt-4-b", _roles("agent_voice", "billing_admin")),
        ),
        (
            "separation-of-duties conflict",
            _event(5, "evt-5-b", _roles("billing_admin", "billing_auditor"), approval=True),
        ),
        (
            "refused: too many roles",
            _event(
                6,
                "evt-6-b",
                _roles(
                    "agent_voice",
                    "qa_evaluator",
                    "reporting_analyst",
                    "wfm_scheduler",
                    "supervisor",
                    "compliance_auditor",
                ),
            ),
        ),
        ("refused: hierarchy too deep", _event(7, "evt-7-b", _roles("floor_manager_legacy"))),
        ("removal of every role", _event(8, "evt-8-b", [])),
        ("deactivation", _event(9, "evt-9-b", None, deactivate=True)),
        # The whole lifecycle: a leaver who comes back; a roles change in between keeps them out.
        ("leaver: deactivation", _event(12, "evt-12-b", None, deactivate=True)),
        ("leaver: roles change, stays inactive", _event(12, "evt-12-c", _roles("agent_basic"))),
        (
            "returner: reactivation",
            _event(12, "evt-12-d", _roles("agent_blended"), reactivate=True),
        ),
        ("user unknown to CXone", _event(900, "evt-900-a", _roles("agent_basic"))),
    ]
    # A burst for one user: only the newest needs writing.
    for step, role in enumerate(("qa_evaluator", "qa_manager", "reporting_analyst", "team_lead")):
        events.append(
            ("burst for one user, coalesced", _event(10, f"evt-10-burst-{step}", _roles(role)))
        )
    records = [_record(label, event) for label, event in events]
    records += [
        SampleRecord(
            key=b"u-1011", value=b'{"specversion": "1.0", "id": ', label="bad record: invalid JSON"
        ),
        SampleRecord(
            key=b"../admin",
            value=json.dumps(
                {
                    "specversion": "1.0",
                    "id": "evt-bad-id",
                    "source": "okta/acme-prod",
                    "type": "idp.user.roles.changed",
                    "data": {"user_id": "../admin", "roles": []},
                }
            ).encode(),
            label="bad record: path-traversal user id",
        ),
    ]
    return records
