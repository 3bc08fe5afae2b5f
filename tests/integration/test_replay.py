"""Replay re-applies a range of the input topic: each user's newest event, audited as replay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from consumer.approvals import approval_signature
from consumer.errors import ConfigurationError
from consumer.events import Mode, Outcome
from consumer.progress import ReplayProgress
from consumer.replay import ReplayRange, parse_offsets, replay
from consumer.sandbox.feed import AuditReader, produce
from consumer.sandbox.server import SimulatorServer
from tests.conftest import Topics
from tests.integration.harness import ROOT, Pipeline, fast_tuning, make_pipeline

pytestmark = pytest.mark.core
"""Runs on every broker of the session: Kafka 4.x, Tansu and Kafka 3.9."""


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
    # The counts add up: every valid record has a result, the superseded one included.
    assert summary.count(Outcome.SUPERSEDED) == 1
    assert len(summary.results) == summary.records - summary.invalid == 4
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
    assert "read 5 records (1 invalid, skipped), 3 users" in completed.stdout
    assert "  total           4" in completed.stdout
    assert _puts(simulator_server) == []
    # Not a terminal: progress comes as plain log lines on stderr, never redrawn in place.
    assert "\r" not in completed.stderr


async def _run_cli(pipeline: Pipeline, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `cxone-role-sync replay ARGUMENTS` against the pipeline's broker and simulator."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "consumer", "replay", *arguments],
        env={**pipeline.environment, "LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_replay_refuses_a_record_whose_key_is_not_its_user(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """A record keyed for u-2 that changes u-1 is invalid in replay, as in the live path."""
    simulator_server.simulator.seed_user(
        "u-1", "u-1@example.com", roles=[("agent_basic", None, True)]
    )
    pipeline = await make_pipeline(topics, simulator_server)
    _, value = _event("u-1", "e-forged", "agent_voice")
    await produce(pipeline.bootstrap_servers, pipeline.input_topic, [(b"u-2", value)])
    summary = await replay(
        pipeline.settings(), ReplayRange(from_beginning=True), dry_run=False, echo=lambda _: None
    )
    assert (summary.records, summary.invalid, summary.results) == (1, 1, [])
    assert _puts(simulator_server) == []


async def _revocations(topics: Topics, server: SimulatorServer) -> Pipeline:
    """Three users who each lose every role: three revocations."""
    for user in ("u-1", "u-2", "u-3"):
        server.simulator.seed_user(user, f"{user}@example.com", roles=[("agent_basic", None, True)])
    pipeline = await make_pipeline(topics, server)
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [_event(user, f"r-{user}") for user in ("u-1", "u-2", "u-3")],
    )
    return pipeline


async def test_a_tripped_guard_stops_the_replay_with_exit_code_3(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With --max-revocations 1, one of three revocations is written and the replay exits 3."""
    pipeline = await _revocations(topics, simulator_server)
    completed = await _run_cli(pipeline, "--from-beginning", "--max-revocations", "1")
    assert completed.returncode == 3, completed.stdout + completed.stderr
    [message] = [line for line in completed.stdout.splitlines() if "guard held" in line]
    assert "held 2 revocation(s) after 1 in this run" in message
    assert "--max-revocations N" in message
    assert "Check the IdP" in message
    assert len(_puts(simulator_server)) == 1


