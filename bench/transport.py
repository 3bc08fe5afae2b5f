"""`transport`: the SCIM client's own CPU per GET+PUT pair, aiohttp vs httpx transport.

The client is the service's own stack (`open_cxone`: httpx client, token provider, adaptive
rate limiter without a ceiling, circuit breaker, `ScimClient`), built from `Settings`. Workers run
`ScimClient.update_user` (the real read-modify-write) with a plan that flips the primary role
between agent_voice and agent_digital. The simulator serves from another process, so
`time.process_time()` of this process counts only the client side: the bench process does nothing
else while it measures.

Two reference rows, which are not the service, bound what any change to it can win: the same
GET and PUT made with aiohttp's own `ClientSession` (the fastest transport without httpx on
top), and httpx's client layer alone over a transport that answers from memory (no socket, no
parsing). The service keeps httpx's API over aiohttp, so its cost per pair is about their sum
plus the adapter between them.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx

from bench.report import Table, cell
from bench.simulator_process import SimulatorProcess
from bench.stats import cpu_seconds
from consumer.observability.http import HealthState
from consumer.sandbox.samples import user_id
from consumer.scim import mapping
from consumer.scim.auth import token_provider
from consumer.scim.client import SCIM_MEDIA_TYPE, ScimClient, ScimUser
from consumer.service import Tuning, open_cxone
from consumer.settings import HttpTransport, load_settings

ROOT = Path(__file__).resolve().parents[1]
# The example catalog without the guard: the workload's role swaps all take some access away.
EXAMPLE_POLICY = ROOT / "bench" / "workload-policy.yaml"


@dataclass(frozen=True)
class TransportOptions:
    """How big the transport measurement is."""

    pairs: int = 1000
    warmup: int = 300
    repeat: int = 3
    workers: tuple[int, ...] = (8, 64)
    transports: tuple[HttpTransport, ...] = (HttpTransport.AIOHTTP, HttpTransport.HTTPX)
    users: int = 256
    latency_ms: float = 0.0


AIOHTTP_ALONE = "reference: aiohttp alone"
HTTPX_LAYER = "reference: httpx layer, no network"
REFERENCES = (AIOHTTP_ALONE, HTTPX_LAYER)
Pair = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class TransportResult:
    """One transport (or a reference) at one concurrency."""

    transport: HttpTransport | str
    workers: int
    pairs: int
    client_cpu_seconds: float
    wall_seconds: float
    simulator_cpu_seconds: float

    @property
    def cpu_ms_per_pair(self) -> float:
        """Client CPU per GET+PUT pair, in milliseconds."""
        return self.client_cpu_seconds / self.pairs * 1000

    @property
    def pairs_per_second(self) -> float:
        """Pairs completed per wall-clock second."""
        return self.pairs / self.wall_seconds


async def flip_role(user: ScimUser) -> bytes:
    """The plan: make agent_voice primary, or agent_digital if the user holds agent_voice."""
    held = mapping.role_values(user.document)
    role = "agent_digital" if held[:1] == ("agent_voice",) else "agent_voice"
    desired = [mapping.DesiredRole(value=role, display=None, primary=True)]
    active = mapping.is_active(user.document)
    return mapping.encode(mapping.with_roles(user.document, desired, active=active))


async def _run_pairs(scim: ScimClient, *, workers: int, users: int, pairs: int) -> None:
    """Run `pairs` read-modify-writes on `workers` tasks; each worker keeps to its own users."""

    async def pair(user: str) -> None:
        outcome = await scim.update_user(user, flip_role)
        if outcome.status != 200:
            raise RuntimeError(f"PUT answered {outcome.status}")

    await _run(pair, workers=workers, users=users, pairs=pairs)


async def _run(pair: Pair, *, workers: int, users: int, pairs: int) -> None:
    """Run `pairs` calls of `pair` on `workers` tasks; each worker keeps to its own users."""
    remaining = pairs

    async def worker(index: int) -> None:
        nonlocal remaining
        mine = [user_id(number) for number in range(index + 1, users + 1, workers)]
        turn = 0
        while remaining > 0:
            remaining -= 1
            await pair(mine[turn % len(mine)])
            turn += 1

    await asyncio.gather(*(worker(index) for index in range(workers)))


async def measure(
    simulator: SimulatorProcess, transport: HttpTransport, workers: int, options: TransportOptions
) -> TransportResult:
    """Warm up, then time `options.pairs` pairs of one transport at one concurrency."""
    settings = load_settings(
        **{name.lower(): value for name, value in simulator.environment().items()},
        policy_file=EXAMPLE_POLICY,
        cxone_http_transport=transport,
        sync_max_concurrency=workers,
    )
    async with AsyncExitStack() as stack:
        cxone = await open_cxone(settings, stack, tuning=Tuning(), health=HealthState())
        await _run_pairs(cxone.scim, workers=workers, users=options.users, pairs=options.warmup)
        simulator_before = cpu_seconds(simulator.pid)
        wall_before, cpu_before = time.perf_counter(), time.process_time()
        await _run_pairs(cxone.scim, workers=workers, users=options.users, pairs=options.pairs)
        cpu_after, wall_after = time.process_time(), time.perf_counter()
        simulator_after = cpu_seconds(simulator.pid)
    await simulator.clear_requests()
    return TransportResult(
        transport=transport,
        workers=workers,
        pairs=options.pairs,
        client_cpu_seconds=cpu_after - cpu_before,
        wall_seconds=wall_after - wall_before,
        simulator_cpu_seconds=simulator_after - simulator_before,
    )


def _flipped(document: dict[str, object]) -> bytes:
    """The reference rows' plan: the same role flip as `flip_role`, on a plain dict."""
    roles = document.get("roles")
    first = roles[0] if isinstance(roles, list) and roles else {}
    held = first.get("value") if isinstance(first, dict) else None
    role = "agent_digital" if held == "agent_voice" else "agent_voice"
    return json.dumps({**document, "roles": [{"value": role, "primary": True}]}).encode()


