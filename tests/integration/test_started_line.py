"""`service.started` names the policy in force: its file and the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
import signal

from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import (
    EXAMPLE_POLICY,
    ServiceProcess,
    logged,
    make_pipeline,
    wait_until,
)


async def test_started_line_names_the_policy_file_and_its_digest(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """The started line carries POLICY_FILE and the SHA-256 of exactly that file's bytes."""
    pipeline = await make_pipeline(topics, simulator_server)
    service = ServiceProcess(pipeline.environment).start()
    try:
        await wait_until(
            lambda: bool(logged(service.output, "service.started")),
            within=90,
            what="service.started",
        )
        [started] = logged(service.output, "service.started")
        service.signal(signal.SIGTERM)
        assert await service.wait_async(60) == 0
    finally:
        service.close()
    assert started["policy_file"] == str(EXAMPLE_POLICY)
    assert started["policy_sha256"] == hashlib.sha256(EXAMPLE_POLICY.read_bytes()).hexdigest()
