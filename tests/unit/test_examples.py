"""Tests that the documented example files are the ones the package ships and the code reads."""

from __future__ import annotations

from pathlib import Path

from consumer.catalog import load_policy
from consumer.demo import example_policy

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_policy_is_the_documented_example() -> None:
    """The policy inside the package is byte for byte examples/policy.yaml."""
    assert example_policy().read_bytes() == (ROOT / "examples" / "policy.yaml").read_bytes()


def test_shipped_policy_loads() -> None:
    """The shipped policy is a valid policy with the example catalog."""
    assert load_policy(example_policy()).catalog.is_privileged("admin_support")
