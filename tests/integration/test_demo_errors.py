"""`demo` and `sandbox` that cannot run: one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT
from tests.integration.test_cli import cli

EXAMPLE_POLICY = ROOT / "consumer" / "example_policy.yaml"


def _one_line(completed: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert completed.returncode == code, completed.stdout + completed.stderr
    [line] = completed.stderr.splitlines()
    assert "Traceback" not in line
    return line


@pytest.mark.parametrize("command", ["demo", "sandbox"])
def test_a_tansu_binary_that_does_not_exist_is_one_line(command: str) -> None:
    """`--tansu-bin /nonexistent` is one line naming it, exit 2, before anything starts."""
    completed = cli(command, "--tansu-bin", "/nonexistent")
    line = _one_line(completed)
    assert line == (
        "the Tansu binary '/nonexistent' is not an executable file (--tansu-bin or TANSU_BIN)"
    )
    assert completed.stdout == ""


@pytest.mark.parametrize("command", ["demo", "sandbox"])
def test_a_tansu_bin_that_is_not_a_broker_is_one_line(command: str) -> None:
    """A TANSU_BIN that runs but is no broker (`true`) is one line asking about it, exit 2."""
    completed = cli(command, environment={"TANSU_BIN": "/bin/true"})
    line = _one_line(completed)
    assert line == (
        "the Tansu broker exited at start-up; is --tansu-bin (or TANSU_BIN) a Tansu broker?"
    )


def test_a_policy_without_the_demo_roles_says_why_before_starting(tmp_path: Path) -> None:
    """A valid policy of the user's own that lacks the sample roles is one line, at once."""
    policy = tmp_path / "own.yaml"
    policy.write_text(
        "max_roles_per_user: 3\nmax_hierarchy_depth: 2\nroles:\n"
        "  agent: {display_name: Agent}\n"
        "  supervisor: {display_name: Supervisor, inherits_from: [agent], privileged: true}\n"
        "mass_revocation_guard: {max_revocations: 3, window_seconds: 300}\n"
    )
    completed = cli("demo", "--policy-file", str(policy))
    line = _one_line(completed)
    assert line.startswith(f"demo: the policy {policy} cannot tell the demo's story: ")
    assert "admin_support, agent_basic, agent_blended" in line
    assert completed.stdout == ""


def test_a_guard_the_demo_trips_stops_it_in_one_line(tmp_path: Path) -> None:
    """A policy whose guard holds the demo's revocations ends the demo with one line, exit 2."""
    policy = tmp_path / "tight.yaml"
    text = EXAMPLE_POLICY.read_text()
    # Voice agents no longer inherit the seeded role, so each promotion revokes it.
    text = text.replace(
        "agent_voice: {display_name: Voice Agent, inherits_from: [agent_basic]}",
        "agent_voice: {display_name: Voice Agent}",
    ).replace("max_revocations: 50", "max_revocations: 3")
    policy.write_text(text)
    completed = cli("demo", "--policy-file", str(policy))
    line = _one_line(completed)
    assert line.startswith("demo: the mass-revocation guard of the policy tripped after ")
    assert "guard.tripped" not in completed.stdout


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("demo", "--bogus"), "cxone-role-sync demo: No such option: --bogus"),
        (("doctor", "--recent", "-1"), "cxone-role-sync doctor: Invalid value for '--recent'"),
        (("check-policy",), "cxone-role-sync check-policy: Missing argument 'FILE'."),
        (("nosuch",), "cxone-role-sync: No such command 'nosuch'."),
    ],
)
def test_every_argument_error_is_one_line(arguments: tuple[str, ...], expected: str) -> None:
    """An unknown option, a bad value, a missing argument or command: one line, exit 2."""
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "cxone-role-sync"), *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    line = _one_line(completed)
    assert line.startswith(expected)
    command = expected.partition(":")[0]
    assert line.endswith(f"(see {command} --help)")
