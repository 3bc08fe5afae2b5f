"""Which tenant users the doctor looks at: those the input topic named lately, and a file's.

CXone answers `GET /Users` only with a filter, so there is no listing every user; the users
worth comparing with the policy are the ones the IdP sends events for.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from consumer.errors import ConfigurationError
from consumer.events import is_valid_user_id


def read_users_file(path: Path) -> list[str]:
    """User ids, one a line; blank lines and `#` comments are skipped; a bad id is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ConfigurationError(f"--users {path}: {reason}") from None
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        user_id = line.partition("#")[0].strip()
        if not user_id:
            continue
        if not is_valid_user_id(user_id):
            raise ConfigurationError(f"--users {path}:{number}: not a CXone user id")
        found.append(user_id)
    return found


def chosen_users(*sources: Iterable[str], limit: int) -> list[str]:
    """The ids of every source, first seen first, without repeats, at most `limit`."""
    chosen: dict[str, None] = {}
    for source in sources:
        for user_id in source:
            if len(chosen) >= limit:
                return list(chosen)
            chosen.setdefault(user_id, None)
    return list(chosen)
