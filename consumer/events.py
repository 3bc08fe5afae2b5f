"""The input event and the audit event: CloudEvents 1.0 structured JSON, as pydantic models."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from consumer.errors import InvalidEvent

USER_ID_PATTERN = r"^[A-Za-z0-9_@:\-][A-Za-z0-9._@:\-]{0,127}$"
ROLE_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
_USER_ID = re.compile(USER_ID_PATTERN)

UserId = Annotated[
    str,
    Field(
        pattern=USER_ID_PATTERN,
        description="The CXone SCIM id: 1-128 of A-Z a-z 0-9 . _ @ : - , not starting with a dot.",
    ),
]
RoleId = Annotated[str, Field(pattern=ROLE_ID_PATTERN)]


def is_valid_user_id(value: str) -> bool:
    """Whether a string is a user id that may be placed in a URL path."""
    return _USER_ID.fullmatch(value) is not None and ".." not in value


class EventType(StrEnum):
    """What an input event asks for."""

    ROLES_CHANGED = "idp.user.roles.changed"
    DEACTIVATED = "idp.user.deactivated"
    REACTIVATED = "idp.user.reactivated"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleAssignment(_Strict):
    """One role the IdP wants the user to hold."""

    role_id: RoleId
    display_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    primary: bool = False
    inherits_from: tuple[RoleId, ...] | None = None


class Approval(_Strict):
    """The change ticket that approves adding a privileged role."""

    ticket: Annotated[str, Field(min_length=1, max_length=128)]
    approved_by: Annotated[str, Field(min_length=1, max_length=128)]


class RoleChangeData(_Strict):
    """The payload of an input event."""

    user_id: UserId
    user_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    roles: tuple[RoleAssignment, ...] | None = None
    approval: Approval | None = None

    @field_validator("user_id")
    @classmethod
    def _no_dot_dot(cls, value: str) -> str:
        if ".." in value:
            raise ValueError("user_id must not contain '..'")
        return value

    @field_validator("roles")
    @classmethod
    def _unique_single_primary(
        cls, roles: tuple[RoleAssignment, ...] | None
    ) -> tuple[RoleAssignment, ...] | None:
        if roles is None:
            return None
        ids = [role.role_id for role in roles]
        duplicates = sorted({role_id for role_id in ids if ids.count(role_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate role_id: {', '.join(duplicates)}")
        if sum(role.primary for role in roles) > 1:
            raise ValueError("more than one role is marked primary")
        return roles


class RoleChangeEvent(_Strict):
    """An IdP role-change event (topic `idp.role-changes`, key = user id)."""

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=256)]
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    type: EventType
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: Literal["application/json"] | None = None
    data: RoleChangeData

    @model_validator(mode="after")
    def _consistent(self) -> RoleChangeEvent:
        if self.subject is not None and self.subject != self.data.user_id:
            raise ValueError("subject must equal data.user_id")
        if self.type is EventType.ROLES_CHANGED and self.data.roles is None:
            raise ValueError("data.roles is required for idp.user.roles.changed")
        return self

    @property
    def user_id(self) -> str:
        """The CXone SCIM id of the user this event is about."""
        return self.data.user_id

    @property
    def is_deactivation(self) -> bool:
        """Whether the event deactivates the user."""
        return self.type is EventType.DEACTIVATED

    @property
    def desired_roles(self) -> tuple[RoleAssignment, ...]:
        """The complete role set the IdP wants (none for a deactivation)."""
        if self.is_deactivation:
            return ()
        return self.data.roles or ()


def parse_event(value: bytes | None) -> RoleChangeEvent:
    """Decode a Kafka record value, or raise `InvalidEvent` saying why."""
    if value is None:
        raise InvalidEvent("invalid_json", "record has no value (tombstone)")
    try:
        return RoleChangeEvent.model_validate_json(value)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise InvalidEvent("invalid_json", _first_error(error)) from error
        raise InvalidEvent("schema_violation", _first_error(error)) from error


def _first_error(error: ValidationError) -> str:
    items = error.errors(include_url=False, include_input=False)
    first = items[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    return f"{where}: {first['msg']}{more}"[:500]


class Outcome(StrEnum):
    """What happened to one input event."""

    SYNCED = "synced"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    FAILED = "failed"
    INVALID = "invalid"
    SUPERSEDED = "superseded"
    DRY_RUN = "dry_run"


class Mode(StrEnum):
    """Whether a result comes from the live stream or from a replay."""

    LIVE = "live"
    REPLAY = "replay"


class SourcePosition(_Strict):
    """Where the input record was read."""

    topic: str
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]


class ApprovalReference(_Strict):
    """The approval an input event carried, as the audit records it."""

    ticket: str
    approved_by: str


class SyncResult(_Strict):
    """The `data` of an audit event: one per input record processed."""

    event_id: str | None
    user_id: str | None
    outcome: Outcome
    reason: str | None = None
    detail: str | None = None
    escalation: bool = False
    roles_before: tuple[str, ...] | None = None
    roles_after: tuple[str, ...] | None = None
    attempts: Annotated[int, Field(ge=0)] = 0
    http_status: int | None = None
    latency_ms: Annotated[float, Field(ge=0)] = 0.0
    payload_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    source: SourcePosition
    mode: Mode = Mode.LIVE
    processed_at: datetime
    approval: ApprovalReference | None = None


class AuditEvent(_Strict):
    """The audit event (topic `cxone.role-sync.audit`, key = user id)."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = "cxone-role-sync"
    type: Literal["cxone.role-sync.result"] = "cxone.role-sync.result"
    time: datetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: SyncResult


def audit_event_of(result: SyncResult) -> AuditEvent:
    """Wrap a result in its CloudEvents envelope; the id is stable across redeliveries."""
    position = result.source
    return AuditEvent(
        id=f"{position.topic}/{position.partition}/{position.offset}/{result.mode}",
        time=result.processed_at,
        subject=result.user_id,
        data=result,
    )


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the public event formats, by file name."""
    return {
        "role-change-event.schema.json": RoleChangeEvent.model_json_schema(),
        "sync-result.schema.json": AuditEvent.model_json_schema(),
    }
