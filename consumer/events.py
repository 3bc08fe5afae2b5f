"""The input event and the audit event: CloudEvents 1.0 structured JSON, as pydantic models."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from consumer.errors import InvalidEvent

# Limits of the contract: no real user needs more, and each bounds the work one record costs.
MAX_ROLES = 256
MAX_PARENTS = 32
MAX_EVENT_ID = 256
MAX_SOURCE = 1024
MAX_USER_NAME = 256
MAX_DISPLAY_NAME = 256
MAX_USER_ID = 128

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

# The documented signing example (docs/policy.md): a test recomputes it from the docs text.
EXAMPLE_SIGNATURE = "146481a4840d3ed941ea4648d953172db74e0ad2313c309fd6ecf2549f9d3890"


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
    display_name: Annotated[str, Field(min_length=1, max_length=MAX_DISPLAY_NAME)] | None = None
    primary: bool = False
    inherits_from: (
        Annotated[tuple[RoleId, ...], Field(max_length=MAX_PARENTS, fail_fast=True)] | None
    ) = None


# No line break or other control character: each signed field is one line of the signed text.
ApprovalText = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Approval(_Strict):
    """The change ticket that approves adding a privileged role."""

    ticket: ApprovalText
    approved_by: ApprovalText
    signature: (
        Annotated[
            str,
            Field(
                min_length=1,
                # Any string is accepted here: a wrong signature is an escalation, not bad input.
                max_length=128,
                description=(
                    "Required when the service has APPROVAL_HMAC_KEY: lowercase hex HMAC-SHA256,"
                    " keyed with the UTF-8 bytes of the key, over the UTF-8 bytes of the lines"
                    ' user_id, the sorted privileged role ids it grants (joined by ","),'
                    " ticket, approved_by and expires_at"
                    " (in UTC as YYYY-MM-DDTHH:MM:SSZ, with .ffffff when it has a fraction of"
                    ' a second; empty when absent), joined by "\\n". Example: key'
                    " 'example-approval-key', user_id 'u-1001', adding admin_support, ticket"
                    " 'CHG-1234', approved_by 'secops', no expires_at signs"
                    " 'u-1001\\nadmin_support\\nCHG-1234\\nsecops\\n' as"
                    f" {EXAMPLE_SIGNATURE}."
                ),
            ),
        ]
        | None
    ) = None
    expires_at: (
        Annotated[
            AwareDatetime,
            Field(
                description=(
                    "RFC 3339 with an offset; once it has passed the approval no longer"
                    " approves. Signed as the instant it names, in UTC."
                )
            ),
        ]
        | None
    ) = None


class RoleChangeData(_Strict):
    """The payload of an input event."""

    user_id: UserId
    user_name: Annotated[str, Field(min_length=1, max_length=MAX_USER_NAME)] | None = None
    # fail_fast: one bad role is enough to refuse the event, and stopping there bounds the work.
    roles: (
        Annotated[tuple[RoleAssignment, ...], Field(max_length=MAX_ROLES, fail_fast=True)] | None
    ) = None
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
        counts = Counter(role.role_id for role in roles)
        duplicates = sorted(role_id for role_id, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate role_id: {', '.join(duplicates)}")
        if sum(role.primary for role in roles) > 1:
            raise ValueError("more than one role is marked primary")
        return roles


class RoleChangeEvent(_Strict):
    """An IdP role-change event (topic `idp.role-changes`, key = user id)."""

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_ID)]
    source: Annotated[str, Field(min_length=1, max_length=MAX_SOURCE)]
    type: EventType
    time: datetime | None = None
    subject: Annotated[str, Field(max_length=MAX_USER_ID)] | None = None
    datacontenttype: Literal["application/json"] | None = None
    data: RoleChangeData

    @model_validator(mode="after")
    def _consistent(self) -> RoleChangeEvent:
        if self.subject is not None and self.subject != self.data.user_id:
            raise ValueError("subject must equal data.user_id")
        if self.type is not EventType.DEACTIVATED and self.data.roles is None:
            raise ValueError(f"data.roles is required for {self.type.value}")
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
    def active(self) -> bool | None:
        """The `active` the event asks for; None keeps what CXone holds."""
        if self.type is EventType.DEACTIVATED:
            return False
        if self.type is EventType.REACTIVATED:
            return True
        return None

    @property
    def desired_roles(self) -> tuple[RoleAssignment, ...]:
        """The complete role set the IdP wants (none for a deactivation)."""
        if self.is_deactivation:
            return ()
        return self.data.roles or ()


def parse_event(value: bytes | None) -> RoleChangeEvent:
    """Decode a Kafka record value, or raise `InvalidEvent` saying why.

    The work is linear in the record's size and bounded before anything is built: the JSON
    shape is checked against what an event can hold first, so a hostile record costs about as
    much as reading its bytes, never a model per element.
    """
    if value is None:
        raise InvalidEvent("invalid_json", "record has no value (tombstone)")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent(
            "invalid_json", f"event: Invalid JSON: not UTF-8 at byte {error.start}"
        ) from None
    try:
        document = _checked_document(text)
    except _NotJson as error:
        raise _invalid_json(value, str(error)) from None
    event_id = _event_id_of(document)
    try:
        # The document is parsed already: most bad records stop here, with errors that point
        # at objects that exist, without the record being parsed a second time.
        RoleChangeEvent.model_validate(document)
    except ValidationError as error:
        raise _invalid(error, event_id) from error
    # The JSON validator has the last word: strict, so that no field is coerced from another
    # type ("primary": "yes"), and it refuses what a Python string keeps (an escape spelling a
    # lone surrogate is not JSON text).
    return _validated_json(value, event_id=event_id)


def _validated_json(value: bytes, *, event_id: str | None) -> RoleChangeEvent:
    try:
        return RoleChangeEvent.model_validate_json(value, strict=True)
    except ValidationError as error:
        raise _invalid(error, event_id) from error


def _invalid_json(value: bytes, problem: str) -> InvalidEvent:
    """Say why a record is not JSON, in the JSON validator's words when it has some."""
    try:
        RoleChangeEvent.model_validate_json(value)
    except ValidationError as error:
        items = error.errors(include_url=False, include_context=False, include_input=False)
        if any(item["type"] == "json_invalid" for item in items):
            return InvalidEvent("invalid_json", _first_error(items))
    return InvalidEvent("invalid_json", f"event: Invalid JSON: {problem}"[:500])


