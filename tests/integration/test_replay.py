"""Replay re-applies a range of the input topic: each user's newest event, audited as replay."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from consumer.errors import ConfigurationError
from consumer.events import Mode, Outcome
from consumer.replay import ReplayRange, parse_offsets, replay
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import ROOT, fast_tuning, make_pipeline


def _event(user_id: str, event_id: str, *roles: str) -> tuple[bytes, bytes]:
    value = {
        "specversion": "1.0",
        "id": event_id,
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "data": {
            "user_id": user_id,
            "roles": [{"role_id": r, "primary": i == 0} for i, r in enumerate(roles)],
        },
    }
    return user_id.encode(), json.dumps(value).encode()


def _puts(server: SimulatorServer) -> list[str]:
    return [r.path for r in server.simulator.requests if r.method == "PUT"]


async def _seeded_pipeline(topics: Topics, server: SimulatorServer):  # type: ignore[no-untyped-def]
    for user in ("u-1", "u-2", "u-3"):
        server.simulator.seed_user(
            user, f"{user}@example.com", given_name="Pat", roles=[("agent_basic", None, True)]
        )
    pipeline = await make_pipeline(topics, server)
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [
            _event("u-1", "e1", "agent_voice"),
            _event("u-2", "e2", "agent_digital"),
            _event("u-1", "e3", "qa_evaluator"),
            (b"u-3", b"not json"),
            _event("u-3", "e5", "agent_basic"),
        ],
    )
    return pipeline


async def test_replay_from_beginning_applies_newest_per_user_and_audits(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """Replaying everything writes each user's newest roles and audits every valid record."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    lines: list[str] = []
    summary = await replay(
        pipeline.settings(),
        ReplayRange(from_beginning=True),
        dry_run=False,
        echo=lines.append,
        tuning=fast_tuning(),
    )
    assert summary.records == 5
    assert summary.invalid == 1
    sim = simulator_server.simulator
    assert [r["value"] for r in sim.get_user("u-1")["roles"]] == ["qa_evaluator"]
    assert [r["value"] for r in sim.get_user("u-2")["roles"]] == ["agent_digital"]
    assert sorted(_puts(simulator_server)) == ["/scim/v2/Users/u-1", "/scim/v2/Users/u-2"]
    async with AuditReader(pipeline.bootstrap_servers, pipeline.audit_topic) as audit:
        results = await audit.wait_for_results(4, within=30)
    by_event = {e.data.event_id: e.data for e in results.values()}
    assert by_event["e1"].outcome is Outcome.SUPERSEDED
    assert by_event["e1"].detail == "superseded_by=e3"
    assert by_event["e3"].outcome is Outcome.SYNCED
    assert by_event["e5"].outcome is Outcome.UNCHANGED
    assert {e.data.mode for e in results.values()} == {Mode.REPLAY}
    assert "u-1: synced +qa_evaluator -agent_basic" in lines


async def test_replay_dry_run_prints_the_diff_and_writes_nothing(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A dry-run replay prints each user's diff and sends no PUT."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    lines: list[str] = []
    summary = await replay(
        pipeline.settings(), ReplayRange(from_beginning=True), dry_run=True, echo=lines.append
    )
    assert _puts(simulator_server) == []
    assert summary.count(Outcome.DRY_RUN) == 2
    assert "u-1: dry_run +qa_evaluator -agent_basic" in lines
    assert "u-2: dry_run +agent_digital -agent_basic" in lines


async def test_replay_from_offsets_skips_earlier_records(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """`--offsets 0:2` replays from offset 2 on, so u-2's event at offset 1 is not applied."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    summary = await replay(
        pipeline.settings(),
        ReplayRange(offsets=parse_offsets("0:2")),
        dry_run=True,
        echo=lambda _: None,
    )
    assert summary.records == 3
    assert {r.user_id for r in summary.results} == {"u-1", "u-3"}


async def test_replay_since_a_future_time_replays_nothing(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """`--since` after the last record finds nothing to replay, and since the past finds all."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    future = await replay(
        pipeline.settings(),
        ReplayRange(since=datetime.now(UTC) + timedelta(hours=1)),
        dry_run=True,
        echo=lambda _: None,
    )
    past = await replay(
        pipeline.settings(),
        ReplayRange(since=datetime.now(UTC) - timedelta(hours=1)),
        dry_run=True,
        echo=lambda _: None,
    )
    assert future.records == 0
    assert past.records == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "'0' is not PARTITION:OFFSET"),
        ("a:1", "'a:1' is not PARTITION:OFFSET"),
        ("0:1,0:2", "partition 0 is given twice"),
        ("", "no PARTITION:OFFSET given"),
    ],
)
def test_bad_offsets_are_refused_with_a_reason(text: str, message: str) -> None:
    """A malformed `--offsets` value is refused with a message naming the problem."""
    with pytest.raises(ConfigurationError, match=message):
        parse_offsets(text)


def test_replay_needs_exactly_one_starting_point() -> None:
    """Giving no start, or two, is refused."""
    with pytest.raises(ConfigurationError, match="exactly one"):
        ReplayRange()
    with pytest.raises(ConfigurationError, match="exactly one"):
        ReplayRange(from_beginning=True, offsets={0: 1})


async def test_replay_command_dry_run_over_the_cli(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """`cxone-role-sync replay --from-beginning --dry-run` prints the diff and a summary."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    import asyncio

    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "consumer", "replay", "--from-beginning", "--dry-run"],
        env={**pipeline.environment, "LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "u-1: dry_run +qa_evaluator -agent_basic" in completed.stdout
    assert "read 5 records (1 invalid, skipped)" in completed.stdout
    assert _puts(simulator_server) == []
