"""What the ingress serves (users with the enterprise extension, groups) and how it reads them.

Pure: the SCIM provider description, and the IdP's view (`IdpView`) taken from stored resources.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    Patch,
    Resource,
    ResourceType,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

from consumer.ingress.desired import IdpGroup, IdpUser, IdpView

__all__ = [
    "GROUP_TYPE",
    "MAX_RESULTS",
    "USER_TYPE",
    "affected_users",
    "ingress_provider",
    "resource_class",
    "view_of",
]

# IdPs page through users and groups; one page is bounded so one request is.
MAX_RESULTS = 200
IngressUser = User[EnterpriseUser]
USER_TYPE = ResourceType.from_resource(IngressUser)
GROUP_TYPE = ResourceType.from_resource(Group)


def ingress_provider() -> ScimProvider:
    """Users (with the enterprise extension IdPs send) and groups; PATCH, filters, ETags."""
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="The INGRESS_TOKEN secret, as `Authorization: Bearer <token>`.",
                primary=True,
            )
        ],
    )
    return ScimProvider(
        [User, Group, EnterpriseUser], resource_types=[USER_TYPE, GROUP_TYPE], config=config
    )


def resource_class(resource_type: str) -> type[Resource[Any]]:
    """The model a stored resource of this type is read back with."""
    return IngressUser if resource_type == USER_TYPE.name else Group


def _idp_user(user: User[Any]) -> IdpUser:
    values = frozenset(role.value for role in user.roles or () if isinstance(role.value, str))
    return IdpUser(
        id=str(user.id),
        user_name=str(user.user_name or ""),
        external_id=user.external_id,
        # RFC 7643: a user without `active` is not said to be inactive.
        active=user.active is not False,
        role_values=values,
    )


def _idp_group(group: Group) -> IdpGroup:
    members = frozenset(
        str(member.value)
        for member in group.members or ()
        if member.value is not None and member.type in (None, "User")
    )
    return IdpGroup(
        id=str(group.id), display_name=str(group.display_name or ""), member_ids=members
    )


def view_of(resources: Iterable[Resource[Any]]) -> IdpView:
    """The IdP's view held by these stored users and groups."""
    users: dict[str, IdpUser] = {}
    groups: dict[str, IdpGroup] = {}
    for resource in resources:
        if isinstance(resource, User):
            users[str(resource.id)] = _idp_user(resource)
        elif isinstance(resource, Group):
            groups[str(resource.id)] = _idp_group(resource)
    return IdpView(users=users, groups=groups)


def affected_users(before: Resource[Any] | None, after: Resource[Any] | None) -> frozenset[str]:
    """The users whose desired state a change from `before` to `after` may alter."""
    found: set[str] = set()
    for resource in (before, after):
        if isinstance(resource, User) and resource.id is not None:
            found.add(str(resource.id))
        elif isinstance(resource, Group):
            found |= _idp_group(resource).member_ids
    return frozenset(found)
