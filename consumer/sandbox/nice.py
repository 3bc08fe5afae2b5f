"""The SCIM user the simulator serves: the core `User` with NICE's user extension, as in CXone."""

from __future__ import annotations

from scim2_models import URN, Extension, User


class NiceUser(Extension):
    """NICE's user extension: team and login authenticator, owned by CXone admins, not by us."""

    __schema__ = URN("urn:ietf:params:scim:schemas:extension:nice:2.0:User")

    team: str | None = None
    login_authenticator: str | None = None


CxoneUser = User[NiceUser]
"""A CXone user as the SCIM API serves it."""
