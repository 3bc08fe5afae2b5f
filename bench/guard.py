"""`guard`: revocations applied by 1, 2 and 4 service processes against one guard limit.

A policy whose mass-revocation guard allows `max_revocations` per window, a backlog of
`revocations` deactivations of active users spread over the input topic's partitions, and 1, 2
and 4 real service processes (`python -m consumer run`) in one consumer group. The run ends when
every instance reports its guard tripped on `/readyz` (each one gets more revocations than any
share allows); the revocations applied are the PUTs CXone (the simulator) answered with success.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from aiokafka.partitioner import DefaultPartitioner

from bench.pipeline import create_run_topics
from bench.report import Table, cell
from bench.service_process import EXAMPLE_POLICY, ServiceProcess
from bench.simulator_process import SimulatorProcess
from consumer.sandbox.broker import EmbeddedBroker
from consumer.sandbox.feed import produce
from consumer.sandbox.samples import user_id

STOP_WITHIN = 30.0


@dataclass(frozen=True)
class GuardOptions:
    """How the guard measurement is run."""

    instances: tuple[int, ...] = (1, 2, 4)
    max_revocations: int = 10
    window_seconds: int = 300
    # Spread evenly: 15 on each partition, more than the whole limit.
    revocations: int = 60
    partitions: int = 4
    within: float = 120.0


@dataclass(frozen=True)
class GuardResult:
    """One instance count: what the group applied, and how each member saw its share."""

    instances: int
    applied: int
    shares: tuple[str, ...]
    budgets: tuple[int, ...]
    seconds: float


def deactivation(number: int, run: str) -> tuple[bytes, bytes]:
    """A deactivation of sample user `number`: it takes all access away, so the guard counts it."""
    uid = user_id(number)
    event = {
        "specversion": "1.0",
        "id": f"{run}-off-{number}",
        "source": "bench/guard",
        "type": "idp.user.deactivated",
        "subject": uid,
        "data": {"user_id": uid},
    }
    return uid.encode(), json.dumps(event).encode()


def spread_users(options: GuardOptions) -> list[int]:
    """Sample user numbers, as many on each partition (by the producer's own partitioner).

    Every partition gets more revocations than the limit, so an instance trips whatever share of
    it it holds, with or without the group's shares.
    """
    partitioner = DefaultPartitioner()
    ids = list(range(options.partitions))
    per_partition = options.revocations // options.partitions
    chosen: dict[int, list[int]] = {partition: [] for partition in ids}
    number = 0
    while any(len(numbers) < per_partition for numbers in chosen.values()):
        number += 1
        partition = partitioner(user_id(number).encode(), ids, ids)
        if len(chosen[partition]) < per_partition:
            chosen[partition].append(number)
    return sorted(number for numbers in chosen.values() for number in numbers)


def guarded_policy(directory: Path, options: GuardOptions) -> Path:
    """The benchmark's catalog with the guard of this measurement."""
    policy = yaml.safe_load(EXAMPLE_POLICY.read_text())
    policy["mass_revocation_guard"] = {
        "max_revocations": options.max_revocations,
        "window_seconds": options.window_seconds,
    }
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


async def guard_states(services: list[ServiceProcess]) -> list[dict[str, object]]:
    """The `guard` object of each instance's `/readyz` (empty before it answers).

    `tripped` comes from the top-level `guard_tripped`, which older versions served too.
    """
    states: list[dict[str, object]] = []
    async with httpx.AsyncClient(timeout=2.0) as client:
        for service in services:
            state: dict[str, object] = {}
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await client.get(f"http://127.0.0.1:{service.metrics_port}/readyz")
                body = response.json()
                state = {**(body.get("guard") or {}), "tripped": body.get("guard_tripped")}
            states.append(state)
    return states


async def measure(
    broker: EmbeddedBroker, instances: int, options: GuardOptions, policy: Path
) -> GuardResult:
    """Run `instances` services on a backlog of deactivations until every guard tripped."""
    topics = await create_run_topics(broker, f"guard-{instances}", partitions=options.partitions)
    numbers = spread_users(options)
    async with SimulatorProcess(users=max(numbers)) as simulator:
        environment = {
            **topics.environment(),
            **simulator.environment(),
            "POLICY_FILE": str(policy),
        }
        services = [ServiceProcess(environment) for _ in range(instances)]
        started = time.perf_counter()
        try:
            for service in services:
                await service.start()
            await asyncio.gather(*(service.wait_ready(within=120.0) for service in services))
            await _wait_for_shares(services, options)
            await produce(
                topics.bootstrap_servers,
                topics.input,
                [deactivation(number, topics.run) for number in numbers],
            )
            states = await _wait_until_tripped(services, options)
            seconds = time.perf_counter() - started
        finally:
            await asyncio.gather(*(service.stop(within=STOP_WITHIN) for service in services))
        records = await simulator.requests()
    applied = sum(
        1
        for record in records
        if record["method"] == "PUT" and record["status"] is not None and record["status"] < 300
    )
    return GuardResult(
        instances=instances,
        applied=applied,
        shares=tuple(str(state.get("share")) for state in states),
        budgets=tuple(int(str(state.get("budget", 0))) for state in states),
        seconds=seconds,
    )


async def _wait_for_shares(services: list[ServiceProcess], options: GuardOptions) -> None:
    """Wait until the members' shares cover every partition (the group settled)."""
    deadline = time.monotonic() + options.within
    while time.monotonic() < deadline:
        states = await guard_states(services)
        if all(state and "share" not in state for state in states):
            return  # a version without shares: nothing to wait for
        owned = [int(str(state.get("share", "0/1")).split("/")[0]) for state in states]
        if sum(owned) == options.partitions and all(owned):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the members' shares did not settle")


async def _wait_until_tripped(
    services: list[ServiceProcess], options: GuardOptions
) -> list[dict[str, object]]:
    """Wait until every member's guard has tripped; return their last states."""
    deadline = time.monotonic() + options.within
    while True:
        for service in services:
            service.check_alive()
        states = await guard_states(services)
        if all(state.get("tripped") is True for state in states):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every guard tripped: {states}")
        await asyncio.sleep(0.2)


def table(results: list[GuardResult], options: GuardOptions) -> Table:
    """The guard table."""
    made = Table(
        title="guard: revocations applied by a consumer group against one limit",
        description=(
            f"A policy allowing {options.max_revocations} revocations per "
            f"{options.window_seconds} s, {options.revocations} deactivations of active users "
            f"on {options.partitions} partitions, and 1, 2 and 4 `python -m consumer run` "
            "processes in one consumer group, until every instance's /readyz showed its guard "
            "tripped. Applied = PUTs the simulator answered with success."
        ),
        columns=[
            "instances",
            "limit",
            "revocations applied",
            "shares (partitions)",
            "budgets",
            "seconds",
        ],
    )
    for result in results:
        made.add(
            str(result.instances),
            str(options.max_revocations),
            str(result.applied),
            " ".join(result.shares),
            " + ".join(str(budget) for budget in result.budgets),
            cell(result.seconds, 1),
        )
    return made


async def run(broker: EmbeddedBroker, options: GuardOptions) -> list[Table]:
    """Measure each instance count, one after the other."""
    with tempfile.TemporaryDirectory() as directory:
        policy = guarded_policy(Path(directory), options)
        results = [await measure(broker, count, options, policy) for count in options.instances]
    return [table(results, options)]
