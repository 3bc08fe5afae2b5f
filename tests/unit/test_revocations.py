"""Tests of the revocation gate: a tripped guard holds revocations and says how to release them."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from consumer.guard import RevocationGuard
from consumer.revocations import RevocationGate
from tests.conftest import ManualClock
from tests.integration.harness import wait_until


async def test_a_tripped_guard_logs_how_to_release_with_and_without_a_token(
    manual_clock: ManualClock,
) -> None:
    """The guard.tripped line names the authenticated release and, without ADMIN_TOKEN, restart."""
    gate = RevocationGate(RevocationGuard(1, 60.0), clock=manual_clock)
    assert await gate.admit() is False
    with capture_logs() as logs:
        held = asyncio.create_task(gate.admit())
        await wait_until(lambda: bool(logs), within=5, what="the guard to trip")
        assert held.done() is False
        assert gate.release() is True
        assert await held is True
    [tripped] = [entry for entry in logs if entry["event"] == "guard.tripped"]
    assert tripped["log_level"] == "error"
    assert "POST /guard/release" in tripped["action"]
    assert "Authorization: Bearer <ADMIN_TOKEN>" in tripped["action"]
    assert "ADMIN_TOKEN unset" in tripped["action"]
    assert "restart the service" in tripped["action"]