async def _bearer(simulator: SimulatorProcess) -> str:
    """A token from the simulator, fetched the way the service does (its own token provider)."""
    settings = load_settings(
        **{name.lower(): value for name, value in simulator.environment().items()},
        policy_file=EXAMPLE_POLICY,
    )
    async with httpx.AsyncClient() as http:
        return f"Bearer {await token_provider(settings, http).token()}"


class _Canned(httpx.AsyncBaseTransport):
    """Answers every request from memory with one user document: httpx's layer, nothing else."""

    def __init__(self, document: bytes) -> None:
        self._document = document

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {"content-type": SCIM_MEDIA_TYPE, "etag": 'W/"1"'}
        return httpx.Response(200, headers=headers, content=self._document)


async def measure_reference(
    simulator: SimulatorProcess, reference: str, workers: int, options: TransportOptions
) -> TransportResult:
    """Time `options.pairs` GET+PUT pairs of a reference client (see the module's text)."""
    authorization = await _bearer(simulator)
    base = simulator.scim_base_url.rstrip("/") + "/Users/"
    headers = {"Authorization": authorization, "Accept": SCIM_MEDIA_TYPE}
    put_headers = {**headers, "Content-Type": SCIM_MEDIA_TYPE}
    async with AsyncExitStack() as stack:
        if reference == AIOHTTP_ALONE:
            session = await stack.enter_async_context(aiohttp.ClientSession())

            async def pair(user: str) -> None:
                async with session.get(base + user, headers=headers) as response:
                    document = await response.json(content_type=None)
                async with session.put(
                    base + user, data=_flipped(document), headers=put_headers
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"PUT answered {response.status}")
        else:
            async with (
                aiohttp.ClientSession() as session,
                session.get(base + user_id(1), headers=headers) as response,
            ):
                served = await response.read()
            client = await stack.enter_async_context(httpx.AsyncClient(transport=_Canned(served)))

            async def pair(user: str) -> None:
                document = (await client.get(base + user, headers=headers)).json()
                response = await client.put(
                    base + user, content=_flipped(document), headers=put_headers
                )
                if response.status_code != 200:
                    raise RuntimeError(f"PUT answered {response.status_code}")

        await _run(pair, workers=workers, users=options.users, pairs=options.warmup)
        simulator_before = cpu_seconds(simulator.pid)
        wall_before, cpu_before = time.perf_counter(), time.process_time()
        await _run(pair, workers=workers, users=options.users, pairs=options.pairs)
        cpu_after, wall_after = time.process_time(), time.perf_counter()
        simulator_after = cpu_seconds(simulator.pid)
    await simulator.clear_requests()
    return TransportResult(
        transport=reference,
        workers=workers,
        pairs=options.pairs,
        client_cpu_seconds=cpu_after - cpu_before,
        wall_seconds=wall_after - wall_before,
        simulator_cpu_seconds=simulator_after - simulator_before,
    )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _range(values: list[float], digits: int) -> str:
    return f"{cell(min(values), digits)}-{cell(max(values), digits)}" if values else "-"


