"""Hostile input records: builders of invalid events, and hypothesis strategies over them.

Each builder starts from one valid event and breaks it one way; the unit fuzz tests draw the
parameters with hypothesis, the integration run uses a fixed, bounded selection of the same
builders. Every record built here must be classified invalid by the consumer.
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

from aiokafka import ConsumerRecord
from hypothesis import strategies as st

ALLOWED_USER_ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._@:-")

HOSTILE_USER_IDS = (
    "../x",
    "..",
    "a/b",
    "/etc/passwd",
    "%2e%2e",
    "%2e%2e%2fadmin",
    "http://evil.example",
    "//evil.example/x",
    "u-1001?filter=x",
    "u-1001#frag",
    "u 1001",
    "u-1001\n",
    "u-1001\r\nHost: evil",
    "u-1001\x00",
    "\u202eu-1001",  # right-to-left override
    "u\u20101001",  # a Unicode hyphen that looks like '-'
    "\uff55-1001",  # fullwidth 'u'
    "u-1001\u200b",  # zero-width space
    "\u0443-1001",  # Cyrillic 'u'
    ".hidden",
    "a..b",
    "",
    "u" * 129,
)


# Valid CXone ids (':' '.' '@' are allowed) that merely look like a host or a scheme.
URL_LOOKING_USER_IDS = ("https:evil.example", "evil.example:443", "admin@evil.example", "x:80")


def valid_document(user_id: str = "u-1001") -> dict[str, Any]:
    """A valid role-change event, as a JSON document."""
    return {
        "specversion": "1.0",
        "id": "evt-fuzz",
        "source": "okta/fuzz",
        "type": "idp.user.roles.changed",
        "subject": user_id,
        "data": {
            "user_id": user_id,
            "user_name": "jdoe@example.com",
            "roles": [
                {"role_id": "agent_basic", "primary": True},
                {"role_id": "reporting_viewer", "display_name": "Reporting Viewer"},
            ],
            "approval": {"ticket": "CHG-1", "approved_by": "secops"},
        },
    }


def encode(document: object) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _at(document: dict[str, Any], where: str) -> dict[str, Any]:
    """The object at `where`: `event`, `data`, `role` (the first) or `approval`."""
    if where == "event":
        return document
    if where == "data":
        return document["data"]  # type: ignore[no-any-return]
    if where == "role":
        return document["data"]["roles"][0]  # type: ignore[no-any-return]
    return document["data"]["approval"]  # type: ignore[no-any-return]


def truncated(cut: int) -> bytes:
    """A valid event cut short by `cut` bytes (at least one)."""
    whole = encode(valid_document())
    return whole[: max(0, len(whole) - max(1, cut))]


def nested(depth: int, where: str) -> bytes:
    """A value nested `depth` arrays deep: as the whole record, or in place of a field."""
    value = "[" * depth + "]" * depth
    if where == "record":
        return value.encode()
    marker = "__NESTED__"
    document = valid_document()
    if where == "user_name":
        document["data"]["user_name"] = marker
    elif where == "roles":
        document["data"]["roles"] = marker
    else:
        document["data"]["approval"]["ticket"] = marker
    return encode(document).replace(f'"{marker}"'.encode(), value.encode())


def with_user_id(user_id: str, *, subject: bool = True) -> bytes:
    """A valid event whose user id (and subject) is `user_id`."""
    document = valid_document()
    document["data"]["user_id"] = user_id
    if subject:
        document["subject"] = user_id
    else:
        del document["subject"]
    return encode(document)


WRONG_TYPES: dict[str, tuple[object, ...]] = {
    "specversion": (1.0, 1, None, ["1.0"], "2.0", ""),
    "id": (7, None, [], {}, True, ""),
    "type": ("idp.user.deleted", 1, None, ["idp.user.roles.changed"]),
    "data": ("u-1001", 1, None, [], True),
    "user_id": (1001, None, ["u-1001"], {"id": "u-1001"}, True),
    "roles": ("agent_basic", 1, {"role_id": "agent_basic"}, [1], ["agent_basic"], [None]),
    "primary": ("yes", 2, [], {}),
    "approval": ("CHG-1", 1, [], True),
}


def with_wrong_type(field: str, value: object) -> bytes:
    """A valid event with one field holding a value of the wrong type."""
    document = valid_document()
    if field in ("specversion", "id", "type", "data"):
        document[field] = value
    elif field == "primary":
        document["data"]["roles"][0]["primary"] = value
    else:
        document["data"][field] = value
    return encode(document)


def huge(field: str, size: int) -> bytes:
    """A valid event with one string field longer than its bound."""
    document = valid_document()
    text = "x" * size
    if field == "user_id":
        document["data"]["user_id"] = document["subject"] = text
    elif field == "role_id":
        document["data"]["roles"][0]["role_id"] = text
    elif field == "display_name":
        document["data"]["roles"][1]["display_name"] = text
    elif field == "id":
        document["id"] = text
    else:
        document["data"]["approval"]["ticket"] = text
    return encode(document)


HUGE_BOUNDS = {"user_id": 128, "role_id": 128, "display_name": 256, "id": 256, "ticket": 128}


def with_extra(where: str, key: str, value: object) -> bytes:
    """A valid event with one field its schema does not have."""
    document = valid_document()
    _at(document, where)[key] = value
    return encode(document)


KNOWN_KEYS = frozenset(
    {
        *valid_document().keys(),
        "time",
        "datacontenttype",
        *valid_document()["data"].keys(),
        "role_id",
        "display_name",
        "primary",
        "inherits_from",
        "ticket",
        "approved_by",
        "signature",
        "expires_at",
    }
)


def with_duplicate_key(where: str, key: str, first: object) -> bytes:
    """A valid event where `key` of the object at `where` also appears earlier with `first`.

    A parser that keeps the last value sees a valid event; the contract says such a record is
    invalid (a producer and the consumer could read different events from the same bytes).
    """
    document = valid_document()
    target = _at(document, where)
    rest = ",".join(
        f"{json.dumps(name)}:{json.dumps(value, separators=(',', ':'))}"
        for name, value in target.items()
    )
    duplicated = f"{{{json.dumps(key)}:{json.dumps(first)},{rest}}}"
    marker = "__DUPLICATED__"
    if where == "event":
        return duplicated.encode()
    if where == "data":
        document["data"] = marker
    elif where == "role":
        document["data"]["roles"][0] = marker
    else:
        document["data"]["approval"] = marker
    return encode(document).replace(f'"{marker}"'.encode(), duplicated.encode())


DUPLICATE_KEY_CASES = (
    ("data", "user_id", "u-9999"),
    ("event", "type", "idp.user.deactivated"),
    ("data", "roles", [{"role_id": "admin_support"}]),
    ("role", "role_id", "root_everything"),
    ("approval", "ticket", "CHG-FAKE"),
)


def forbidden_user_ids() -> st.SearchStrategy[str]:
    """Strings with at least one character a CXone user id may not hold, anywhere in them."""
    allowed = st.text(alphabet=sorted(ALLOWED_USER_ID_CHARACTERS - {"."}), max_size=20)
    forbidden = st.characters(
        blacklist_characters=sorted(ALLOWED_USER_ID_CHARACTERS), blacklist_categories=("Cs",)
    )
    return st.builds(lambda a, c, b: f"{a}{c}{b}", allowed, forbidden, allowed)


def hostile_records() -> st.SearchStrategy[bytes]:
    """Every kind of hostile record (except duplicate keys, which `DUPLICATE_KEY_CASES` covers)."""
    return st.one_of(
        # Random bytes that do not open a JSON object: Hypothesis also draws byte strings from
        # literals in the code under test, and one of those may be a whole valid event.
        st.binary(max_size=2048).filter(lambda value: not value.lstrip().startswith(b"{")),
        st.integers(min_value=1, max_value=400).map(truncated),
        st.builds(
            nested,
            # Depth 1 in place of the roles is an empty role list, which is valid.
            st.integers(min_value=2, max_value=5000),
            st.sampled_from(["record", "user_name", "roles", "ticket"]),
        ),
        st.sampled_from(HOSTILE_USER_IDS).map(with_user_id),
        st.builds(with_user_id, forbidden_user_ids(), subject=st.booleans()),
        st.sampled_from(
            [(field, value) for field, values in WRONG_TYPES.items() for value in values]
        ).map(lambda pair: with_wrong_type(*pair)),
        st.sampled_from(sorted(HUGE_BOUNDS)).flatmap(
            lambda field: st.integers(
                min_value=HUGE_BOUNDS[field] + 1, max_value=HUGE_BOUNDS[field] + 200_000
            ).map(lambda size: huge(field, size))
        ),
        st.builds(
            with_extra,
            st.sampled_from(["event", "data", "role", "approval"]),
            st.text(min_size=1, max_size=30).filter(lambda key: key not in KNOWN_KEYS),
            st.none() | st.integers() | st.text(max_size=20),
        ),
    )


def fixed_hostile_records(seed: int = 11) -> list[bytes]:
    """A bounded, repeatable selection of every kind of hostile record, for integration runs."""
    rng = random.Random(seed)
    records = [rng.randbytes(rng.randint(1, 300)) for _ in range(3)]
    records += [truncated(cut) for cut in (1, 40, 200)]
    records += [nested(depth, where) for depth, where in ((3000, "record"), (500, "roles"))]
    records += [with_user_id(user_id) for user_id in HOSTILE_USER_IDS]
    records += [with_wrong_type("user_id", 1001), with_wrong_type("roles", "agent_basic")]
    records += [huge("display_name", 100_000), huge("user_id", 129)]
    records += [with_extra("data", "is_admin", True), with_extra("role", "__proto__", {})]
    return records


def consumer_record(value: bytes | None, key: bytes | None = None) -> ConsumerRecord[bytes, bytes]:
    """A Kafka record as aiokafka hands it to the consumer."""
    return ConsumerRecord(
        topic="idp.role-changes",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[],
    )
