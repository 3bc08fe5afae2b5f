"""What every command shares: a failure as one line and an exit code, quiet Kafka clients, files."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from consumer.errors import ConfigurationError


def fail(message: str, *, code: int = 2) -> typer.Exit:
    """Print `message` on stderr; the exit to raise (2: a bad argument or setting)."""
    typer.echo(message, err=True)
    return typer.Exit(code=code)


def quiet_kafka_client() -> None:
    """Silence aiokafka's own log records: the command reports a broker failure in one line."""
    # The same failure would come again, with a traceback.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def read_file(option: str, file: Path) -> bytes:
    """The bytes of a file argument (`-` is stdin), or ConfigurationError naming the option."""
    if str(file) == "-":
        return sys.stdin.buffer.read()
    try:
        return file.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{option} {file}: {error.strerror or error}") from None
