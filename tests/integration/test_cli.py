"""The command line as an operator meets it: `python -m consumer` in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.settings import Settings
from tests.integration.harness import ServiceProcess, logged, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = ROOT / "examples" / "policy.yaml"

CLIENT_SECRET = "cli-client-secret-6f01d2"
ACCESS_KEY_SECRET = "cli-access-key-secret-93be7a"
SECRETS = (CLIENT_SECRET, ACCESS_KEY_SECRET)

# Nothing listens on port 9 of the loopback: the service must stop before it connects anywhere.
VALID_ENVIRONMENT = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "CXONE_SCIM_BASE_URL": "http://127.0.0.1:9/scim/v2",
    "CXONE_TOKEN_URL": "http://127.0.0.1:9/auth/token",
    "CXONE_CLIENT_ID": "cli-client",
    "CXONE_CLIENT_SECRET": CLIENT_SECRET,
    "CXONE_ACCESS_KEY_ID": "cli-access-key",
    "CXONE_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
    "POLICY_FILE": str(EXAMPLE_POLICY),
    "METRICS_PORT": "0",
}


def cli(
    *arguments: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m consumer ARGUMENTS` with only the given settings in its environment."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields
    }
    return subprocess.run(
        [sys.executable, "-m", "consumer", *arguments],
        env={**inherited, **(environment or {})},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_client_secret_fails_fast_naming_it() -> None:
    """`run` without CXONE_CLIENT_SECRET exits 2 with one line on stderr naming it."""
    environment = dict(VALID_ENVIRONMENT)
    del environment["CXONE_CLIENT_SECRET"]
    finished = cli("run", environment=environment)
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert finished.stderr.splitlines() == [
        "configuration error: CXONE_CLIENT_SECRET is required but not set"
    ]
    assert ACCESS_KEY_SECRET not in finished.stdout + finished.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYNC_MAX_CONCURRENCY", "abc"),
        ("CXONE_HTTP_TRANSPORT", "curl"),
        ("CXONE_SCIM_BASE_URL", "http://cxone.example.com/scim/v2"),
    ],
)
def test_malformed_setting_fails_fast_naming_it(name: str, value: str) -> None:
    """`run` with a malformed setting exits 2 with one line naming it, and no secret in sight."""
    finished = cli("run", environment={**VALID_ENVIRONMENT, name: value})
    assert finished.returncode == 2
    assert finished.stdout == ""
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"configuration error: {name}: ")
    for secret in SECRETS:
        assert secret not in finished.stdout + finished.stderr


@pytest.mark.parametrize(
    ("command", "name", "value", "line"),
    [
        (
            "run",
            "KAFKA_BOOTSTRAP_SERVERS",
            "127.0.0.1:notaport",
            "configuration error: KAFKA_BOOTSTRAP_SERVERS: '127.0.0.1:notaport': "
            "the port must be a number from 1 to 65535",
        ),
        (
            "run",
            "KAFKA_BOOTSTRAP_SERVERS",
            "",
            "configuration error: KAFKA_BOOTSTRAP_SERVERS: must name at least one broker "
            "as host:port",
        ),
        (
            "audit",
            "KAFKA_BOOTSTRAP_SERVERS",
            "127.0.0.1:9,",
            "configuration error: KAFKA_BOOTSTRAP_SERVERS: has an empty entry (a stray comma?)",
        ),
        (
            "run",
            "WEBHOOK_SECRET",
            "",
            "configuration error: WEBHOOK_SECRET: must not be empty",
        ),
        (
            "run",
            "ADMIN_TOKEN",
            "adm-token-8c02 ",
            "configuration error: ADMIN_TOKEN: must not begin or end with whitespace, "
            "nor hold control characters (a bearer token cannot carry them)",
        ),
    ],
)
def test_a_setting_that_could_never_work_is_one_line_and_exit_2(
    command: str, name: str, value: str, line: str
) -> None:
    """A broker list, webhook secret or admin token that cannot work stops with one line, exit 2."""
    environment = {**VALID_ENVIRONMENT, "WEBHOOK_URL": "http://127.0.0.1:9/hook", name: value}
    if name != "WEBHOOK_SECRET":
        environment["WEBHOOK_SECRET"] = "cli-webhook-secret-11d7"
    finished = cli(command, environment=environment)
    assert (finished.returncode, finished.stdout) == (2, "")
    assert finished.stderr.splitlines() == [line]
    for secret in (*SECRETS, "adm-token-8c02", "cli-webhook-secret-11d7"):
        assert secret not in finished.stderr


def test_check_policy_prints_the_hierarchy() -> None:
    """`check-policy examples/policy.yaml` exits 0 and prints the role tree and the limits."""
    finished = cli("check-policy", "examples/policy.yaml")
    assert finished.returncode == 0, finished.stderr
    assert finished.stderr == ""
    lines = finished.stdout.splitlines()
    assert lines[0] == "agent_basic (Standard Agent) depth 1"
    assert "├── agent_voice (Voice Agent) depth 2" in lines
    assert "└── admin_support (Support Admin) depth 2, privileged" in lines
    assert "    └── admin_security (Security Admin) depth 3, privileged" in lines
    assert "billing_admin (Billing Administrator) depth 1, privileged" in lines
    assert any(
        "floor_manager_legacy" in line and "exceeds max_hierarchy_depth 4" in line for line in lines
    )
    assert "max_roles_per_user: 5" in lines
    assert "max_hierarchy_depth: 4" in lines
    assert "mass_revocation_guard: 50 revocations per 300 s" in lines


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "max_roles_per_user: 5\nmax_hierarchy_depth: 3\n"
            "roles:\n  agent: {display_name: Agent, inherits_from: [ghost]}\n",
            "role 'agent': inherits from unknown role 'ghost'",
        ),
        (
            "max_roles_per_user: 5\nmax_hierarchy_depth: 3\nroles:\n"
            "  a: {display_name: A, inherits_from: [b]}\n"
            "  b: {display_name: B, inherits_from: [a]}\n",
            "inheritance cycle",
        ),
        (
            "max_roles_per_user: 5\nmax_hierarchy_depth: 3\n"
            "roles:\n  agent: {display_name: Agent, colour: blue}\n",
            "role 'agent': unknown field 'colour'",
        ),
        ("roles: [unclosed\n", "invalid YAML at line"),
    ],
    ids=["unknown_parent", "cycle", "bad_field", "not_yaml"],
)
def test_check_policy_refuses_a_bad_file(tmp_path: Path, content: str, message: str) -> None:
    """`check-policy` on a broken policy exits non-zero with one line naming the problem."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(content, encoding="utf-8")
    finished = cli("check-policy", str(policy))
    assert finished.returncode == 2
    assert finished.stdout == ""
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"policy file {policy}: ")
    assert message in line


