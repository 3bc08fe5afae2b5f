"""Whether a policy can tell the demo's story: the roles the sample users and events hold."""

from __future__ import annotations

from pathlib import Path

from consumer.catalog import load_policy, parse_policy
from consumer.demo import example_policy, story_gaps
from consumer.sandbox.samples import UNKNOWN_ON_PURPOSE, sample_role_ids


def test_the_example_policy_tells_the_story() -> None:
    """The shipped example defines every sample role but the one unknown on purpose."""
    policy = load_policy(example_policy())
    assert story_gaps(policy, example_policy()) is None
    assert sample_role_ids() - set(policy.catalog) == UNKNOWN_ON_PURPOSE


def test_a_policy_missing_sample_roles_is_named_in_one_line() -> None:
    """A policy without the sample roles gets one line naming the first few it lacks."""
    policy = parse_policy(
        {
            "max_roles_per_user": 3,
            "max_hierarchy_depth": 2,
            "roles": {"agent_basic": {"display_name": "Agent"}},
        }
    )
    gaps = story_gaps(policy, Path("own.yaml"))
    assert gaps is not None
    assert "\n" not in gaps
    assert gaps.startswith(
        "demo: the policy own.yaml cannot tell the demo's story: it does not define "
        "admin_support, agent_blended, agent_voice, billing_admin, billing_auditor, "
        "compliance_auditor and 7 more,"
    )
    assert "super_admin" not in gaps


def test_sample_roles_include_the_seeded_role() -> None:
    """Every seeded user holds agent_basic, so the story needs it too."""
    assert "agent_basic" in sample_role_ids()
