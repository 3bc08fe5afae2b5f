"""The policy file's `idp_mapping` section: the roles IdP groups and pushed role values grant.

The SCIM ingress reads it to turn what an IdP provisions into each user's desired CXone roles.
Pure: the model, its checks against the role catalog, and its lines in `check-policy`'s output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from consumer.errors import ConfigurationError
from consumer.events import RoleId

if TYPE_CHECKING:  # the catalog module holds the policy file, whose section this is
    from consumer.catalog import RoleCatalog

__all__ = ["IdpMapping", "MappingEntry", "check_mapping", "describe_mapping"]

# An IdP group's displayName or a pushed role value: printable, bounded, one line.
IdpName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]


class MappingEntry(BaseModel):
    """The catalog roles one IdP group, or one pushed role value, grants its members."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: Annotated[
        tuple[RoleId, ...],
        Field(min_length=1, max_length=64, description="The catalog roles this entry grants."),
    ]
    primary: RoleId | None = Field(
        default=None, description="The role that becomes the user's primary role (one of roles)."
    )
    approves: bool = Field(
        default=False,
        strict=True,
        description=(
            "Membership is the approval of the privileged roles this entry grants: the IdP's"
            " own governance decides who is in it."
        ),
    )

    @model_validator(mode="after")
    def _primary_among_roles(self) -> MappingEntry:
        if self.primary is not None and self.primary not in self.roles:
            raise ValueError(f"primary {self.primary!r} is not one of the entry's roles")
        if len(set(self.roles)) != len(self.roles):
            raise ValueError("a role is listed twice")
        return self


class IdpMapping(BaseModel):
    """How the SCIM ingress maps what an IdP provisions to catalog roles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: Annotated[
        dict[IdpName, MappingEntry],
        Field(
            default_factory=dict,
            max_length=10_000,
            description="IdP group displayName -> the roles its members get (exact match).",
        ),
    ]
    role_values: Annotated[
        dict[IdpName, MappingEntry],
        Field(
            default_factory=dict,
            max_length=10_000,
            description=(
                "A value the IdP pushes in the user's `roles` (Entra ID app roles) -> the roles"
                " it grants (exact match)."
            ),
        ),
    ]


def _entries(mapping: IdpMapping) -> Iterator[tuple[str, str, MappingEntry]]:
    for name, entry in mapping.groups.items():
        yield "group", name, entry
    for value, entry in mapping.role_values.items():
        yield "role value", value, entry


def check_mapping(mapping: IdpMapping, catalog: RoleCatalog) -> None:
    """ConfigurationError naming the first entry that grants an unknown role or approves nothing."""
    for kind, name, entry in _entries(mapping):
        for role_id in entry.roles:
            if role_id not in catalog:
                raise ConfigurationError(
                    f"idp_mapping {kind} {name!r}: role {role_id!r} is not in the catalog"
                )
        # `approves` on an entry that grants nothing privileged is a mistake in the file: it
        # reads as a grant of authority that does not exist, so it stops the load.
        privileged = [
            role_id
            for role_id in catalog.effective_roles(entry.roles)
            if catalog.is_privileged(role_id)
        ]
        if entry.approves and not privileged:
            raise ConfigurationError(
                f"idp_mapping {kind} {name!r}: approves: true, but it grants no privileged role"
            )


def describe_mapping(mapping: IdpMapping | None, catalog: RoleCatalog) -> list[str]:
    """The lines `check-policy` prints for the mapping: one per entry, in file order."""
    if mapping is None:
        return ["idp_mapping: none (the SCIM ingress grants no roles)"]
    lines = ["idp_mapping:"]
    for kind, name, entry in _entries(mapping):
        roles = ", ".join(
            f"{role_id} (primary)" if role_id == entry.primary else role_id
            for role_id in entry.roles
        )
        privileged = sorted(
            role_id
            for role_id in catalog.effective_roles(entry.roles)
            if catalog.is_privileged(role_id)
        )
        if privileged:
            how = "approved by membership" if entry.approves else "no approval: refused"
            roles += f"; privileged {', '.join(privileged)}: {how}"
        lines.append(f"  {kind} {name!r} -> {roles}")
    if len(lines) == 1:
        lines.append("  (empty: the SCIM ingress grants no roles)")
    return lines
