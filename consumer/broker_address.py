"""The `KAFKA_BOOTSTRAP_SERVERS` list: `host[:port]` entries, parsed once when settings are read.

aiokafka parses the list only when it first connects: a port that is not a number then raises
from deep inside the client, and an empty list is retried for ever as if the broker were down.
Both are configuration errors, so the list is parsed here, at settings time, the way aiokafka
reads it (`host`, `host:port`, `[ipv6]`, `[ipv6]:port`, a bare IPv6 literal; the port defaults
to 9092), and what aiokafka would choke on is refused with one line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_KAFKA_PORT = 9092

# A DNS name or an IPv4 literal: labels of letters, digits, '-' and '_', joined by dots.
_HOST_NAME = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


@dataclass(frozen=True)
class BrokerAddress:
    """One bootstrap broker."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_broker_addresses(value: str) -> tuple[BrokerAddress, ...]:
    """Every broker of a comma-separated list; a ValueError names the first bad entry."""
    entries = [entry.strip() for entry in value.split(",")]
    if entries == [""]:
        raise ValueError("must name at least one broker as host:port")
    return tuple(_parse_entry(entry) for entry in entries)


def normalise_broker_list(value: str) -> str:
    """The list as aiokafka should get it: entries stripped of blanks, each with its port."""
    return ",".join(str(address) for address in parse_broker_addresses(value))


def _parse_entry(entry: str) -> BrokerAddress:
    if not entry:
        raise ValueError("has an empty entry (a stray comma?)")
    if entry.startswith("["):
        host, closed, rest = entry[1:].partition("]")
        if not closed or not _is_ipv6(host):
            raise ValueError(f"{entry!r}: a bracketed host must be an IPv6 address")
        if not rest:
            return BrokerAddress(host, DEFAULT_KAFKA_PORT)
        if not rest.startswith(":"):
            raise ValueError(f"{entry!r}: expected host:port")
        return BrokerAddress(host, _port(entry, rest[1:]))
    if entry.count(":") > 1:
        if _is_ipv6(entry):
            return BrokerAddress(entry, DEFAULT_KAFKA_PORT)
        raise ValueError(f"{entry!r}: an IPv6 address with a port goes in brackets, [::1]:9092")
    host, colon, port = entry.partition(":")
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{entry!r}: {host!r} is not a host name or IP address")
    return BrokerAddress(host, _port(entry, port) if colon else DEFAULT_KAFKA_PORT)


def _port(entry: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
