"""Pure read-modify-write of a CXone user: change the roles (and `active`), keep everything else.

The document is the user exactly as CXone served it. CXone may carry attributes and extensions
that no model here knows; rebuilding the user from a model would drop them on PUT, so the new
document is the old one with only the attributes this service owns replaced.
"""

from __future__ import annotations

import copy
import functools
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
        return tuple(_role(entry) for entry in raw)
    except ValidationError as error:
        raise ScimRejected("CXone returned a user with a malformed role") from error


def _role(entry: object) -> Role:
    """One served role entry as a `Role`; flat entries (all of CXone's) are validated once."""
    if isinstance(entry, dict) and all(
        isinstance(value, str | bool | int | float | None) for value in entry.values()
    ):
        # The type is part of the key: True, 1 and 1.0 are equal, and hash alike, as keys.
        return _validated_role(
            tuple(sorted((name, type(value).__name__, value) for name, value in entry.items()))
        )
    return Role.model_validate(entry)


# A user's roles are read three times per write (its state, whether to write, the body), and
# the same few catalog roles recur on every user: validating each distinct entry once is enough.
# The `Role`s handed out are shared, so nothing may change them (nothing here does).
@functools.lru_cache(maxsize=4096)
def _validated_role(items: tuple[tuple[str, str, object], ...]) -> Role:
    return Role.model_validate({name: value for name, _, value in items})


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
    return copy.deepcopy(_replaced(document, roles, active=active))


def payload_with_roles(document: Document, roles: Sequence[DesiredRole], *, active: bool) -> bytes:
    """The PUT body of `with_roles`, byte for byte, without copying the user to encode it."""
    return encode(_replaced(document, roles, active=active))


def _replaced(document: Document, roles: Sequence[DesiredRole], *, active: bool) -> dict[str, Any]:
    """The user with the desired roles and `active`; a shallow copy, sharing every other value."""
    updated = dict(document)
    for attribute in _SERVER_OWNED:
        updated.pop(attribute, None)
    # A server without a `roles` attribute refuses one it does not know, even an empty one.
    if roles or document.get("roles"):
        # A role kept without a name of ours (one assigned by hand in CXone) keeps CXone's name.
        held = {role.value: role.display for role in current_roles(document)}
        updated["roles"] = [
            dict(
                _role_entry(
                    role.value,
                    role.display if role.display is not None else held.get(role.value),
                    role.primary,
                )
            )
            for role in roles
        ]
    if active != is_active(document) or "active" in updated:
        updated["active"] = active
    return updated


@functools.lru_cache(maxsize=4096)
def _role_entry(value: str, display: str | None, primary: bool) -> tuple[tuple[str, Any], ...]:
    """One role as written, built by scim2-models once per distinct role."""
    role = Role(value=value, display=display, primary=primary)
    return tuple(role.model_dump(mode="json", exclude_none=True, by_alias=True).items())


def encode(document: Document) -> bytes:
    """The exact bytes sent on the wire for a document."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(payload: bytes) -> str:
    """The audit fingerprint of a written payload."""
    return hashlib.sha256(payload).hexdigest()
