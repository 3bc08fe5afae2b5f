"""The `demo` and `sandbox` commands, run as a user would run them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import httpx

from consumer.sandbox.broker import kafka_answers
from tests.integration.harness import ROOT


def _environment() -> dict[str, str]:
    # Settings of the machine running the tests must not leak into the commands under test.
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KAFKA_", "CXONE_", "SYNC_", "POLICY_", "WEBHOOK_"))
    }


def test_demo_feeds_every_kind_of_event_and_exits_zero() -> None:
    """`demo` runs the sandbox end to end, prints the outcome summary and exits 0."""
    completed = subprocess.run(
        [sys.executable, "-m", "consumer", "demo"],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "59 events in, 59 audit results out" in out
    for line in ("synced", "unchanged", "rejected", "failed", "invalid", "superseded"):
        assert f"  {line}" in out
    assert "unknown_role  ESCALATION" in out
    assert "approval_required  ESCALATION" in out
    assert "sod_conflict" in out
    assert "user_not_found" in out
    assert "CHANGED" not in out


async def test_sandbox_prints_a_working_environment_and_stops_on_ctrl_c() -> None:
    """`sandbox` prints exports that reach a live broker and simulator, and exits 0 on SIGINT."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        "sandbox",
        cwd=ROOT,
        env=_environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        exports: dict[str, str] = {}
        async with asyncio.timeout(60):
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, "the sandbox exited before printing its environment"
                if line.startswith("export "):
                    name, _, value = line.removeprefix("export ").strip().partition("=")
                    exports[name] = value
                if line.startswith("# simulator admin API"):
                    break
        host, _, port = exports["KAFKA_BOOTSTRAP_SERVERS"].partition(":")
        assert await asyncio.to_thread(kafka_answers, host, int(port))
        async with httpx.AsyncClient() as client:
            token = await client.post(
                exports["CXONE_TOKEN_URL"],
                data={
                    "grant_type": "password",
                    "username": exports["CXONE_ACCESS_KEY_ID"],
                    "password": exports["CXONE_ACCESS_KEY_SECRET"],
                },
                auth=(exports["CXONE_CLIENT_ID"], exports["CXONE_CLIENT_SECRET"]),
            )
            assert token.status_code == 200
            user = await client.get(
                exports["CXONE_SCIM_BASE_URL"] + "/Users/u-1001",
                headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            )
        assert user.status_code == 200
        assert user.json()["roles"][0]["value"] == "agent_basic"
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
