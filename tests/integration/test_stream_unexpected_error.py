"""An exception nothing maps, escaping the synchronizer for real, never freezes its partition.

The trigger is a CXone answer the client has no mapping for: a GET of one user answered 200 with
JSON nested deeper than the parser takes, which raises RecursionError inside the read.
"""

from __future__ import annotations

from structlog.testing import capture_logs

from consumer.events import Outcome
from consumer.sandbox.feed import AuditReader
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import fast_tuning, make_pipeline, running_service
from tests.integration.workload import (
    EventProducer,
    RoleEvent,
    committed_offsets,
    cxone_roles,
    seed_users,
)

ATTEMPTS = 3


async def test_an_unmapped_response_is_audited_internal_error_and_the_partition_commits(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """The user whose read CXone answers with bottomless JSON is retried, then audited failed
    `internal_error` naming the exception type; the users after it sync and the partition
    commits its end."""
    simulator = simulator_server.simulator
    users = ["u-before", "u-bottomless", "u-after-1", "u-after-2"]
    seed_users(simulator, users)
    simulator.bottomless_users.add("u-bottomless")
    pipeline = await make_pipeline(topics, simulator_server)
    tuning = fast_tuning(internal_error_attempts=ATTEMPTS, internal_error_wait=0.05)
    with capture_logs() as logs:
        async with (
            running_service(pipeline.settings(), tuning=tuning),
            AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit,
            EventProducer(pipeline.bootstrap_servers, pipeline.input_topic) as producer,
        ):
            produced = await producer.send(
                [RoleEvent(f"evt-{user}", user, ("agent_basic",)) for user in users], partition=0
            )
            results = await audit.wait_for_results(len(users), within=60)
    commits = await committed_offsets(
        pipeline.bootstrap_servers, pipeline.group_id, pipeline.input_topic, 1
    )

    by_user = {results[position].data.user_id: results[position].data for position in produced}
    crashed = by_user["u-bottomless"]
    assert (crashed.outcome, crashed.reason) == (Outcome.FAILED, "internal_error")
    assert crashed.detail == "builtins.RecursionError"
    assert crashed.attempts == ATTEMPTS
    assert {user: by_user[user].outcome for user in users if user != "u-bottomless"} == {
        "u-before": Outcome.SYNCED,
        "u-after-1": Outcome.SYNCED,
        "u-after-2": Outcome.SYNCED,
    }
    assert cxone_roles(simulator, "u-after-2") == {"agent_basic"}
    assert commits == {0: max(offset for _, offset in produced) + 1}
    bottomless_reads = [
        r for r in simulator.requests if r.method == "GET" and r.path.endswith("/u-bottomless")
    ]
    assert len(bottomless_reads) == ATTEMPTS
    [final] = [entry for entry in logs if entry["event"] == "stream.internal_error"]
    assert (final["log_level"], final["error"], final["exc_info"]) == (
        "error",
        "RecursionError",
        True,
    )
    assert not [entry for entry in logs if entry["event"] == "dispatch_handler_crashed"]
