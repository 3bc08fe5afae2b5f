"""`python -m consumer.sandbox.serve`: the CXone simulator alone, seeded, until SIGTERM.

This is what docker compose's `sandbox` profile runs in the project's own image. It listens on
127.0.0.1 only (the admin API has no authentication); the consumer shares its network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from consumer.demo import DEMO_CREDENTIALS
from consumer.sandbox.samples import seed_users
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator
from consumer.signals import run_until_signalled


async def serve(*, port: int, users: int, latency_ms: float, stop: asyncio.Event) -> None:
    """Serve a seeded simulator on 127.0.0.1:`port` until `stop` is set."""
    simulator = CxoneSimulator(DEMO_CREDENTIALS)
    seed_users(simulator, users)
    simulator.set_latency(latency_ms / 1000, jitter_seconds=latency_ms / 1000)
    async with SimulatorServer(simulator, port=port) as server:
        print(f"CXone simulator on {server.scim_base_url} with {users} seeded users", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m consumer.sandbox.serve", description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    parser.add_argument("--users", type=int, default=40, help="agents to seed (default 40)")
    parser.add_argument(
        "--latency-ms", type=float, default=10.0, help="added latency per request (default 10)"
    )
    options = parser.parse_args(argv)

    run_until_signalled(
        lambda stop: serve(
            port=options.port, users=options.users, latency_ms=options.latency_ms, stop=stop
        )
    )


if __name__ == "__main__":
    main()
