"""`cxone-role-sync ingress` start-up errors: one line, exit code 2, no secret, no traceback."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import VALID_ENVIRONMENT, cli

TOKEN = "cli-ingress-token-0123456789abcdefghijkl"
NO_MAPPING = """max_roles_per_user: 2
max_hierarchy_depth: 2
roles:
  agent_basic: {display_name: Standard Agent}
"""


def test_ingress_without_its_token_names_it() -> None:
    """Without INGRESS_TOKEN the ingress stops before connecting anywhere."""
    finished = cli("ingress", environment=VALID_ENVIRONMENT)
    assert (finished.returncode, finished.stdout) == (2, "")
    assert finished.stderr.splitlines() == [
        "configuration error: INGRESS_TOKEN is required but not set"
    ]


def test_ingress_refuses_plain_http_off_loopback_without_echoing_the_token() -> None:
    """INGRESS_HOST=0.0.0.0 without TLS or the proxy opt-in is one line; the token stays out."""
    environment = {**VALID_ENVIRONMENT, "INGRESS_TOKEN": TOKEN, "INGRESS_HOST": "0.0.0.0"}
    finished = cli("ingress", environment=environment)
    assert (finished.returncode, finished.stdout) == (2, "")
    [line] = finished.stderr.splitlines()
    assert line.startswith("configuration error: INGRESS_HOST: 0.0.0.0 is not a loopback address")
    assert TOKEN not in finished.stderr


def test_ingress_refuses_a_policy_without_an_idp_mapping(tmp_path: Path) -> None:
    """A policy with no idp_mapping would empty every user's roles: start-up stops saying so."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(NO_MAPPING)
    environment = {**VALID_ENVIRONMENT, "INGRESS_TOKEN": TOKEN, "POLICY_FILE": str(policy)}
    finished = cli("ingress", environment=environment)
    assert (finished.returncode, finished.stdout) == (2, "")
    [line] = finished.stderr.splitlines()
    assert line == (
        f"start-up error: POLICY_FILE {policy} has no idp_mapping section: without it the "
        "ingress would ask to remove every role of every user it is sent"
    )
    assert "Traceback" not in finished.stderr
