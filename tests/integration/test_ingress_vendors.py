"""Okta's and Entra ID's documented SCIM request sequences, replayed over HTTP, end in events."""

from __future__ import annotations

import httpx
import pytest

from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from tests.conftest import Topics
from tests.integration.ingress_harness import (
    GROUP_SCHEMA,
    USER_SCHEMA,
    event_log,
    idp_client,
    ingress_pipeline,
    patch,
    running_ingress,
)

pytestmark = pytest.mark.timeout(120)

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def seed(simulator: CxoneSimulator) -> None:
    """The CXone users the IdP users resolve to, by userName."""
    simulator.seed_user(
        "u-1001", "jdoe@example.com", roles=[("agent_basic", "Standard Agent", True)]
    )
    simulator.seed_user("u-1002", "asmith@example.com")


async def test_okta_sequence_lookup_create_push_groups_update_deactivate(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Okta: filter lookup, POST user, group push with PATCH members, PUT updates, deactivation."""
    seed(simulator_server.simulator)
    pipeline = await ingress_pipeline(topics, simulator_server)
    async with running_ingress(pipeline) as ingress, event_log(pipeline) as log:
        async with idp_client(ingress) as okta:
            lookup = await okta.get(
                "/Users",
                params={
                    "filter": 'userName eq "jdoe@example.com"',
                    "startIndex": "1",
                    "count": "100",
                },
            )
            assert lookup.status_code == 200, lookup.text
            assert lookup.json()["totalResults"] == 0
            user = {
                "schemas": [USER_SCHEMA],
                "userName": "jdoe@example.com",
                "name": {"givenName": "Jane", "familyName": "Doe"},
                "emails": [{"primary": True, "value": "jdoe@example.com", "type": "work"}],
                "displayName": "Jane Doe",
                "locale": "en-US",
                "externalId": "00u1abcd",
                "groups": [],
                "password": "Okta-Sends-1t",
                "active": True,
            }
            created = await okta.post("/Users", json=user)
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            assert "password" not in created.json()
            # Group push: the group is created empty, then its members are PATCHed in.
            agents = await okta.post(
                "/Groups",
                json={"schemas": [GROUP_SCHEMA], "displayName": "CC Agents", "members": []},
            )
            agents_id = agents.json()["id"]
            added = await okta.patch(
                f"/Groups/{agents_id}",
                json=patch(
                    {
                        "op": "add",
                        "path": "members",
                        "value": [{"value": user_id, "display": "jdoe@example.com"}],
                    }
                ),
            )
            assert added.status_code in (200, 204), added.text
            await log.settle(ingress, 1)
            # A profile update by PUT (a new phone number) changes no role: no event.
            current = (await okta.get(f"/Users/{user_id}")).json()
            current["phoneNumbers"] = [{"value": "+1 555 0100", "type": "work"}]
            put = await okta.put(f"/Users/{user_id}", json=current)
            assert put.status_code == 200, put.text
            admins = await okta.post(
                "/Groups",
                json={
                    "schemas": [GROUP_SCHEMA],
                    "displayName": "CC Support Admins",
                    "members": [{"value": user_id}],
                },
            )
            assert admins.status_code == 201
            await log.settle(ingress, 2)
            # Okta deactivates by PUT with active false, and reactivates the same way.
            current = (await okta.get(f"/Users/{user_id}")).json()
            await okta.put(f"/Users/{user_id}", json={**current, "active": False})
            await log.settle(ingress, 3)
            current = (await okta.get(f"/Users/{user_id}")).json()
            await okta.put(f"/Users/{user_id}", json={**current, "active": True})
            await log.settle(ingress, 4)
            removed = await okta.patch(
                f"/Groups/{admins.json()['id']}",
                json=patch({"op": "remove", "path": f'members[value eq "{user_id}"]'}),
            )
            assert removed.status_code in (200, 204), removed.text
            await log.settle(ingress, 5)
            deleted = await okta.delete(f"/Groups/{agents_id}")
            assert deleted.status_code == 204
            await log.settle(ingress, 6)
        assert log.summary() == [
            ("roles.changed", "u-1001", ("agent_basic",), None),
            (
                "roles.changed",
                "u-1001",
                ("agent_basic", "admin_support"),
                "idp-group:CC Support Admins",
            ),
            ("deactivated", "u-1001", (), None),
            (
                "reactivated",
                "u-1001",
                ("agent_basic", "admin_support"),
                "idp-group:CC Support Admins",
            ),
            ("roles.changed", "u-1001", ("agent_basic",), None),
            ("roles.changed", "u-1001", (), None),
        ]
        assert {event.source for event in log.events} == {"okta/acme-test"}
        assert len({event.id for event in log.events}) == 6


async def test_entra_sequence_capitalised_ops_string_booleans_app_roles_and_delete(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Entra ID: capitalised ops, "False"/"True" strings, app roles in roles, DELETE."""
    seed(simulator_server.simulator)
    pipeline = await ingress_pipeline(topics, simulator_server, INGRESS_SOURCE="entra/contoso")
    async with running_ingress(pipeline) as ingress, event_log(pipeline) as log:
        async with idp_client(ingress) as entra:
            probe = await entra.get("/Users", params={"filter": 'userName eq "asmith@example.com"'})
            assert probe.json()["totalResults"] == 0
            created = await entra.post(
                "/Users",
                json={
                    "schemas": [USER_SCHEMA, ENTERPRISE],
                    "externalId": "asmith",
                    "userName": "asmith@example.com",
                    "active": True,
                    "displayName": "Ann Smith",
                    "emails": [{"primary": True, "type": "work", "value": "asmith@example.com"}],
                    "meta": {"resourceType": "User"},
                    "name": {"formatted": "Ann Smith", "familyName": "Smith", "givenName": "Ann"},
                    "roles": [
                        {
                            "primary": False,
                            "type": "WindowsAzureActiveDirectoryRole",
                            "value": "Supervisor",
                        }
                    ],
                    ENTERPRISE: {"department": "Support", "employeeNumber": "1002"},
                },
            )
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            await log.settle(ingress, 1)
            off = await entra.patch(
                f"/Users/{user_id}",
                json=patch({"op": "Replace", "path": "active", "value": "False"}),
            )
            assert off.status_code in (200, 204), off.text
            await log.settle(ingress, 2)
            on = await entra.patch(
                f"/Users/{user_id}",
                json=patch({"op": "Replace", "path": "active", "value": "True"}),
            )
            assert on.status_code in (200, 204), on.text
            await log.settle(ingress, 3)
            group = await entra.post(
                "/Groups",
                json={
                    "schemas": [GROUP_SCHEMA],
                    "externalId": "g-77",
                    "displayName": "CC Reporting",
                    "members": [],
                },
            )
            group_id = group.json()["id"]
            added = await entra.patch(
                f"/Groups/{group_id}",
                json=patch({"op": "Add", "path": "members", "value": [{"value": user_id}]}),
            )
            assert added.status_code in (200, 204), added.text
            await log.settle(ingress, 4)
            removed = await entra.patch(
                f"/Groups/{group_id}",
                json=patch({"op": "Remove", "path": "members", "value": [{"value": user_id}]}),
            )
            assert removed.status_code in (200, 204), removed.text
            await log.settle(ingress, 5)
            renamed = await entra.patch(
                f"/Users/{user_id}",
                json=patch({"op": "Replace", "path": "displayName", "value": "Ann Smith-Jones"}),
            )
            assert renamed.status_code in (200, 204)
            gone = await entra.delete(f"/Users/{user_id}")
            assert gone.status_code == 204
            await log.settle(ingress, 6)
        assert log.summary() == [
            ("roles.changed", "u-1002", ("supervisor",), None),
            ("deactivated", "u-1002", (), None),
            ("reactivated", "u-1002", ("supervisor",), None),
            ("roles.changed", "u-1002", ("supervisor", "reporting_analyst"), None),
            ("roles.changed", "u-1002", ("supervisor",), None),
            ("deactivated", "u-1002", (), None),
        ]
        assert {event.source for event in log.events} == {"entra/contoso"}
        assert ingress.health_server is not None
        async with httpx.AsyncClient() as scraper:
            metrics = (await scraper.get(ingress.health_server.url + "/metrics")).text
        # Counters are shared by the tests of one process: their series, not their values.
        assert 'cxone_ingress_requests_total{operation="patch",status="204"}' in metrics
        assert 'cxone_ingress_requests_total{operation="delete",status="204"}' in metrics
        assert 'cxone_ingress_events_total{type="idp.user.deactivated"}' in metrics
        assert 'cxone_ingress_state_resources{kind="users"} 0.0' in metrics
        assert 'cxone_ingress_state_resources{kind="groups"} 1.0' in metrics
        assert "cxone_ingress_unresolved_users 0.0" in metrics
