"""The SCIM ingress in `demo` and `sandbox`: an IdP's requests, sent as an IdP sends them.

`sandbox` serves the ingress beside the broker and the simulator and prints curl lines that
provision a user and a group as an IdP would; `demo` sends such requests itself and shows the
audit line `run` wrote for each resulting event.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from consumer.audit_reader import render_line
from consumer.catalog import load_policy
from consumer.events import AuditEvent
from consumer.sandbox.feed import AuditReader

__all__ = ["SANDBOX_INGRESS_TOKEN", "ingress_guide", "running_ingress", "scim_story"]

# A throwaway token of the sandbox's ingress (on loopback only).
SANDBOX_INGRESS_TOKEN = "sandbox-ingress-token-not-a-secret-0001"  # noqa: S105
STATE_TOPIC = "cxone-role-sync.ingress.state"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
HEADERS = {
    "Authorization": f"Bearer {SANDBOX_INGRESS_TOKEN}",
    "Content-Type": "application/scim+json",
}


@asynccontextmanager
async def running_ingress(
    environment: dict[str, str], policy_file: Path
) -> AsyncIterator[str | None]:
    """Serve the ingress on loopback and yield its SCIM URL; None when the policy maps nothing."""
    if load_policy(policy_file).idp_mapping is None:
        yield None
        return
    from consumer.ingress.service import Ingress, IngressTuning
    from consumer.ingress.settings import load_ingress_settings

    settings = load_ingress_settings(
        **{name.lower(): value for name, value in environment.items()},
        ingress_token=SANDBOX_INGRESS_TOKEN,
        ingress_port=0,
        ingress_state_topic=STATE_TOPIC,
        ingress_source="sandbox-idp",
        ingress_retry_seconds=2,
        metrics_port=0,
    )
    ingress = Ingress(settings, IngressTuning(metrics_host="127.0.0.1"))
    await ingress.start()
    try:
        await ingress.serving_within(30.0)
        yield ingress.url
    finally:
        await ingress.stop()


def ingress_guide(url: str | None, user_name: str) -> list[str]:
    """The lines `sandbox` prints to provision a user and a group to the ingress with curl."""
    if url is None:
        return ["", "# SCIM ingress: not served (the policy file has no idp_mapping section)."]
    auth = shlex.quote(f"Authorization: Bearer {SANDBOX_INGRESS_TOKEN}")
    kind = shlex.quote("Content-Type: application/scim+json")
    user = shlex.quote(f'{{"schemas":["{USER_SCHEMA}"],"userName":"{user_name}"}}')
    group = (
        f'"{{\\"schemas\\":[\\"{GROUP_SCHEMA}\\"],\\"displayName\\":\\"CC Team Leads\\",'
        '\\"members\\":[{\\"value\\":\\"$ID\\"}]}"'
    )
    return [
        "",
        f"# SCIM ingress (what an IdP provisions to): {url}, token {SANDBOX_INGRESS_TOKEN}",
        "# With the consumer running, provision a user and a group as an IdP would:",
        f"#   ID=$(curl -s -X POST {url}/Users -H {auth} -H {kind} -d {user}"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')",
        f"#   curl -s -X POST {url}/Groups -H {auth} -H {kind} -d {group}",
        f"#   cxone-role-sync audit --user {{the CXone id of {user_name}}}",
    ]


async def scim_story(
    url: str,
    user_name: str,
    audit: AuditReader,
    echo: Callable[[str], None],
    *,
    within: float,
) -> list[AuditEvent]:
    """Provision a user and three groups as an IdP would; echo the audit line of each event."""
    steps = [
        ("CC Team Leads", "a plain group"),
        ("CC Support Admins", "a group whose membership approves admin_support"),
        ("CC Security Admins", "a privileged group that approves nothing"),
    ]
    echo("")
    echo(f"SCIM     an IdP provisions {user_name} to the ingress at {url}")
    seen = len(audit.events)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=10.0) as idp:
        created = await idp.post("/Users", json={"schemas": [USER_SCHEMA], "userName": user_name})
        created.raise_for_status()
        member = [{"value": created.json()["id"]}]
        shown: list[AuditEvent] = []
        for name, what in steps:
            response = await idp.post(
                "/Groups",
                json={"schemas": [GROUP_SCHEMA], "displayName": name, "members": member},
            )
            response.raise_for_status()
            echo(f"  POST /Groups {name!r} ({what}), member {user_name}:")
            await audit.wait_until(
                lambda reader: len(audit.events) > seen + len(shown),
                within=within,
                what=f"the audit of {name}",
            )
            event = audit.events[seen + len(shown)]
            shown.append(event)
            echo(f"    {render_line(event)}")
    return shown
