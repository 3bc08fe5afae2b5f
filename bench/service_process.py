"""The real service as a child process (`python -m consumer run`), configured by environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# The example catalog without the guard: the workload's role swaps all take some access away.
EXAMPLE_POLICY = ROOT / "bench" / "workload-policy.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """One `python -m consumer run`; its output goes to a temporary file, never a pipe."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self.metrics_port = free_port()
        self._environment = {
            **os.environ,
            "POLICY_FILE": str(EXAMPLE_POLICY),
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "SYNC_SHUTDOWN_GRACE_SECONDS": "5",
            **environment,
            "METRICS_PORT": str(self.metrics_port),
        }
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._process: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None
        self.killed = False
        self.final_output = ""

    @property
    def pid(self) -> int:
        """The service's process id."""
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process has been started and not exited."""
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the service process."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "consumer",
            "run",
            cwd=ROOT,
            env=self._environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._output,
            stderr=asyncio.subprocess.STDOUT,
        )

    def output_tail(self, limit: int = 3000) -> str:
        """The end of what the service printed, for a failure message."""
        self._output.seek(0, os.SEEK_END)
        size = self._output.tell()
        self._output.seek(max(0, size - limit))
        return self._output.read().decode(errors="replace")

    def check_alive(self) -> None:
        """Raise if the service exited on its own."""
        if self._process is not None and self._process.returncode is not None:
            raise RuntimeError(
                f"the service exited with {self._process.returncode}:\n{self.output_tail()}"
            )

    async def wait_ready(self, within: float = 60.0) -> None:
        """Poll `/readyz` until the service has joined its group and its circuit is closed."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                if loop.time() > deadline:
                    raise TimeoutError(f"the service was not ready within {within:g} s")
                await asyncio.sleep(0.1)

    async def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM and a bounded wait for the graceful stop, then SIGKILL; returns the exit code."""
        process = self._process
        if process is not None:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), within)
                except TimeoutError:
                    self.killed = True
                    process.kill()
                    await process.wait()
            self.exit_code = process.returncode
            self.final_output = self.output_tail(20_000)
        self._output.close()
        return self.exit_code
