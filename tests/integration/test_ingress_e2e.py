"""End to end: IdP SCIM requests -> ingress -> broker -> `run` -> simulated CXone, audited."""

from __future__ import annotations

import pytest

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import running_service, wait_until
from tests.integration.ingress_harness import (
    GROUP_SCHEMA,
    idp_client,
    ingress_pipeline,
    patch,
    provision,
    running_ingress,
)

pytestmark = pytest.mark.timeout(180)

KEY = "ingress-e2e-approval-key"


def cxone_roles(server: SimulatorServer, user_id: str) -> list[str]:
    """The role values CXone holds for a user, primary first as stored."""
    return [role["value"] for role in server.simulator.get_user(user_id).get("roles") or []]


async def test_an_approving_group_syncs_a_privileged_role_and_a_plain_group_is_refused(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """CC Support Admins (approves) syncs admin_support with a signed approval; CC Security
    Admins (plain) is refused as approval_required; deactivation by the IdP is applied."""
    simulator_server.simulator.seed_user(
        "u-1001", "jdoe@example.com", given_name="Jane", roles=[("agent_basic", None, True)]
    )
    pipeline = await ingress_pipeline(
        topics, simulator_server, APPROVAL_HMAC_KEY=KEY, INGRESS_SOURCE="okta/acme-e2e"
    )
    async with (
        running_service(pipeline.settings()),
        running_ingress(pipeline) as ingress,
        AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
        idp_client(ingress) as idp,
    ):
        user_id, _ = await provision(idp, "jdoe@example.com", "CC Support Admins")
        await audit.wait_for_results(1, within=60)
        security = await idp.post(
            "/Groups",
            json={"schemas": [GROUP_SCHEMA], "displayName": "CC Security Admins", "members": []},
        )
        await idp.patch(
            f"/Groups/{security.json()['id']}",
            json=patch({"op": "add", "path": "members", "value": [{"value": user_id}]}),
        )
        await audit.wait_for_results(2, within=60)
        await idp.patch(
            f"/Users/{user_id}", json=patch({"op": "replace", "path": "active", "value": False})
        )
        await audit.wait_for_results(3, within=60)
        await wait_until(
            lambda: simulator_server.simulator.get_user("u-1001")["active"] is False,
            within=30,
            what="the deactivation in CXone",
        )
    granted, refused, deactivated = (audit.results[key].data for key in sorted(audit.results))
    assert (granted.outcome, granted.roles_after) == (Outcome.SYNCED, ("admin_support",))
    assert granted.approval is not None
    assert (granted.approval.ticket, granted.approval.approved_by) == (
        "idp-group:CC Support Admins",
        "okta/acme-e2e",
    )
    assert granted.escalation is False
    assert (refused.outcome, refused.reason, refused.escalation) == (
        Outcome.REJECTED,
        "approval_required",
        True,
    )
    assert refused.roles_after == ("admin_support",)
    assert (deactivated.outcome, deactivated.roles_after) == (Outcome.SYNCED, ())
    assert cxone_roles(simulator_server, "u-1001") == []
    assert simulator_server.simulator.get_user("u-1001")["name"]["givenName"] == "Jane"
