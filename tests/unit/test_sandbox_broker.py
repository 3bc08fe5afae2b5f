"""Tests of finding the Tansu binary and of the Kafka readiness probe, without a broker."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from consumer.sandbox.broker import (
    EmbeddedBroker,
    EmbeddedBrokerError,
    kafka_answers,
    resolve_tansu_binary,
)


def test_an_explicit_binary_must_be_executable(tmp_path: Path) -> None:
    """A given path that is not an executable file is refused with its name."""
    plain = tmp_path / "tansu"
    plain.write_text("not a program")
    with pytest.raises(EmbeddedBrokerError, match="not an executable file"):
        resolve_tansu_binary(str(plain))


def test_an_explicit_executable_is_used_as_given(tmp_path: Path) -> None:
    """A given executable is returned unchanged."""
    program = tmp_path / "tansu"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert resolve_tansu_binary(str(program)) == str(program)


def test_the_probe_sees_no_broker_on_a_closed_port() -> None:
    """Nothing listening means the probe answers False quickly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert kafka_answers("127.0.0.1", port, timeout=0.5) is False


def test_the_probe_refuses_a_server_that_is_not_kafka() -> None:
    """A server that closes the connection without a Kafka answer is not a broker."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # The listen backlog accepts the connection; closing the socket then drops it unanswered.
        answered = kafka_answers("127.0.0.1", port, timeout=0.3)
    assert answered is False


def test_a_broker_that_exits_at_start_up_reports_its_output(tmp_path: Path) -> None:
    """A binary that dies at once makes start() fail with what it printed."""
    program = tmp_path / "tansu"
    program.write_text("#!/bin/sh\necho 'address already in use' >&2\nexit 3\n")
    program.chmod(0o755)
    broker = EmbeddedBroker(str(program))
    with pytest.raises(EmbeddedBrokerError, match="address already in use"):
        broker.start()
    assert broker.process is None
