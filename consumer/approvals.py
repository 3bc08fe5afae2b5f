"""Signed approvals: the canonical text of an approval and its HMAC-SHA256 signature.

Pure. Every field of an approval is signed, so none can be altered, added or removed: the lines
`user_id`, the privileged role ids granted (sorted, joined by commas), `ticket`, `approved_by`
and `expires_at` (empty when absent), joined by "\\n". No signed field can hold a line break
(the event schema refuses control characters in `ticket` and `approved_by`; user and role ids
have patterns of their own), so one text never stands for two approvals.

`expires_at` is signed as the instant it names, not as the characters sent: in UTC, as
`YYYY-MM-DDTHH:MM:SSZ`, with `.ffffff` (six digits) before the `Z` when it has a fraction of a
second. `2030-06-30T17:00:00+02:00` and `2030-06-30T15:00:00Z` sign the same text.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from datetime import UTC, datetime

__all__ = ["approval_signature", "canonical_approval", "expires_at_text", "signature_matches"]


def expires_at_text(expires_at: datetime | None) -> str:
    """The signed text of an `expires_at`: UTC RFC 3339 with a `Z`, or empty when absent."""
    if expires_at is None:
        return ""
    instant = expires_at.astimezone(UTC)
    fraction = f".{instant.microsecond:06d}" if instant.microsecond else ""
    return f"{instant:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def canonical_approval(
    *,
    user_id: str,
    privileged_role_ids: Collection[str],
    ticket: str,
    approved_by: str,
    expires_at: datetime | None,
) -> str:
    """The text an approval's signature covers: one line per field, joined by "\\n"."""
    return "\n".join(
        (
            user_id,
            ",".join(sorted(privileged_role_ids)),
            ticket,
            approved_by,
            expires_at_text(expires_at),
        )
    )


def approval_signature(
    key: bytes,
    *,
    user_id: str,
    privileged_role_ids: Collection[str],
    ticket: str,
    approved_by: str,
    expires_at: datetime | None = None,
) -> str:
    """The signature an approval of these privileged roles must carry: lowercase hex HMAC-SHA256."""
    canonical = canonical_approval(
        user_id=user_id,
        privileged_role_ids=privileged_role_ids,
        ticket=ticket,
        approved_by=approved_by,
        expires_at=expires_at,
    )
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_matches(signature: str | None, expected: str) -> bool:
    """Whether a given signature is the expected one, compared in constant time."""
    if signature is None:
        return False
    return hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), expected.encode())
