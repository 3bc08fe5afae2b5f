"""Granting Kafka ACLs from a test: CreateAcls v2, which aiokafka does not carry (it stops at v1,
which Kafka 4.0 removed)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)


class ResourceType(IntEnum):
    """Kafka's ACL resource types."""

    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    """Kafka's ACL operations."""

    READ = 3
    WRITE = 4
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


LITERAL = 3
ALLOW = 3


class _CreateAclsResponse_v2(Response):  # noqa: N801 - aiokafka's naming of versions
    API_KEY = 30
    API_VERSION = 2
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _CreateAclsRequest_v2(RequestStruct):  # noqa: N801
    FLEXIBLE_VERSION = True
    API_KEY = 30
    API_VERSION = 2
    RESPONSE_TYPE = _CreateAclsResponse_v2
    SCHEMA = Schema(
        (
            "creations",
            CompactArray(
                ("resource_type", Int8),
                ("resource_name", CompactString("utf-8")),
                ("resource_pattern_type", Int8),
                ("principal", CompactString("utf-8")),
                ("host", CompactString("utf-8")),
                ("operation", Int8),
                ("permission_type", Int8),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


@dataclass(frozen=True)
class Grant:
    """Allow `principal` one operation on one named resource, from any host."""

    principal: str
    resource: ResourceType
    name: str
    operation: Operation


class _CreateAcls(Request[_CreateAclsRequest_v2]):
    API_KEY = 30

    def __init__(self, grants: list[Grant]) -> None:
        self._grants = grants

    def build(self, request_struct_class: type[_CreateAclsRequest_v2]) -> _CreateAclsRequest_v2:
        return request_struct_class(
            [
                (
                    int(grant.resource),
                    grant.name,
                    LITERAL,
                    grant.principal,
                    "*",
                    int(grant.operation),
                    ALLOW,
                    {},
                )
                for grant in self._grants
            ],
            {},
        )


async def create_acls(client: AIOKafkaClient, grants: list[Grant]) -> None:
    """Create the ACLs through a client of a super user; raise if the broker refused any."""
    response = await client.send(client.get_random_node(), _CreateAcls(grants))
    refused = [(code, message) for code, message, _ in response.results if code != 0]
    if refused:
        raise RuntimeError(f"CreateAcls refused: {refused}")
