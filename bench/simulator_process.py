"""The CXone simulator in a process of its own, so its CPU never counts against the client.

Run as `python -m bench.simulator_process`: it seeds users, serves on a free 127.0.0.1 port,
prints one JSON line with its addresses, and serves until its stdin closes (its parent went
away), SIGTERM or SIGINT, or `--max-seconds` pass. `SimulatorProcess` starts and drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from consumer.demo import DEMO_CREDENTIALS
from consumer.lifecycle import StartStop
from consumer.sandbox.samples import seed_users
from consumer.sandbox.server import SimulatorServer
from consumer.sandbox.simulator import CxoneSimulator

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0


class SimulatorProcess(StartStop):
    """Async context manager: a simulator child process, and its admin API at `/_sim/`."""

    def __init__(
        self,
        *,
        users: int,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        max_seconds: float = 3600.0,
    ) -> None:
        self._arguments = [
            f"--users={users}",
            f"--latency-ms={latency_ms}",
            f"--jitter-ms={jitter_ms}",
            f"--max-seconds={max_seconds}",
        ]
        self._process: asyncio.subprocess.Process | None = None
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._admin: httpx.AsyncClient | None = None
        self.addresses: dict[str, str] = {}

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._process is not None
        return self._process.pid

    @property
    def base_url(self) -> str:
        """The simulator's root URL."""
        return self.addresses["base_url"]

    @property
    def scim_base_url(self) -> str:
        """`CXONE_SCIM_BASE_URL` for this simulator."""
        return self.addresses["scim_base_url"]

    @property
    def token_url(self) -> str:
        """`CXONE_TOKEN_URL` for this simulator."""
        return self.addresses["token_url"]

    def environment(self) -> dict[str, str]:
        """The CXONE_* variables that point the service at this simulator."""
        return {
            "CXONE_SCIM_BASE_URL": self.scim_base_url,
            "CXONE_TOKEN_URL": self.token_url,
            "CXONE_CLIENT_ID": DEMO_CREDENTIALS.client_id,
            "CXONE_CLIENT_SECRET": DEMO_CREDENTIALS.client_secret,
            "CXONE_ACCESS_KEY_ID": DEMO_CREDENTIALS.access_key_id,
            "CXONE_ACCESS_KEY_SECRET": DEMO_CREDENTIALS.access_key_secret,
        }

    async def start(self) -> None:
        """Start the child and wait for its addresses line."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.simulator_process",
            *self._arguments,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._errors,
        )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT_SECONDS)
        except TimeoutError:
            await self.stop()
            raise RuntimeError("the simulator process did not start in time") from None
        if not line:
            await self.stop()
            raise RuntimeError(f"the simulator process exited at start-up:\n{self.errors()}")
        self.addresses = json.loads(line)
        self._admin = httpx.AsyncClient(base_url=self.base_url + "/_sim/", timeout=30.0)

    def errors(self) -> str:
        """What the child wrote to stderr so far."""
        self._errors.seek(0)
        return self._errors.read().decode(errors="replace")[-4000:]

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the admin API; returns the decoded JSON answer, or None for 204."""
        assert self._admin is not None
        response = await self._admin.request(method, path, json=body)
        response.raise_for_status()
        return None if response.status_code == 204 else response.json()

    async def set_rate_limit(self, per_minute: float, *, burst: int = 1) -> None:
        """Throttle SCIM requests with the simulator's token bucket."""
        await self.admin("POST", "rate-limit", {"per_minute": per_minute, "burst": burst})

    async def requests(self) -> list[dict[str, Any]]:
        """The simulator's request log (bodies included)."""
        answer: list[dict[str, Any]] = await self.admin("GET", "requests")
        return answer

    async def clear_requests(self) -> None:
        """Empty the simulator's request log, which otherwise keeps every request."""
        await self.admin("DELETE", "requests")

    async def stop(self) -> None:
        """Close its stdin, then SIGTERM, then SIGKILL, each wait bounded."""
        if self._admin is not None:
            await self._admin.aclose()
            self._admin = None
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        for action in (None, process.terminate, process.kill):
            if action is not None and process.returncode is None:
                action()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
            if process.returncode is not None:
                break
        self._errors.close()


async def _stdin_closed() -> None:
    """Return once stdin reaches end of file."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def _serve(arguments: argparse.Namespace) -> None:
    simulator = CxoneSimulator(DEMO_CREDENTIALS)
    seed_users(simulator, arguments.users)
    if arguments.latency_ms or arguments.jitter_ms:
        simulator.set_latency(
            arguments.latency_ms / 1000, jitter_seconds=arguments.jitter_ms / 1000
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with SimulatorServer(simulator) as server:
        addresses = {
            "base_url": server.base_url,
            "scim_base_url": server.scim_base_url,
            "token_url": server.token_url,
        }
        sys.stdout.write(json.dumps(addresses) + "\n")
        sys.stdout.flush()
        closed = asyncio.create_task(_stdin_closed())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait(
            {closed, stopped}, timeout=arguments.max_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        closed.cancel()
        stopped.cancel()


def main() -> None:
    """Entry point of the simulator child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.simulator_process")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