async def test_a_higher_max_revocations_lets_the_replay_finish(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With --max-revocations 3 the same replay writes all three and exits 0."""
    pipeline = await _revocations(topics, simulator_server)
    completed = await _run_cli(pipeline, "--from-beginning", "--max-revocations", "3")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert sorted(_puts(simulator_server)) == [f"/scim/v2/Users/u-{n}" for n in (1, 2, 3)]


async def test_max_writes_refuses_to_write_more_than_the_dry_count_allows(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """--max-writes 1 with two users to write writes nothing and exits 4; 2 writes both."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    refused = await _run_cli(pipeline, "--from-beginning", "--max-writes", "1")
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "it would write 2 users, more than --max-writes 1" in refused.stdout
    assert _puts(simulator_server) == []
    allowed = await _run_cli(pipeline, "--from-beginning", "--max-writes", "2")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert sorted(_puts(simulator_server)) == ["/scim/v2/Users/u-1", "/scim/v2/Users/u-2"]


async def test_a_failed_user_makes_the_replay_exit_non_zero(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """An event for a user CXone does not have fails, and the replay exits 1."""
    pipeline = await make_pipeline(topics, simulator_server)
    await produce(
        pipeline.bootstrap_servers, pipeline.input_topic, [_event("u-ghost", "g1", "agent_basic")]
    )
    completed = await _run_cli(pipeline, "--from-beginning")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "u-ghost: failed (user_not_found)" in completed.stdout


async def test_replay_ends_at_the_offsets_it_started_with_under_steady_traffic(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """While another producer keeps writing, replay still ends and applies only the range."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    stop = asyncio.Event()

    async def traffic() -> int:
        sent = 0
        while not stop.is_set():
            batch = [_event("u-traffic", f"t-{sent + i}", "agent_basic") for i in range(5)]
            await produce(pipeline.bootstrap_servers, pipeline.input_topic, batch)
            sent += len(batch)
        return sent

    producing = asyncio.create_task(traffic())
    try:
        summary = await asyncio.wait_for(
            replay(
                pipeline.settings(),
                ReplayRange(from_beginning=True),
                dry_run=True,
                echo=lambda _: None,
            ),
            timeout=60,
        )
        still_producing = not producing.done()
    finally:
        stop.set()
        sent = await producing
    assert still_producing
    assert summary.records < 5 + sent
    assert {"u-1", "u-2", "u-3"} <= {r.user_id for r in summary.results}


async def test_signed_approvals_are_checked_with_the_configured_key(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With APPROVAL_HMAC_KEY, a valid signature approves; a wrong or expired one is refused."""
    key = "replay-approval-key"
    for user in ("u-1", "u-2", "u-3"):
        simulator_server.simulator.seed_user(
            user, f"{user}@example.com", roles=[("agent_basic", None, True)]
        )
    pipeline = await make_pipeline(topics, simulator_server)

    def approved(user: str, signature: str, **extra: str) -> tuple[bytes, bytes]:
        record_key, value = _event(user, f"a-{user}", "agent_basic", "admin_support")
        document = json.loads(value)
        document["data"]["approval"] = {
            "ticket": "CHG-7",
            "approved_by": "secops",
            "signature": signature,
            **extra,
        }
        return record_key, json.dumps(document).encode()

    def signature(user: str, expires_at: datetime | None = None) -> str:
        return approval_signature(
            key.encode(),
            user_id=user,
            privileged_role_ids=["admin_support"],
            ticket="CHG-7",
            approved_by="secops",
            expires_at=expires_at,
        )

    good = signature("u-1")
    await produce(
        pipeline.bootstrap_servers,
        pipeline.input_topic,
        [
            approved("u-1", good),
            approved("u-2", good),  # signed for u-1, not for u-2
            approved(
                "u-3",
                signature("u-3", datetime(2020, 1, 1, tzinfo=UTC)),
                expires_at="2020-01-01T00:00:00Z",
            ),
        ],
    )
    summary = await replay(
        pipeline.settings(approval_hmac_key=key),
        ReplayRange(from_beginning=True),
        dry_run=False,
        echo=lambda _: None,
    )
    outcomes = {r.user_id: (r.outcome, r.reason, r.escalation) for r in summary.results}
    assert outcomes == {
        "u-1": (Outcome.SYNCED, None, False),
        "u-2": (Outcome.REJECTED, "approval_invalid", True),
        "u-3": (Outcome.REJECTED, "approval_expired", True),
    }
    assert _puts(simulator_server) == ["/scim/v2/Users/u-1"]


class _ProducesDuringRead(ReplayProgress):
    """Progress that, at the first record read, writes a newer event for u-1 to the topic."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(interactive=False)
        self._pipeline = pipeline
        self._done = False

    def read(self, count: int = 1) -> None:
        super().read(count)
        if self._done:
            return
        self._done = True
        late = _event("u-1", "e-late", "agent_digital")
        # Its own thread and event loop: the record is on the topic before the read goes on.
        writer = threading.Thread(
            target=asyncio.run,
            args=(produce(self._pipeline.bootstrap_servers, self._pipeline.input_topic, [late]),),
        )
        writer.start()
        writer.join(timeout=60)


async def test_a_user_with_an_event_past_the_range_is_left_to_the_live_consumer(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """u-1 gets an event while replay reads: replay writes nothing to u-1, audits it superseded."""
    pipeline = await _seeded_pipeline(topics, simulator_server)
    summary = await replay(
        pipeline.settings(),
        ReplayRange(from_beginning=True),
        dry_run=False,
        echo=lambda _: None,
        progress=_ProducesDuringRead(pipeline),
    )
    assert summary.records == 5
    by_event = {r.event_id: r for r in summary.results}
    assert {by_event[e].outcome for e in ("e1", "e3")} == {Outcome.SUPERSEDED}
    assert {by_event[e].detail for e in ("e1", "e3")} == {"superseded_by=e-late"}
    assert "e-late" not in by_event
    assert _puts(simulator_server) == ["/scim/v2/Users/u-2"]


async def test_a_range_longer_than_the_window_is_applied_window_by_window(
    topics: Topics, simulator_server: SimulatorServer
) -> None:
    """With a 4-event window, 24 events of 3 users end in each user's newest roles, every event
    audited once, in order: a user is written once per window holding their events."""
    roles = ("agent_voice", "agent_digital", "qa_evaluator", "reporting_analyst")
    users = ("u-1", "u-2", "u-3")
    for user in users:
        simulator_server.simulator.seed_user(
            user, f"{user}@example.com", roles=[("agent_basic", None, True)]
        )
    pipeline = await make_pipeline(topics, simulator_server)
    events = [
        _event(users[n % 3], f"w{n}", roles[(n // 3) % len(roles)], roles[(n // 3 + 1) % 4])
        for n in range(24)
    ]
    await produce(pipeline.bootstrap_servers, pipeline.input_topic, events)

    summary = await replay(
        pipeline.settings(),
        ReplayRange(from_beginning=True),
        dry_run=False,
        echo=lambda _: None,
        tuning=fast_tuning(),
        window=4,
    )

    sim = simulator_server.simulator
    newest = {users[n % 3]: n for n in range(24)}
    assert {user: [r["value"] for r in sim.get_user(user)["roles"]] for user in users} == {
        user: [roles[(n // 3) % 4], roles[(n // 3 + 1) % 4]] for user, n in newest.items()
    }
    assert sorted(r.event_id for r in summary.results) == sorted(f"w{n}" for n in range(24))
    assert summary.total == summary.records == 24
    # More than one write per user (one per window), fewer than one per event.
    assert len(users) < len(_puts(simulator_server)) < 24
    assert summary.exit_code == 0