def _invalid(error: ValidationError, event_id: str | None) -> InvalidEvent:
    items = error.errors(include_url=False, include_context=False, include_input=False)
    reason = "invalid_json" if any(item["type"] == "json_invalid" for item in items) else None
    return InvalidEvent(reason or "schema_violation", _first_error(items), event_id=event_id)


# The most of each punctuation byte a record may hold, counted over its raw bytes (inside
# strings too), so they are checked before anything is parsed and bound the parser's work. An
# event at every other limit needs about 9,000 commas, 1,100 colons and 260 of each bracket;
# the rest is room for punctuation inside its strings.
MAX_JSON_COMMAS = 16_384
MAX_JSON_COLONS = 4_096
MAX_JSON_ARRAYS = 4_096
MAX_JSON_BRACES = 4_096
# Counted by the parser itself, so exact: the event, its data, its approval and its roles, and
# their members (a validator reports each unknown member, so their number bounds its errors).
MAX_JSON_OBJECTS = MAX_ROLES + 8
MAX_JSON_MEMBERS = MAX_ROLES * 4 + 64
# No number field exists; `time` and `primary` may still be written as numbers.
MAX_JSON_NUMBERS = MAX_ROLES + 8


class _ShapeExceeded(Exception):
    """The document holds more of something than any event can."""


class _NotJson(Exception):
    """The record does not parse as JSON."""


class _DuplicateKey(Exception):
    """An object names the same member twice."""


class _ShapeCounter:
    """Parser hooks that count objects and numbers, and refuse duplicate member names."""

    def __init__(self) -> None:
        self.objects = 0
        self.members = 0
        self.numbers = 0

    def object_pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """Build one object, counting it and its members; refuse a repeated member name."""
        self.objects += 1
        self.members += len(pairs)
        if self.objects > MAX_JSON_OBJECTS:
            raise _ShapeExceeded(f"more than {MAX_JSON_OBJECTS} JSON objects")
        if self.members > MAX_JSON_MEMBERS:
            raise _ShapeExceeded(f"more than {MAX_JSON_MEMBERS} JSON object members")
        document = dict(pairs)
        if len(document) != len(pairs):
            seen: set[str] = set()
            for name, _ in pairs:
                if name in seen:
                    raise _DuplicateKey(name)
                seen.add(name)
        return document

    def number(self, text: str) -> float | int:
        """Parse one number, counting it."""
        self.numbers += 1
        if self.numbers > MAX_JSON_NUMBERS:
            raise _ShapeExceeded(f"more than {MAX_JSON_NUMBERS} JSON numbers")
        return float(text) if any(mark in text for mark in ".eE") else int(text)


