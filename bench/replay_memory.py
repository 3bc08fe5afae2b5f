"""Replay's peak memory: `cxone-role-sync replay --from-beginning` over a large range.

The range is `events` role changes about `users` users, produced to a fresh topic; the replay
runs as the operator runs it (a child process, its output to a file), against a simulator in a
process of its own, and writes every user. Its peak resident memory is the kernel's account of
that one child (`wait4`'s maximum RSS), so nothing else of the bench counts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from bench.pipeline import create_run_topics
from bench.report import Table
from bench.service_process import EXAMPLE_POLICY, ROOT
from bench.simulator_process import SimulatorProcess
from bench.workload import role_changes
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import produce

TIME_LIMIT_SECONDS = 900.0


@dataclass(frozen=True)
class ReplayMemoryOptions:
    """The range replayed."""

    events: int = 50_000
    users: int = 1_000
    partitions: int = 3


@dataclass
class ReplayMemoryRun:
    """What one replay took."""

    peak_kib: int
    seconds: float
    exit_code: int
    summary: str


def _replay_child(environment: dict[str, str]) -> ReplayMemoryRun:
    """Run the replay command and account for its own peak memory (blocking)."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "consumer", "replay", "--from-beginning"],
            env=environment,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            child.returncode = 0  # reaped above; Popen must not wait for it again
        seconds = time.perf_counter() - started
        output.seek(0)
        lines = output.read().decode(errors="replace").splitlines()
    summary = next((line.strip() for line in lines if line.startswith("read ")), "no summary")
    return ReplayMemoryRun(
        peak_kib=usage.ru_maxrss,
        seconds=seconds,
        exit_code=os.waitstatus_to_exitcode(status),
        summary=summary,
    )


async def measure(broker: EmbeddedBroker, options: ReplayMemoryOptions) -> ReplayMemoryRun:
    """Produce the range, then replay it once."""
    topics = await create_run_topics(broker, "replay-memory", partitions=options.partitions)
    async with SimulatorProcess(users=options.users) as simulator:
        await produce(
            topics.bootstrap_servers,
            topics.input,
            role_changes(0, options.events, options.users, run=topics.run),
        )
        environment = {
            **os.environ,
            **topics.environment(),
            **simulator.environment(),
            "POLICY_FILE": str(EXAMPLE_POLICY),
            "LOG_LEVEL": "WARNING",
        }
        return await asyncio.wait_for(
            asyncio.to_thread(_replay_child, environment), TIME_LIMIT_SECONDS
        )


def table(run: ReplayMemoryRun, options: ReplayMemoryOptions) -> Table:
    """The replay's peak memory and how long it took."""
    result = Table(
        title="Replay memory",
        description=(
            f"`replay --from-beginning` over {options.events:,} events about {options.users:,} "
            f"users ({options.partitions} partitions), writing every user to the simulator: "
            "the replay process's peak resident memory."
        ),
        columns=("events", "users", "peak RSS (MiB)", "KiB per event", "seconds", "exit"),
    )
    result.add(
        f"{options.events:,}",
        f"{options.users:,}",
        f"{run.peak_kib / 1024:,.0f}",
        f"{run.peak_kib / options.events:.1f}",
        f"{run.seconds:.1f}",
        str(run.exit_code),
    )
    result.notes.append(f"The replay's summary: {run.summary}")
    return result


async def run(broker: EmbeddedBroker, options: ReplayMemoryOptions) -> list[Table]:
    """The part: one replay of the range."""
    return [table(await measure(broker, options), options)]
