"""One Apache Kafka KRaft node: broker and controller in one JVM, on 127.0.0.1.

A node owns a folder holding its `server.properties`, its data (`data/`) and its log
(`server.log`, everything the JVM printed). It is formatted once; a stopped or killed node
restarts with the same configuration and data, as an operator would restart it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.apache_kafka.release import KafkaRelease

HOST = "127.0.0.1"
CONTROLLER = "CONTROLLER"

JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
"""A small JVM: the suite shares two cores with everything else."""

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""

LOG4J1 = """\
log4j.rootLogger=INFO, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.kafka.request.logger=WARN
"""


class KafkaNodeError(RuntimeError):
    """A Kafka node failed to format, start or stop; the message carries its log's tail."""


@dataclass(frozen=True)
class Listener:
    """A client listener: its name (also its security protocol unless mapped) and port."""

    name: str
    port: int

    @property
    def address(self) -> str:
        """`host:port` for clients."""
        return f"{HOST}:{self.port}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port.

    A Kafka broker opens its client listeners only once it is ready (registered, unfenced and
    its authorizer loaded), so an accepted connection is its readiness signal.
    """
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def render_properties(properties: Mapping[str, str]) -> str:
    """A Java properties file, one `key=value` per line, in the given order."""
    return "".join(f"{key}={value}\n" for key, value in properties.items())


class KafkaNode:
    """A KRaft node of a cluster: `format()` once, then `start()`, `stop()`, `kill()` at will."""

    def __init__(
        self,
        release: KafkaRelease,
        libs: Path,
        directory: Path,
        *,
        node_id: int,
        listeners: Sequence[Listener],
        controller_port: int,
        properties: Mapping[str, str],
    ) -> None:
        self.release = release
        self.libs = libs
        self.directory = directory
        self.node_id = node_id
        self.listeners = tuple(listeners)
        self.controller_port = controller_port
        self.properties = dict(properties)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.started_in: float | None = None
        """Seconds from launching the JVM to its client listener accepting, at the last start."""

    @property
    def config_file(self) -> Path:
        """The node's server.properties."""
        return self.directory / "server.properties"

    @property
    def log_file(self) -> Path:
        """Everything the node's JVMs printed, across restarts."""
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        """Whether the node's JVM is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The JVM's process id."""
        if self.process is None:
            raise KafkaNodeError(f"node {self.node_id} is not running")
        return self.process.pid

    def write_config(self) -> None:
        """Write server.properties and the logging configuration into the node's folder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(render_properties(self.properties))
        logging = LOG4J2 if self.release.log4j2 else LOG4J1
        (self.directory / "log.properties").write_text(logging)

    def java_command(self, main: str, *arguments: str) -> list[str]:
        """A java command running `main` of the release with this node's logging settings."""
        logging = self.directory / "log.properties"
        flag = (
            f"-Dlog4j2.configurationFile={logging}"
            if self.release.log4j2
            else f"-Dlog4j.configuration=file:{logging}"
        )
        return [
            "java",
            *JVM_OPTIONS,
            flag,
            f"-Dkafka.logs.dir={self.directory}",
            "-cp",
            f"{self.libs}/*",
            main,
            *arguments,
        ]

    def format_command(self, cluster_id: str, extra: Sequence[str] = ()) -> list[str]:
        """The StorageTool command that formats this node's data folder."""
        return self.java_command(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
            *extra,
        )

    def start(self, timeout: float = 90.0) -> None:
        """Launch the JVM; `wait_ready()` waits for it."""
        if self.running:
            raise KafkaNodeError(f"node {self.node_id} is already running")
        self._log = self.log_file.open("ab")
        self._launched = time.monotonic()
        self.process = subprocess.Popen(
            self.java_command("kafka.Kafka", str(self.config_file)),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        self._timeout = timeout

    def wait_ready(self) -> None:
        """Return once every client listener accepts; raise with the log if the JVM dies first."""
        deadline = self._launched + self._timeout
        for listener in self.listeners:
            while not accepts(listener.port):
                if not self.running:
                    raise KafkaNodeError(
                        f"Kafka node {self.node_id} exited at start-up:\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise KafkaNodeError(
                        f"Kafka node {self.node_id} was not ready within {self._timeout:.0f}s:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.05)
        self.started_in = time.monotonic() - self._launched

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), a bounded wait, then SIGKILL."""
        self.terminate()
        self.wait_stopped(timeout)

    def terminate(self) -> None:
        """Ask the node to shut down (SIGTERM) without waiting; `wait_stopped()` waits."""
        process = self.process
        if process is not None and process.poll() is None:
            # A frozen JVM would never act on SIGTERM.
            process.send_signal(signal.SIGCONT)
            process.terminate()

    def wait_stopped(self, timeout: float) -> None:
        """Wait (bounded) for the JVM to exit after `terminate()`, then SIGKILL it."""
        process = self.process
        if process is None:
            return
        try:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        finally:
            self._forget()

    def kill(self) -> None:
        """Crash the node (SIGKILL): no controlled shutdown, its data stays on disk."""
        process = self.process
        if process is None:
            return
        try:
            process.kill()
            process.wait()
        finally:
            self._forget()

    def suspend(self) -> None:
        """Freeze the JVM (SIGSTOP): it keeps its sockets but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a frozen JVM (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    def rss_bytes(self) -> int:
        """The JVM's resident memory now, in bytes (0 when it is not running)."""
        if not self.running:
            return 0
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def log_tail(self, lines: int = 80) -> str:
        """The last lines the node printed."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _forget(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