async def run(options: TransportOptions) -> Table:
    """Measure every transport at every concurrency against one simulator process.

    The configurations take turns, `repeat` rounds of them, so a slow spell of the machine
    spreads over all of them rather than falling on one.
    """
    table = Table(
        title="transport: SCIM client CPU per GET+PUT pair",
        description=(
            f"`ScimClient.update_user` (GET, flip the primary role, PUT the whole user) through "
            f"the service's own client stack: per configuration {options.repeat} timed runs "
            f"of {options.pairs:,} pairs, each after {options.warmup:,} warm-up pairs on a "
            "fresh client, against the simulator in a separate process "
            f"({options.users} seeded users, {options.latency_ms:g} ms injected latency). "
            "Client CPU is `time.process_time()` of the bench process around the timed pairs; "
            "simulator CPU is read from /proc for the same interval. Medians of the runs, "
            "with the range of the runs beside them."
        ),
        columns=[
            "transport",
            "workers",
            "client CPU ms/pair",
            "(range)",
            "pairs/s",
            "(range)",
            "client CPU % of one core",
            "simulator CPU ms/pair",
            "simulator CPU % of one core",
        ],
    )
    clients: list[HttpTransport | str] = [*options.transports, *REFERENCES]
    configurations = [(client, workers) for workers in options.workers for client in clients]
    results: dict[tuple[HttpTransport | str, int], list[TransportResult]] = {
        configuration: [] for configuration in configurations
    }
    async with SimulatorProcess(users=options.users, latency_ms=options.latency_ms) as simulator:
        for _ in range(options.repeat):
            for client, workers in configurations:
                if isinstance(client, HttpTransport):
                    result = await measure(simulator, client, workers, options)
                else:
                    result = await measure_reference(simulator, client, workers, options)
                results[(client, workers)].append(result)
    for (client, workers), runs in results.items():
        cpu = [result.cpu_ms_per_pair for result in runs]
        rate = [result.pairs_per_second for result in runs]
        table.add(
            client.value if isinstance(client, HttpTransport) else client,
            str(workers),
            cell(_median(cpu), 2),
            _range(cpu, 2),
            cell(_median(rate), 0),
            _range(rate, 0),
            cell(_median([100 * r.client_cpu_seconds / r.wall_seconds for r in runs]), 0),
            cell(_median([r.simulator_cpu_seconds / r.pairs * 1000 for r in runs]), 2),
            cell(_median([100 * r.simulator_cpu_seconds / r.wall_seconds for r in runs]), 0),
        )
    table.notes.append(
        "When the simulator runs near 100% of a core, pairs/s is the simulator's limit, not "
        "the client's; client CPU per pair is the number to compare."
    )
    table.notes.append(
        "The reference rows are not the service: the same GET and PUT made with aiohttp's own "
        "`ClientSession`, and httpx's client layer over a transport that answers from memory "
        "(no socket; its simulator columns are idle). Together they are about the least a "
        "GET+PUT pair can cost while the service keeps httpx's API over aiohttp."
    )
    return table