def _checked_document(text: str) -> Any:
    """The parsed JSON when its shape can be an event's; `InvalidEvent` or `_NotJson` if not.

    Duplicate member names make a record invalid: which of the two values a reader takes is an
    ambiguity an attacker can use, and I-JSON (RFC 7493) forbids them.
    """
    for mark, limit, what in (
        (",", MAX_JSON_COMMAS, "commas"),
        (":", MAX_JSON_COLONS, "colons"),
        ("[", MAX_JSON_ARRAYS, "'[' brackets"),
        ("{", MAX_JSON_BRACES, "'{' braces"),
    ):
        if text.count(mark) > limit:
            raise InvalidEvent("schema_violation", f"event: more than {limit} {what} in the record")
    counter = _ShapeCounter()
    try:
        document = json.loads(
            text,
            object_pairs_hook=counter.object_pairs,
            parse_int=counter.number,
            parse_float=counter.number,
            parse_constant=_not_json,
        )
    except _ShapeExceeded as error:
        raise InvalidEvent("schema_violation", f"event: {error}") from None
    except _DuplicateKey as error:
        name = str(error)[:64]
        raise InvalidEvent("invalid_json", f"event: duplicate JSON object key {name!r}") from None
    except RecursionError:
        raise InvalidEvent("invalid_json", "event: JSON nested too deeply") from None
    except ValueError as error:
        raise _NotJson(str(error)) from None
    _check_arrays(document)
    return document


def _not_json(constant: str) -> None:
    """Refuse NaN and Infinity, which Python's parser accepts and JSON does not have."""
    raise ValueError(f"{constant} is not JSON")


def _check_arrays(document: Any) -> None:
    """Refuse over-long role lists before the validator builds a model per element."""
    data = document.get("data") if isinstance(document, dict) else None
    roles = data.get("roles") if isinstance(data, dict) else None
    if not isinstance(roles, list):
        return
    if len(roles) > MAX_ROLES:
        raise InvalidEvent(
            "schema_violation",
            f"data.roles: at most {MAX_ROLES} roles per event, not {len(roles)}",
            event_id=_event_id_of(document),
        )
    for index, role in enumerate(roles):
        parents = role.get("inherits_from") if isinstance(role, dict) else None
        if isinstance(parents, list) and len(parents) > MAX_PARENTS:
            raise InvalidEvent(
                "schema_violation",
                f"data.roles.{index}.inherits_from: at most {MAX_PARENTS} roles",
                event_id=_event_id_of(document),
            )


def _event_id_of(document: Any) -> str | None:
    """The id of a document that parsed, when it is one an event could carry."""
    event_id = document.get("id") if isinstance(document, dict) else None
    if isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID and event_id.isprintable():
        return event_id
    return None


def _first_error(items: list[ErrorDetails]) -> str:
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
    """The approval an input event carried, as the audit records it, and whether it was taken."""

    ticket: str
    approved_by: str
    accepted: bool | None = Field(
        default=None,
        description=(
            "true: the event's change was allowed with this approval; false: the policy refused"
            " the approval (approval_invalid, approval_expired) or the change it came with, so"
            " nothing it approves was written; null: never judged (the user could not be read)."
        ),
    )


class SyncResult(_Strict):
    """The `data` of an audit event: one per input record processed."""

    event_id: str | None
    event_type: EventType | None = Field(
        default=None, description="The input event's `type`; null when the record did not parse."
    )
    user_id: str | None
    outcome: Outcome
    reason: str | None = None
    detail: str | None = None
    escalation: bool = False
    roles_before: tuple[str, ...] | None = None
    roles_after: tuple[str, ...] | None = None
    active_before: bool | None = Field(
        default=None, description="Whether the user was active in CXone as read; null if unread."
    )
    active_after: bool | None = Field(
        default=None,
        description=(
            "Whether the user is active in CXone after this result (what a dry run would leave);"
            " null when not known, as after a failed write."
        ),
    )
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
