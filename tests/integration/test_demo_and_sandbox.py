"""The `demo` and `sandbox` commands, run as a newcomer runs them: from a directory of their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from consumer.sandbox.broker import kafka_answers
from tests.integration.test_send_and_audit import cli

WITHIN = 90.0
"""Seconds any one step may take before a test fails; generous for a loaded machine."""


def _environment() -> dict[str, str]:
    # Settings of the machine running the tests must not leak into the commands under test.
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KAFKA_", "CXONE_", "SYNC_", "POLICY_", "WEBHOOK_", "LOG_"))
    }


def test_demo_tells_the_story_of_every_kind_of_change(tmp_path: Path) -> None:
    """`demo` run outside the repository shows progress, each kind of change and its outcome."""
    completed = subprocess.run(
        [sys.executable, "-m", "consumer", "demo"],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Without --verbose the story alone: no log line of the service among it.
    assert "sync.result" not in completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert "joined   the consumer group after" in completed.stdout
    assert "results  59/59" in lines
    assert "59 events in, 59 audit results out" in lines
    [header] = [line for line in lines if line.startswith("  kind of change ")]
    table = lines[lines.index(header) + 1 : lines.index(header) + 18]
    # Aligned: every row's count ends under "events" and its outcome starts under "outcome".
    counts_end, outcome_at = header.index("events") + len("events"), header.index("outcome")
    rows = {
        line[: counts_end - 6].strip(): (line[counts_end - 6 : counts_end], line[outcome_at:])
        for line in table
    }
    rows = {label: (count.strip(), outcome) for label, (count, outcome) in rows.items()}
    assert all(line[outcome_at - 2 : outcome_at] == "  " for line in table)
    assert rows == {
        "promotion": ("40", "synced"),
        "unchanged: already held": ("1", "unchanged"),
        "approved privileged grant": ("1", "synced"),
        "escalation refused: unknown role": ("1", "rejected unknown_role ESCALATION"),
        "escalation refused: no approval": ("1", "rejected approval_required ESCALATION"),
        "separation-of-duties conflict": ("1", "rejected sod_conflict"),
        "refused: too many roles": ("1", "rejected too_many_roles"),
        "refused: hierarchy too deep": ("1", "rejected hierarchy_too_deep"),
        "removal of every role": ("1", "synced"),
        "deactivation": ("1", "synced"),
        # Queued together, the three fold into one write: the state applying them in turn reaches.
        "leaver: deactivation": ("1", "superseded"),
        "leaver: roles change, stays inactive": ("1", "superseded"),
        "returner: reactivation": ("1", "synced"),
        "user unknown to CXone": ("1", "failed user_not_found"),
        "burst for one user, coalesced": ("4", "superseded 3, synced 1"),
        "bad record: invalid JSON": ("1", "invalid invalid_json"),
        "bad record: path-traversal user id": ("1", "invalid schema_violation"),
    }
    examples = [json.loads(line) for line in lines if line.startswith("  {")]
    assert [example["outcome"] for example in examples] == ["synced", "rejected", "invalid"]
    assert examples[0]["approval"] == {
        "ticket": "CHG-4002",
        "approved_by": "secops",
        "accepted": True,
    }
    assert examples[1]["escalation"] is True
    # The SCIM chapter: an IdP provisions one user into three groups through the ingress.
    start = next(i for i, line in enumerate(lines) if line.startswith("SCIM     an IdP provisions"))
    audits = [line.split()[2:4] for line in lines[start : start + 7] if line.startswith("    2")]
    assert audits == [["synced", "roles"], ["synced", "roles"], ["rejected", "approval_required"]]
    assert "approved idp-group:CC Support Admins by sandbox-idp" in lines[start + 4]
    assert "CHANGED" not in completed.stdout
    footer = lines[lines.index("Next steps:") :]
    for command in ("sandbox", "run", "send", "audit"):
        assert any(f"cxone-role-sync {command}" in line for line in footer)
    assert any("/metrics" in line for line in footer)


def test_demo_refuses_a_bad_policy_before_starting_anything(tmp_path: Path) -> None:
    """`demo` with a broken POLICY_FILE exits 2 with one line, before the broker starts."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "max_roles_per_user: 3\nmax_hierarchy_depth: 3\n"
        "roles:\n  a: {display_name: A, inherits_from: [nowhere]}\n"
    )
    completed = subprocess.run(
        [sys.executable, "-m", "consumer", "demo"],
        cwd=tmp_path,
        env={**_environment(), "POLICY_FILE": str(policy)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (completed.returncode, completed.stdout) == (2, "")
    [line] = completed.stderr.splitlines()
    assert "nowhere" in line


async def test_sandbox_guides_a_newcomer_from_exports_to_an_audit_line(tmp_path: Path) -> None:
    """`sandbox` prints exports, users, admin routes and lines that, pasted, send and audit."""
    sandbox = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        "sandbox",
        cwd=tmp_path,
        env=_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # A group of its own: a failed test kills the sandbox with its broker and servers.
        start_new_session=True,
    )
    service: asyncio.subprocess.Process | None = None
    try:
        assert sandbox.stdout is not None
        assert sandbox.stderr is not None
        printed: list[str] = []
        async with asyncio.timeout(WITHIN):
            # The last line, on stderr, comes once everything else was printed.
            assert (await sandbox.stderr.readline()).decode() == "# Ctrl-C stops the sandbox.\n"
            while not printed or printed[-1] != "#   curl -s localhost:9400/metrics":
                line = (await sandbox.stdout.readline()).decode()
                assert line, "the sandbox exited before printing its guide"
                printed.append(line.rstrip("\n").split(" | grep")[0])
        exports = dict(
            line.removeprefix("export ").partition("=")[::2]
            for line in printed
            if line.startswith("export ")
        )
        assert await asyncio.to_thread(Path(exports["POLICY_FILE"]).is_file)
        assert "#   u-1001 .. u-1040 agent_basic (primary)" in printed
        host, _, port = exports["KAFKA_BOOTSTRAP_SERVERS"].partition(":")
        assert await asyncio.to_thread(kafka_answers, host, int(port))
        admin = exports["CXONE_SCIM_BASE_URL"].removesuffix("/scim/v2") + "/_sim/"
        async with httpx.AsyncClient() as client:
            index = (await client.get(admin)).json()
        listed = {f"#   {route['method']:<6} {route['path']} " for route in index["routes"]}
        assert all(any(line.startswith(entry) for line in printed) for entry in listed)

        # Follow the printed instructions: run the consumer, paste a send line, read the audit.
        env = {**_environment(), **exports, "METRICS_PORT": "0"}
        service = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "consumer",
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        [send_line] = [line for line in printed if "--approval CHG-1:secops" in line]
        command = shlex.split(send_line.removeprefix("#   "))
        assert command[:2] == ["cxone-role-sync", "send"]
        code, out, err = await cli(*command[1:], env=env, cwd=tmp_path, within=WITHIN)
        assert (code, err) == (0, "")
        assert "user u-1002" in out
        async with asyncio.timeout(WITHIN):
            audit = ""
            while "synced" not in audit:
                code, audit, err = await cli(
                    "audit", "--user", "u-1002", env=env, cwd=tmp_path, within=WITHIN
                )
                assert (code, err) == (0, "")
                await asyncio.sleep(0.5)  # polling a subprocess; the deadline is the timeout
        assert "approved CHG-1 by secops" in audit
        assert "roles agent_basic -> agent_voice,admin_support" in audit

        # Then the SCIM lines: provision a user and a group as an IdP would, read the audit.
        async with asyncio.timeout(WITHIN):
            while not printed[-1].startswith("#   cxone-role-sync audit --user {"):
                line = (await sandbox.stdout.readline()).decode()
                assert line, "the sandbox exited before printing its SCIM lines"
                printed.append(line.rstrip("\n"))
        curls = [line.removeprefix("#   ") for line in printed if "curl -s -X POST" in line]
        assert len(curls) == 2
        shell = await asyncio.create_subprocess_exec(
            "sh", "-c", " && ".join(curls), env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
        )
        answered, _ = await asyncio.wait_for(shell.communicate(), WITHIN)
        assert shell.returncode == 0
        assert json.loads(answered)["displayName"] == "CC Team Leads"
        async with asyncio.timeout(WITHIN):
            audit = ""
            while "team_lead" not in audit:
                code, audit, err = await cli(
                    "audit", "--user", "u-1005", env=env, cwd=tmp_path, within=WITHIN
                )
                assert (code, err) == (0, "")
                await asyncio.sleep(0.5)  # polling a subprocess; the deadline is the timeout
        assert "synced" in audit
        assert "idp.role-changes" in audit

        sandbox.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            assert await sandbox.wait() == 0
    finally:
        if service is not None and service.returncode is None:
            service.kill()
            await service.wait()
        # Whatever is left of the sandbox's group: after a failure the sandbox, and the Tansu
        # broker it started, which SIGKILL to the sandbox alone would leave running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sandbox.pid, signal.SIGKILL)
        await sandbox.wait()
