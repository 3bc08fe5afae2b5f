"""Fuzzing the real decode-and-validate path: every hostile record is classified invalid.

`read_record` (the consumer's decoding of a Kafka record, through `parse_event`) gets random
bytes, truncated and deeply nested JSON, wrong types, huge strings, odd Unicode and control
characters in ids, extra fields and duplicate keys. None of it may raise, and every record must
come out invalid with a documented reason. Separately, no string whatsoever can make the SCIM
client's URL leave the configured base URL.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import InvalidEvent
from consumer.events import is_valid_user_id, parse_event
from consumer.scim.client import user_path
from consumer.stream.publisher import DEFAULT_MAX_RECORD_BYTES
from consumer.stream.work import read_record
from tests.hostile import (
    DUPLICATE_KEY_CASES,
    HOSTILE_USER_IDS,
    URL_LOOKING_USER_IDS,
    encode,
    hostile_records,
    nested,
    valid_document,
    with_duplicate_key,
    with_user_id,
)
from tests.hostile import (
    consumer_record as record,
)

REASONS = {"invalid_json", "schema_violation", "too_large"}
BASE_URL = "https://cxone.example.com/scim/v2"


def classify(value: bytes | None, key: bytes | None = None) -> str:
    """The reason the consumer gives a record, or `valid`."""
    item = read_record(record(value, key), epoch=0, now=0.0, max_bytes=DEFAULT_MAX_RECORD_BYTES)
    if item.invalid is not None:
        assert item.event is None
        return item.invalid.reason
    assert item.event is not None
    return "valid"


def test_the_base_event_is_valid() -> None:
    """The base of every hostile record is valid under its key; without the key, a key_mismatch."""
    assert classify(encode(valid_document()), key=b"u-1001") == "valid"
    assert classify(encode(valid_document())) == "key_mismatch"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_records())
def test_every_hostile_record_is_classified_invalid(value: bytes) -> None:
    """Random bytes, truncation, nesting, wrong types, huge strings, odd ids, extra keys."""
    assert classify(value) in REASONS


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), hostile_records())
def test_a_hostile_key_never_makes_a_record_valid(key: bytes, value: bytes) -> None:
    """Whatever the record key, a hostile value stays invalid, and decoding never raises."""
    assert classify(value, key=key) in REASONS


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300).filter(lambda key: key != b"u-1001"))
def test_a_key_other_than_the_user_id_makes_a_valid_event_invalid(key: bytes) -> None:
    """A record whose key is not data.user_id is a key_mismatch (it would be routed wrongly)."""
    assert classify(encode(valid_document()), key=key) == "key_mismatch"


@pytest.mark.parametrize("user_id", HOSTILE_USER_IDS)
def test_hostile_user_ids_are_invalid_with_or_without_a_subject(user_id: str) -> None:
    """Path tricks, URLs, control characters and confusables in the user id: schema violation."""
    assert classify(with_user_id(user_id)) == "schema_violation"
    assert classify(with_user_id(user_id, subject=False)) == "schema_violation"


@pytest.mark.parametrize("depth", [100, 1000, 10_000, 100_000])
@pytest.mark.parametrize("where", ["record", "user_name", "roles", "ticket"])
def test_deep_nesting_is_invalid_and_never_exhausts_the_stack(depth: int, where: str) -> None:
    """Arrays nested up to 100 000 deep, as the record or in a field, are invalid, not a crash."""
    assert classify(nested(depth, where)) in REASONS


@pytest.mark.parametrize(("where", "key", "first"), DUPLICATE_KEY_CASES)
def test_duplicate_keys_make_a_record_invalid(where: str, key: str, first: object) -> None:
    """A key given twice (a producer and the consumer could read different events): invalid."""
    value = with_duplicate_key(where, key, first)
    assert value.count(f'"{key}":'.encode()) >= 2
    assert classify(value) in REASONS


@pytest.mark.parametrize("user_id", HOSTILE_USER_IDS)
def test_a_hostile_user_id_never_becomes_a_path(user_id: str) -> None:
    """The SCIM client refuses to build a path from any id the event model refuses."""
    with pytest.raises(InvalidEvent):
        user_path(user_id)


@pytest.mark.parametrize("user_id", URL_LOOKING_USER_IDS)
def test_an_id_that_looks_like_a_host_stays_a_path_segment(user_id: str) -> None:
    """A valid id holding ':' '@' '.' is percent-encoded into one segment under the base URL."""
    assert classify(with_user_id(user_id), key=user_id.encode()) == "valid"
    url = httpx.URL(f"{BASE_URL}/{user_path(user_id)}")
    assert url.host == "cxone.example.com"
    assert url.raw_path.startswith(b"/scim/v2/Users/")
    assert b"/" not in url.raw_path.removeprefix(b"/scim/v2/Users/")
    assert b":" not in url.raw_path
    assert b"@" not in url.raw_path


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200) | st.sampled_from(HOSTILE_USER_IDS + URL_LOOKING_USER_IDS))
def test_no_string_makes_the_scim_url_leave_the_base_url(user_id: str) -> None:
    """Any string is refused, or becomes exactly base URL + /Users/ + that id, on the same host."""
    try:
        path = user_path(user_id)
    except InvalidEvent:
        assert not is_valid_user_id(user_id)
        return
    url = httpx.URL(f"{BASE_URL}/{path}")
    assert is_valid_user_id(user_id)
    assert (url.scheme, url.host, url.port) == ("https", "cxone.example.com", None)
    assert url.path == f"/scim/v2/Users/{user_id}"
    assert (url.query, url.fragment) == (b"", "")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_model_and_the_client_agree_on_user_ids(user_id: str) -> None:
    """An id the event model accepts is one the client can place in a path, and the reverse."""
    try:
        parse_event(with_user_id(user_id))
        model_accepts = True
    except InvalidEvent:
        model_accepts = False
    assert model_accepts == is_valid_user_id(user_id)
