"""The policy file's idp_mapping section: loading, its checks against the catalog, its output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumer.catalog import load_policy, parse_policy, render_hierarchy
from consumer.errors import ConfigurationError
from tests.unit.test_catalog import document

EXAMPLE = Path(__file__).parents[2] / "examples" / "policy.yaml"


def with_mapping(mapping: Any) -> dict[str, Any]:
    """The small test policy with this idp_mapping section."""
    return document(idp_mapping=mapping)


def load_error(mapping: Any) -> str:
    """The one-line ConfigurationError a policy with this mapping raises."""
    with pytest.raises(ConfigurationError) as raised:
        parse_policy(with_mapping(mapping))
    return str(raised.value)


def test_a_mapping_loads_with_its_groups_and_role_values() -> None:
    """Groups and role values map to catalog roles; primary and approves are kept."""
    policy = parse_policy(
        with_mapping(
            {
                "groups": {"CC Agents": {"roles": ["agent"], "primary": "agent"}},
                "role_values": {"Admin": {"roles": ["admin"], "approves": True}},
            }
        )
    )
    assert policy.idp_mapping is not None
    assert policy.idp_mapping.groups["CC Agents"].primary == "agent"
    assert policy.idp_mapping.role_values["Admin"].approves is True


def test_a_policy_without_a_mapping_has_none() -> None:
    """The section is optional: a policy without it loads with no mapping."""
    assert parse_policy(document()).idp_mapping is None


def test_an_unknown_catalog_role_in_a_mapping_names_the_entry_and_the_role() -> None:
    """A mapping entry granting a role the catalog lacks stops the load with one line."""
    message = load_error({"groups": {"CC Agents": {"roles": ["agnet"]}}})
    assert message == "policy: idp_mapping group 'CC Agents': role 'agnet' is not in the catalog"


def test_approves_on_an_entry_granting_nothing_privileged_is_an_error() -> None:
    """`approves: true` without a privileged role (even inherited) would approve nothing."""
    message = load_error({"role_values": {"Agents": {"roles": ["agent"], "approves": True}}})
    assert message == (
        "policy: idp_mapping role value 'Agents': approves: true, but it grants no privileged role"
    )


def test_approves_counts_a_privileged_role_gained_by_inheritance() -> None:
    """An entry whose role inherits a privileged one may approve it."""
    policy = parse_policy(
        with_mapping(
            {
                "groups": {
                    "Helpdesk": {"roles": ["agent", "admin"], "approves": True},
                }
            }
        )
    )
    assert policy.idp_mapping is not None


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"groups": {"G": {"roles": ["agent"], "primary": "lead"}}}, "is not one of the entry"),
        ({"groups": {"G": {"roles": ["agent", "agent"]}}}, "a role is listed twice"),
        ({"groups": {"G": {"roles": []}}}, "at least 1 item"),
        ({"groups": {"G": {"roles": ["agent"], "approves": "yes"}}}, "valid boolean"),
        ({"groups": {"G": {"roles": ["agent"], "grant": True}}}, "unknown field"),
        ({"users": {}}, "unknown field"),
        ({"groups": {"bad\nname": {"roles": ["agent"]}}}, "should match pattern"),
        ({"groups": ["CC Agents"]}, "valid dictionary"),
    ],
)
def test_a_malformed_mapping_fails_with_one_line(mapping: Any, expected: str) -> None:
    """Wrong types, unknown fields, duplicate roles and a stray primary are refused."""
    message = load_error(mapping)
    assert expected in message
    assert "\n" not in message


def test_check_policy_output_lists_each_entry_and_what_it_needs() -> None:
    """The rendered policy ends with one line per mapping entry, privileged ones explained."""
    policy = parse_policy(
        with_mapping(
            {
                "groups": {
                    "CC Agents": {"roles": ["agent"], "primary": "agent"},
                    "CC Admins": {"roles": ["admin"], "approves": True},
                    "CC Leads": {"roles": ["lead", "admin"]},
                }
            }
        )
    )
    lines = render_hierarchy(policy).splitlines()
    assert lines[-4:] == [
        "idp_mapping:",
        "  group 'CC Agents' -> agent (primary)",
        "  group 'CC Admins' -> admin; privileged admin: approved by membership",
        "  group 'CC Leads' -> lead, admin; privileged admin: no approval: refused",
    ]


def test_check_policy_output_says_when_there_is_no_mapping() -> None:
    """Without the section, the output says the SCIM ingress grants nothing."""
    lines = render_hierarchy(parse_policy(document())).splitlines()
    assert lines[-1] == "idp_mapping: none (the SCIM ingress grants no roles)"


def test_the_example_policy_maps_groups_and_role_values() -> None:
    """The shipped example carries a mapping with an approving and a refused privileged group."""
    mapping = load_policy(EXAMPLE).idp_mapping
    assert mapping is not None
    assert mapping.groups["CC Support Admins"].approves is True
    assert mapping.groups["CC Security Admins"].approves is False
    assert mapping.role_values["Supervisor"].primary == "supervisor"
