"""Which CXone user an IdP user is: the documented rule, `INGRESS_USER_ID`.

`user_name` (the default): the CXone user whose userName equals the IdP user's, found by CXone's
SCIM search and remembered with the emitted state; `external_id`: the IdP's externalId is the
CXone id. A user not found (yet) has no CXone id: nothing is emitted for it, and the emitter asks
again on its retry timer (CXone's own provisioning may create the user later).
"""

from __future__ import annotations

from consumer.errors import SyncError
from consumer.events import is_valid_user_id
from consumer.ingress.desired import IdpUser
from consumer.ingress.settings import UserIdRule
from consumer.scim.client import ScimClient

__all__ = ["CxoneDirectory", "Unresolved"]


class Unresolved(Exception):
    """The IdP user has no CXone user (yet), or CXone could not be asked; retried later."""


class CxoneDirectory:
    """Finds the CXone id of an IdP user by the configured rule."""

    def __init__(self, rule: UserIdRule, scim: ScimClient | None) -> None:
        if rule is UserIdRule.USER_NAME and scim is None:
            raise ValueError("the user_name rule needs a SCIM client")
        self._rule = rule
        self._scim = scim

    async def cxone_id(self, user: IdpUser) -> str:
        """The CXone id of the IdP user; `Unresolved` saying why when there is none."""
        if self._rule is UserIdRule.EXTERNAL_ID:
            candidate = user.external_id
            if candidate is None or not is_valid_user_id(candidate):
                raise Unresolved("no externalId that is a CXone user id")
            return candidate
        assert self._scim is not None
        if not user.user_name:
            raise Unresolved("no userName")
        try:
            found = await self._scim.find_user_id(user.user_name)
        except SyncError as error:
            raise Unresolved(f"CXone search failed: {type(error).__name__}") from error
        if found is None or not is_valid_user_id(found):
            raise Unresolved("no single CXone user with this userName")
        return found
