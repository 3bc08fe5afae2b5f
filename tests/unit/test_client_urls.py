"""Tests of the SCIM client's parsed request URLs: parsed once per path, equal to a fresh parse."""

from __future__ import annotations

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events import is_valid_user_id
from consumer.scim.client import ScimClient, user_path

BASE = "https://tenant.example/scim/v2"


def client() -> ScimClient:
    """A client that sends nothing in these tests."""
    return ScimClient(BASE, httpx.AsyncClient(), auth=None)


USER_IDS = st.text(alphabet="ABCXYZabcxyz0189._@:-", min_size=1, max_size=128).filter(
    is_valid_user_id
)


@settings(max_examples=100, deadline=None)
@given(user_id=USER_IDS)
def test_a_parsed_url_is_the_url_httpx_parses_from_the_string(user_id: str) -> None:
    """For any valid user id, the kept URL equals a fresh parse of base + path, twice over."""
    scim = client()
    path = user_path(user_id)
    expected = httpx.URL(f"{BASE}/{path}")
    assert scim._url(path) == expected
    assert scim._url(path) == expected
    assert str(scim._url(path)) == str(expected)


def test_a_user_s_get_and_put_share_one_parse() -> None:
    """The same path twice is parsed once; another user's path is parsed on its own."""
    scim = client()
    first = scim._url(user_path("u-1001"))
    assert scim._url(user_path("u-1001")) is first
    other = scim._url(user_path("u-1002"))
    assert other is not first
    assert other.path == "/scim/v2/Users/u-1002"
    assert scim._url.cache_info().misses == 2