def test_check_policy_on_a_missing_file() -> None:
    """`check-policy` on a file that does not exist says so and exits non-zero."""
    finished = cli("check-policy", "no-such-policy.yaml")
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == ["policy file no-such-policy.yaml: not found"]


def test_every_bad_setting_is_one_line_of_one_error() -> None:
    """`run` with several bad settings names each on its own line, all at once, and exits 2."""
    environment = {**VALID_ENVIRONMENT, "SYNC_MAX_CONCURRENCY": "lots", "LOG_FORMAT": "xml"}
    del environment["CXONE_CLIENT_ID"]
    finished = cli("run", environment=environment)
    assert (finished.returncode, finished.stdout) == (2, "")
    names = [line.split(":")[1].split()[0] for line in finished.stderr.splitlines()]
    assert names == ["CXONE_CLIENT_ID", "SYNC_MAX_CONCURRENCY", "LOG_FORMAT"]
    for secret in SECRETS:
        assert secret not in finished.stderr


async def test_enum_settings_take_any_case() -> None:
    """`LOG_LEVEL=debug` is accepted: `run` gets past its settings to the unreachable broker."""
    environment = {**VALID_ENVIRONMENT, "LOG_LEVEL": "debug", "LOG_FORMAT": "JSON"}
    service = ServiceProcess(environment).start()
    try:
        await wait_until(
            lambda: bool(logged(service.output, "kafka.unreachable")),
            within=30,
            what="a first attempt at the broker",
        )
        service.signal(signal.SIGTERM)
        code = await service.wait_async(15)
        output = service.output
    finally:
        service.close()
    assert code == 0
    assert "configuration error" not in output
    assert '"level": "debug"' in output


def test_version_is_printed() -> None:
    """`--version` prints the installed version and exits 0."""
    from consumer import __version__

    finished = cli("--version")
    assert (finished.returncode, finished.stdout) == (0, f"cxone-role-sync {__version__}\n")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("run", ["  --dry-run ", "  --policy-file FILE "]),
        ("replay", ["  --from-beginning ", "  --since TIME ", "  --offsets P:O,... "]),
        ("demo", ["  --policy-file FILE ", "  --tansu-bin PATH ", "  --verbose "]),
        ("send", ["  --user USER_ID ", "  --roles ROLE,... ", "  --deactivate ", "  --file FILE "]),
        ("audit", ["  -f, --follow ", "  --since TIME ", "  --outcome OUTCOME ", "  --json "]),
        ("check-policy", [" check-policy [OPTIONS] FILE\n", "  FILE  The policy YAML file"]),
    ],
)
def test_help_shows_flags_as_flags(command: str, shown: list[str]) -> None:
    """`COMMAND --help` shows a flag alone and a value by its name, never a type in brackets."""
    finished = cli(command, "--help")
    assert finished.returncode == 0
    for text in shown:
        assert text in finished.stdout
    assert "<" not in finished.stdout
    assert "{" not in finished.stdout.splitlines()[0]


def test_shell_completion_is_offered() -> None:
    """The top-level help offers installing shell completion."""
    finished = cli("--help")
    assert "--install-completion" in finished.stdout
    assert "--show-completion" in finished.stdout
