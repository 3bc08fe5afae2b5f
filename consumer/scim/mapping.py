"""Pure read-modify-write of a CXone user: change the roles (and `active`), keep everything else.

The document is the user exactly as CXone served it. CXone may carry attributes and extensions
that no model here knows; rebuilding the user from a model would drop them on PUT, so the new
document is the old one with only the attributes this service owns replaced.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from scim2_models import Role

from consumer.errors import ScimRejected

Document = Mapping[str, Any]

# Attributes the server owns; sending them back on PUT is at best ignored.
_SERVER_OWNED = ("meta",)


@dataclass(frozen=True)
class DesiredRole:
    """One role to write: its CXone role id, display name and whether it is the primary one."""

    value: str
    display: str | None
    primary: bool


def current_roles(document: Document) -> tuple[Role, ...]:
    """The roles a CXone user holds, as SCIM `Role`s; a malformed entry is CXone's error."""
    raw = document.get("roles") or []
    if not isinstance(raw, list):
        raise ScimRejected("CXone returned a user whose roles are not a list")
    try:
        return tuple(Role.model_validate(entry) for entry in raw)
    except ValidationError as error:
        raise ScimRejected("CXone returned a user with a malformed role") from error


def role_values(document: Document) -> tuple[str, ...]:
    """The role ids a CXone user holds, primary first."""
    roles = current_roles(document)
    ordered = sorted(roles, key=lambda role: not role.primary)
    return tuple(role.value for role in ordered if role.value)


def is_active(document: Document) -> bool:
    """Whether the user is active; SCIM treats a missing `active` as active."""
    return document.get("active", True) is not False


def needs_write(document: Document, roles: Sequence[DesiredRole], *, active: bool) -> bool:
    """Whether the user differs from the desired state in anything this service owns."""
    held = {(role.value, bool(role.primary)) for role in current_roles(document)}
    wanted = {(role.value, role.primary) for role in roles}
    return held != wanted or is_active(document) != active


def with_roles(document: Document, roles: Sequence[DesiredRole], *, active: bool) -> dict[str, Any]:
    """A copy of the user with the desired roles and `active`; every other attribute untouched."""
    updated = copy.deepcopy(dict(document))
    for attribute in _SERVER_OWNED:
        updated.pop(attribute, None)
    # A server without a `roles` attribute refuses one it does not know, even an empty one.
    if roles or document.get("roles"):
        # A role kept without a name of ours (one assigned by hand in CXone) keeps CXone's name.
        held = {role.value: role.display for role in current_roles(document)}
        updated["roles"] = [
            Role(
                value=role.value,
                display=role.display if role.display is not None else held.get(role.value),
                primary=role.primary,
            ).model_dump(mode="json", exclude_none=True, by_alias=True)
            for role in roles
        ]
    if active != is_active(document) or "active" in updated:
        updated["active"] = active
    return updated


def encode(document: Document) -> bytes:
    """The exact bytes sent on the wire for a document."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(payload: bytes) -> str:
    """The audit fingerprint of a written payload."""
    return hashlib.sha256(payload).hexdigest()
