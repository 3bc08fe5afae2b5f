"""The policy's catalog held against the roles tenant users hold, pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consumer.catalog import RoleCatalog
from consumer.doctor.findings import Finding, fail, listing, ok, warn


@dataclass(frozen=True)
class TenantRoles:
    """The role values each user read from the tenant holds, by user id."""

    held: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, users: Iterable[tuple[str, Iterable[str]]]) -> TenantRoles:
        """From (user id, role values) pairs."""
        return cls({user_id: frozenset(values) for user_id, values in users})

    @property
    def values(self) -> frozenset[str]:
        """Every role value any user holds."""
        return frozenset().union(*self.held.values()) if self.held else frozenset()


def unknown_roles(catalog: RoleCatalog, tenant: TenantRoles) -> Finding:
    """Role values tenant users hold that the catalog does not define: fail, naming who."""
    check = "roles unknown"
    if not tenant.held:
        return warn(check, "no tenant user read: nothing to compare (see --users)")
    unknown = {value for value in tenant.values if value not in catalog}
    if not unknown:
        return ok(check, f"every role the {len(tenant.held)} users read hold is in the policy")
    holders = sorted(user for user, values in tenant.held.items() if values & unknown)
    return fail(
        check,
        f"{len(unknown)} role values on tenant users are not in the policy: {listing(unknown)} "
        f"(held by {listing(holders, limit=4)}); the service removes them at a user's next "
        "event and can never grant them: add them to the catalog, or check the role ids",
    )


def unheld_roles(catalog: RoleCatalog, tenant: TenantRoles) -> Finding:
    """Catalog roles no user read holds: worth a look (a role id that is not CXone's?)."""
    check = "roles unheld"
    if not tenant.held:
        return warn(check, "no tenant user read: nothing to compare (see --users)")
    unheld = {role_id for role_id in catalog if role_id not in tenant.values}
    if not unheld:
        return ok(check, f"every policy role is held by one of the {len(tenant.held)} users read")
    return warn(
        check,
        f"{len(unheld)} of {len(catalog)} policy roles are held by none of the "
        f"{len(tenant.held)} users read: {listing(unheld)}; check each is a CXone role value",
    )
