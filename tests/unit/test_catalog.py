"""The policy file model, the role catalog and its hierarchy, and loading a policy file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumer.catalog import (
    MassRevocationGuardConfig,
    Policy,
    RoleCatalog,
    RoleDefinition,
    find_cycle,
    load_policy,
    parse_policy,
    render_hierarchy,
)
from consumer.errors import ConfigurationError

EXAMPLE = Path(__file__).parents[2] / "examples" / "policy.yaml"


def document(**changes: Any) -> dict[str, Any]:
    """A small valid policy document, with top-level fields replaced by `changes`."""
    base: dict[str, Any] = {
        "max_roles_per_user": 3,
        "max_hierarchy_depth": 2,
        "roles": {
            "agent": {"display_name": "Agent"},
            "lead": {"display_name": "Lead", "inherits_from": ["agent"]},
            "admin": {"display_name": "Admin", "inherits_from": ["lead"], "privileged": True},
            "auditor": {"display_name": "Auditor"},
        },
        "separation_of_duties": [["admin", "auditor"]],
    }
    base.update(changes)
    return base


def catalog_of(**parents: list[str]) -> RoleCatalog:
    """A catalog whose roles inherit from the given parents."""
    return RoleCatalog(
        {
            role_id: RoleDefinition(display_name=role_id.title(), inherits_from=tuple(inherits))
            for role_id, inherits in parents.items()
        }
    )


def load_error(tmp_path: Path, text: str) -> str:
    """The message of the ConfigurationError that loading `text` as a policy file raises."""
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as raised:
        load_policy(path)
    return str(raised.value)


def test_example_policy_loads_with_the_documented_limits() -> None:
    """The shipped example loads, with the limits, roles and guard the design names."""
    policy = load_policy(EXAMPLE)
    assert policy.max_roles_per_user == 5
    assert policy.max_hierarchy_depth == 4
    assert "agent_basic" in policy.catalog
    assert policy.catalog.is_privileged("admin_support")
    assert policy.catalog.parents("admin_support") == {"agent_basic"}
    assert ("billing_admin", "billing_auditor") in policy.separation_of_duties
    assert policy.mass_revocation_guard == MassRevocationGuardConfig(
        max_revocations=50, window_seconds=300
    )


def test_depth_counts_the_longest_chain_in_roles() -> None:
    """Depth is the longest chain counted in roles, not the number of parents."""
    catalog = catalog_of(root=[], mid=["root"], other=[], leaf=["mid", "other"])
    assert catalog.depth("root") == 1
    assert catalog.depth("leaf") == 3
    assert catalog.longest_chain("leaf") == ("leaf", "mid", "root")


def test_ancestors_and_effective_roles_are_transitive() -> None:
    """Ancestors include grandparents; effective roles add them and ignore unknown ids."""
    catalog = catalog_of(root=[], mid=["root"], leaf=["mid"], alone=[])
    assert catalog.ancestors("leaf") == {"mid", "root"}
    assert catalog.effective_roles(["leaf", "ghost"]) == {"leaf", "mid", "root"}


def test_roots_and_children_follow_file_order() -> None:
    """Roots and children come out in the order the file lists them."""
    catalog = catalog_of(b=[], a=[], c=["b"], d=["b"])
    assert catalog.roots() == ("b", "a")
    assert catalog.children("b") == ("c", "d")


def test_find_cycle_returns_the_path_back_to_its_start() -> None:
    """A cycle comes back as the path that returns to where it began."""
    assert find_cycle({"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}) == ("a", "b", "c", "a")
    assert find_cycle({"a": ["b"], "b": []}) is None


def test_cycle_fails_to_load_with_the_cycle_path(tmp_path: Path) -> None:
    """A catalog with a cycle names the role and prints the cycle path."""
    message = load_error(
        tmp_path,
        "max_roles_per_user: 3\nmax_hierarchy_depth: 3\nroles:\n"
        "  a: {display_name: A, inherits_from: [b]}\n"
        "  b: {display_name: B, inherits_from: [c]}\n"
        "  c: {display_name: C, inherits_from: [a]}\n",
    )
    assert message.endswith("role 'a': inheritance cycle: a -> b -> c -> a")


def test_self_inheritance_is_a_cycle() -> None:
    """A role that inherits from itself is a cycle of one."""
    roles = document()["roles"] | {"loop": {"display_name": "Loop", "inherits_from": ["loop"]}}
    with pytest.raises(ConfigurationError, match=r"role 'loop': inheritance cycle: loop -> loop"):
        parse_policy(document(roles=roles))


def test_unknown_parent_fails_to_load() -> None:
    """Inheriting from a role the catalog lacks names both roles."""
    roles = document()["roles"] | {"lead": {"display_name": "Lead", "inherits_from": ["ghost"]}}
    with pytest.raises(ConfigurationError) as raised:
        parse_policy(document(roles=roles), source="policy file p.yaml")
    assert (
        str(raised.value) == "policy file p.yaml: role 'lead': inherits from unknown role 'ghost'"
    )


def test_unknown_role_in_sod_pair_fails_to_load() -> None:
    """A separation_of_duties pair naming an unknown role fails, naming it."""
    with pytest.raises(ConfigurationError, match=r"role 'ghost': separation_of_duties pair"):
        parse_policy(document(separation_of_duties=[["admin", "ghost"]]))


def test_sod_pair_with_one_role_twice_fails_to_load() -> None:
    """A pair that names the same role twice is refused."""
    with pytest.raises(ConfigurationError, match=r"role 'agent': .*same role twice"):
        parse_policy(document(separation_of_duties=[["agent", "agent"]]))


def test_role_inheriting_both_sides_of_a_sod_pair_fails_to_load() -> None:
    """A role that could never be assigned, since it inherits both roles of a pair, is refused."""
    with pytest.raises(
        ConfigurationError,
        match=r"role 'lead': could never be assigned: .* both 'agent' and 'lead'",
    ):
        parse_policy(document(separation_of_duties=[["agent", "lead"]]))


def test_unknown_field_fails_to_load() -> None:
    """A field the model does not know is refused, naming the role and the field."""
    roles = document()["roles"] | {"agent": {"display_name": "Agent", "colour": "blue"}}
    with pytest.raises(ConfigurationError) as raised:
        parse_policy(document(roles=roles))
    assert str(raised.value) == "policy: role 'agent': unknown field 'colour'"


def test_bad_field_type_fails_to_load() -> None:
    """A field of the wrong type is refused with the role, the field and the value."""
    roles = document()["roles"] | {"agent": {"display_name": "Agent", "privileged": "yes"}}
    with pytest.raises(ConfigurationError) as raised:
        parse_policy(document(roles=roles))
    assert str(raised.value) == (
        "policy: role 'agent': privileged: Input should be a valid boolean (got 'yes')"
    )


def test_missing_display_name_fails_to_load() -> None:
    """Every role needs a display name, since the catalog is the authority on names."""
    roles = document()["roles"] | {"agent": {}}
    with pytest.raises(ConfigurationError, match=r"role 'agent': display_name: Field required"):
        parse_policy(document(roles=roles))


def test_bad_role_id_fails_to_load() -> None:
    """A role id outside the allowed characters is refused, naming it."""
    roles = document()["roles"] | {"bad id": {"display_name": "Bad"}}
    with pytest.raises(ConfigurationError, match=r"role 'bad id': invalid role id"):
        parse_policy(document(roles=roles))


@pytest.mark.parametrize("field", ["max_roles_per_user", "max_hierarchy_depth"])
def test_limit_below_one_fails_to_load(field: str) -> None:
    """A limit below 1 is refused, naming the limit and the value."""
    with pytest.raises(ConfigurationError) as raised:
        parse_policy(document(**{field: 0}))
    assert str(raised.value) == (
        f"policy: {field}: Input should be greater than or equal to 1 (got 0)"
    )


def test_guard_limit_below_one_fails_to_load() -> None:
    """A mass-revocation guard that allows no revocation at all is refused."""
    guard = {"max_revocations": 0, "window_seconds": 300}
    with pytest.raises(ConfigurationError, match=r"mass_revocation_guard.max_revocations"):
        parse_policy(document(mass_revocation_guard=guard))


def test_absent_guard_means_no_guard() -> None:
    """A policy without mass_revocation_guard has no guard configured."""
    assert parse_policy(document()).mass_revocation_guard is None


def test_empty_catalog_fails_to_load() -> None:
    """A policy with no roles at all is refused."""
    with pytest.raises(ConfigurationError, match=r"roles: Dictionary should have at least 1"):
        parse_policy(document(roles={}))


def test_policy_built_directly_checks_its_limits() -> None:
    """A Policy built in code checks its limits like a loaded one."""
    with pytest.raises(ConfigurationError, match=r"max_roles_per_user: must be at least 1"):
        Policy(catalog=catalog_of(a=[]), max_roles_per_user=0, max_hierarchy_depth=1)


def test_missing_file_gives_one_line(tmp_path: Path) -> None:
    """A missing file is reported in one line naming it."""
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigurationError) as raised:
        load_policy(missing)
    assert str(raised.value) == f"policy file {missing}: not found"


def test_yaml_syntax_error_gives_one_line_with_position(tmp_path: Path) -> None:
    """A YAML syntax error is one line with its line and column."""
    message = load_error(tmp_path, "max_roles_per_user: 3\nroles: {agent: [unclosed\n")
    assert "\n" not in message
    assert message.startswith(f"policy file {tmp_path / 'policy.yaml'}: invalid YAML at line 3")


def test_duplicate_role_fails_to_load(tmp_path: Path) -> None:
    """A role defined twice is an error, not a silent override."""
    message = load_error(
        tmp_path,
        "max_roles_per_user: 3\nmax_hierarchy_depth: 3\nroles:\n"
        "  agent: {display_name: Agent, privileged: true}\n"
        "  agent: {display_name: Agent}\n",
    )
    assert message.endswith("invalid YAML at line 5, column 3: duplicate key 'agent'")


def test_empty_file_fails_to_load(tmp_path: Path) -> None:
    """An empty file says so."""
    assert load_error(tmp_path, "# nothing yet\n").endswith(": is empty")


def test_non_mapping_document_fails_to_load(tmp_path: Path) -> None:
    """A document that is not a mapping says what it must be."""
    assert load_error(tmp_path, "- agent\n").endswith(": must be a mapping of policy settings")


def test_render_hierarchy_draws_the_tree_with_depth_and_flags() -> None:
    """The tree shows each role under its parents with its depth and privileged flag."""
    policy = parse_policy(document())
    assert render_hierarchy(policy.catalog, max_depth=2) == "\n".join(
        [
            "agent (Agent) depth 1",
            "└── lead (Lead) depth 2",
            "    └── admin (Admin) depth 3, privileged, exceeds max_hierarchy_depth 2",
            "auditor (Auditor) depth 1",
        ]
    )


def test_render_hierarchy_draws_a_shared_subtree_once() -> None:
    """A role with two parents appears under both, its children drawn only the first time."""
    catalog = catalog_of(a=[], b=[], both=["a", "b"], leaf=["both"])
    assert render_hierarchy(catalog) == "\n".join(
        [
            "a (A) depth 1",
            "└── both (Both) depth 2",
            "    └── leaf (Leaf) depth 3",
            "b (B) depth 1",
            "└── both (Both) depth 2 (children shown above)",
        ]
    )


def test_render_hierarchy_of_a_policy_adds_its_limits() -> None:
    """Given a whole policy, the tree is followed by its limits, pairs and guard."""
    guard = {"max_revocations": 50, "window_seconds": 300}
    text = render_hierarchy(parse_policy(document(mass_revocation_guard=guard)))
    assert text.endswith(
        "\n\nmax_roles_per_user: 3\nmax_hierarchy_depth: 2\n"
        "separation_of_duties: admin / auditor\n"
        "mass_revocation_guard: 50 revocations per 300 s\n"
        "idp_mapping: none (the SCIM ingress grants no roles)"
    )
    assert "exceeds max_hierarchy_depth 2" in text


def test_render_hierarchy_marks_inherited_privilege() -> None:
    """A plain role below a privileged one is marked as inheriting privilege."""
    roles = document()["roles"] | {"boss": {"display_name": "Boss", "inherits_from": ["admin"]}}
    text = render_hierarchy(parse_policy(document(roles=roles)).catalog)
    assert "boss (Boss) depth 4, inherits privileged" in text
