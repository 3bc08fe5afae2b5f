"""A KRaft cluster of one or three Apache Kafka nodes on 127.0.0.1, started by the tests.

Every node is broker and controller at once, on its own free ports, with the same cluster id
and controller quorum. The internal topics are sized for a test (one partition, replicated
over every node up to three) and a new group's first rebalance is not delayed.

Extending it: `listeners` names the client listeners in order, each also its security
protocol (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`); the first carries the traffic
between brokers. `properties` adds to or overrides any broker setting (TLS stores, JAAS,
authorizer, super users); `format_arguments` go to the storage tool (`--add-scram ...`).
"""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from tests.apache_kafka.node import (
    CONTROLLER,
    HOST,
    KafkaNode,
    KafkaNodeError,
    Listener,
    free_port,
)
from tests.apache_kafka.release import KafkaRelease, class_path

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
FORMAT_TIMEOUT = 120.0


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Never starting with `-`, which the storage tool would read as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def base_properties(nodes: int) -> dict[str, str]:
    """Broker settings for a test cluster of `nodes` nodes, before the per-node ones."""
    replicas = str(min(nodes, 3))
    min_isr = str(min(nodes, 2))
    return {
        "process.roles": "broker,controller",
        "controller.listener.names": CONTROLLER,
        "listener.security.protocol.map": ",".join(
            f"{name}:{name}" for name in (*SECURITY_PROTOCOLS,)
        )
        + f",{CONTROLLER}:PLAINTEXT",
        "num.partitions": "1",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The default takes 128 MiB of heap for the log cleaner; Kafka's own test harness lowers it.
        "log.cleaner.dedupe.buffer.size": "2097152",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "num.replica.fetchers": "1",
    }


class KafkaCluster:
    """One or three KRaft nodes in a temporary folder: a context manager, or `start()`/`stop()`."""

    def __init__(
        self,
        release: KafkaRelease,
        *,
        nodes: int = 1,
        listeners: Sequence[str] = ("PLAINTEXT",),
        properties: Mapping[str, str] | None = None,
        format_arguments: Sequence[str] = (),
        directory: Path | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        if not listeners:
            raise ValueError("a cluster needs at least one client listener")
        self.release = release
        self.cluster_id = new_cluster_id()
        self.format_arguments = tuple(format_arguments)
        self.startup_timeout = startup_timeout
        self._owns_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix=f"{release.label}-"))
        self.libs = class_path(release)
        controller_ports = [free_port() for _ in range(nodes)]
        voters = ",".join(
            f"{node_id}@{HOST}:{port}" for node_id, port in enumerate(controller_ports, start=1)
        )
        self.nodes: list[KafkaNode] = []
        for node_id, controller_port in enumerate(controller_ports, start=1):
            node_listeners = [Listener(name, free_port()) for name in listeners]
            node_properties = base_properties(nodes) | {
                "node.id": str(node_id),
                "controller.quorum.voters": voters,
                "listeners": ",".join(
                    [f"{item.name}://{item.address}" for item in node_listeners]
                    + [f"{CONTROLLER}://{HOST}:{controller_port}"]
                ),
                "advertised.listeners": ",".join(
                    f"{item.name}://{item.address}" for item in node_listeners
                ),
                "inter.broker.listener.name": node_listeners[0].name,
                "log.dirs": str(self.directory / f"node-{node_id}" / "data"),
            }
            node_properties |= dict(properties or {})
            self.nodes.append(
                KafkaNode(
                    release,
                    self.libs,
                    self.directory / f"node-{node_id}",
                    node_id=node_id,
                    listeners=node_listeners,
                    controller_port=controller_port,
                    properties=node_properties,
                )
            )
        self.started_in: float | None = None
        """Seconds from formatting to every node ready, at the first start."""

    @property
    def label(self) -> str:
        """`kafka-4.4.0` or `kafka-4.4.0x3`: the release and, above one, the node count."""
        suffix = f"x{len(self.nodes)}" if len(self.nodes) > 1 else ""
        return f"{self.release.label}{suffix}"

    def bootstrap_servers(self, listener: str | None = None) -> str:
        """Every node's address on `listener` (the first listener by default), comma-separated."""
        return ",".join(self._listener(node, listener).address for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        """The node with this id (1-based)."""
        return self.nodes[node_id - 1]

    def start(self) -> None:
        """Format every node (first start only), start them all and wait until each is ready."""
        began = time.monotonic()
        first = self.started_in is None
        if first:
            self._format()
        try:
            for node in self.nodes:
                if not node.running:
                    node.start(self.startup_timeout)
            for node in self.nodes:
                node.wait_ready()
        except BaseException:
            self.stop()
            raise
        if first:
            self.started_in = time.monotonic() - began

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every node at once (SIGTERM, then SIGKILL past `timeout`); the data stays.

        One at a time, the last node's controlled shutdown would wait for a quorum that is gone.
        """
        for node in self.nodes:
            node.terminate()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_stopped(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop every node and delete the cluster's folder if the cluster made it."""
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def rss_bytes(self) -> int:
        """The resident memory of every running node, summed."""
        return sum(node.rss_bytes() for node in self.nodes)

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of every node's log, each under its node's name."""
        return "\n".join(
            f"--- {self.label} node {node.node_id} ({node.log_file.name}) ---\n"
            f"{node.log_tail(lines)}"
            for node in self.nodes
        )

    def _format(self) -> None:
        formats = []
        for node in self.nodes:
            node.write_config()
            command = node.format_command(self.cluster_id, self.format_arguments)
            formats.append(
                (node, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            )
        failures = []
        for node, process in formats:
            try:
                output, _ = process.communicate(timeout=FORMAT_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            if process.returncode != 0:
                failures.append(f"node {node.node_id}: {output.decode(errors='replace')[-3000:]}")
        if failures:
            raise KafkaNodeError("formatting the Kafka cluster failed:\n" + "\n".join(failures))

    @staticmethod
    def _listener(node: KafkaNode, name: str | None) -> Listener:
        if name is None:
            return node.listeners[0]
        for listener in node.listeners:
            if listener.name == name:
                return listener
        raise KeyError(f"no client listener named {name}")

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
