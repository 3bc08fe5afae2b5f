"""What one record costs the fetch loop: reading it into a work item, for hostile shapes.

Every record is read on the fetch loop (decoded and classified before it is dispatched by user),
so its cost delays heartbeats, /healthz and every worker. This part times `read_record` on the
nastiest records a producer can send, each about 1 MiB, and on the largest shapes the limits
still let through to the parser.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from bench.report import Table, cell
from consumer.events import (
    MAX_JSON_ARRAYS,
    MAX_JSON_COLONS,
    MAX_JSON_COMMAS,
    MAX_PARENTS,
    MAX_ROLES,
)
from consumer.stream.publisher import DEFAULT_MAX_RECORD_BYTES
from consumer.stream.work import read_record

MIB = 1 << 20


@dataclass(frozen=True)
class ClassifyOptions:
    """How many times each shape is read."""

    repeat: int = 30


def envelope(**fields: Any) -> dict[str, Any]:
    """An event document of the contract, with `fields` replacing parts of it."""
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-hostile",
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "data": {"user_id": "u-hostile", "roles": []},
    }
    document.update(fields)
    return document


def _encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def hostile_records() -> dict[str, tuple[bytes, bytes]]:
    """The nastiest records a producer can send, by name: (key, value), most about 1 MiB."""
    roles = [{"role_id": f"r-{index}"} for index in range(40_000)]
    depth = 100_000
    nested = _encoded(envelope()).replace(
        b'"roles": []', b'"roles": [' + b"[" * depth + b"]" * depth + b"]"
    )
    duplicate = _encoded(envelope()).replace(
        b'"id": "evt-hostile"', b'"id": "evt-hostile", "id": "evt-other"'
    )
    return {
        "roles_40k": (
            b"u-hostile",
            _encoded(envelope(data={"user_id": "u-hostile", "roles": roles})),
        ),
        "nested_100k": (b"u-hostile", nested),
        "string_1mib": (b"u-hostile", _encoded(envelope(source="s" * (MIB - 500)))),
        "random_bytes": (b"u-hostile", random.Random(9).randbytes(MIB - 100)),
        "duplicate_keys": (b"u-hostile", duplicate),
        "above_limit": (b"u-hostile", b"{" + b" " * (2 * MIB) + b"}"),
        "huge_key": (b"k/" * (MIB // 4), b"not json"),
    }


def edge_records() -> dict[str, tuple[bytes, bytes]]:
    """Shapes just inside the pre-parse limits, and valid events small and at every limit."""
    lists = b"[" + b",".join([b"[]"] * (MAX_JSON_ARRAYS - 1)) + b"]"
    members = b"{" + b",".join(b'"%d":true' % index for index in range(MAX_JSON_COLONS)) + b"}"
    values = b"[" + b",".join([b"true"] * MAX_JSON_COMMAS) + b"]"
    biggest = [
        {
            "role_id": f"r{index:03d}" + "x" * 124,
            "display_name": "D" * 256,
            "inherits_from": [f"p{parent:02d}" for parent in range(MAX_PARENTS)],
        }
        for index in range(MAX_ROLES)
    ]
    return {
        "arrays_at_limit": (b"u-hostile", b'{"x":' + lists + b"}"),
        "members_at_limit": (b"u-hostile", members),
        "commas_at_limit": (b"u-hostile", b'{"x":' + values + b"}"),
        "valid_small": (
            b"u-1",
            _encoded(envelope(data={"user_id": "u-1", "roles": [{"role_id": "agent_basic"}]})),
        ),
        "valid_at_every_limit": (
            b"u-1",
            _encoded(envelope(data={"user_id": "u-1", "roles": biggest})),
        ),
    }


def _record(key: bytes, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="idp.role-changes",
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=[],
    )


def _timed(read: Callable[[], object], repeat: int) -> list[float]:
    read()  # warm caches and imports; not counted
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def run(options: ClassifyOptions) -> Table:
    """Time `read_record` on each shape; one row per shape."""
    table = Table(
        "Per-record classification cost on the fetch loop",
        f"`read_record` (size check, JSON shape pre-check, validation) on one record, "
        f"{options.repeat} times per shape, with `KAFKA_MAX_RECORD_BYTES` at its default.",
        ["shape", "bytes", "outcome", "median ms", "max ms"],
    )
    shapes = {**hostile_records(), **edge_records()}
    for name, (key, value) in shapes.items():
        record = _record(key, value)

        def read(record: ConsumerRecord[bytes, bytes] = record) -> object:
            return read_record(record, epoch=0, now=0.0, max_bytes=DEFAULT_MAX_RECORD_BYTES)

        item = read_record(record, epoch=0, now=0.0, max_bytes=DEFAULT_MAX_RECORD_BYTES)
        outcome = "valid" if item.invalid is None else item.invalid.reason
        times = _timed(read, options.repeat)
        table.add(
            name,
            cell(len(key) + len(value)),
            outcome,
            cell(statistics.median(times), 2),
            cell(max(times), 2),
        )
    table.notes += [
        "Wall-clock time in the bench process; the record's bytes are already in memory, as "
        "they are when a fetch hands them over.",
        "The median is the record's own cost. The maximum also holds whatever else happened "
        "during one read (a garbage collection of the whole interpreter, another process on "
        "the same core): it is as high for a 175-byte record as for the largest shapes.",
    ]
    return table
