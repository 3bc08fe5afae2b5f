"""IdP quirks rewritten to RFC 7644: Entra's value-carrying member removes."""

from __future__ import annotations

import json

from consumer.ingress.compat import standard_patch


def body(*operations: object) -> bytes:
    """A PatchOp body holding these operations."""
    return json.dumps(
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": list(operations),
        }
    ).encode()


def test_entra_member_remove_becomes_one_filtered_remove_per_value() -> None:
    """Remove with a list of {value} becomes removes with `members[value eq "..."]` paths."""
    entra = body({"op": "Remove", "path": "members", "value": [{"value": "a1"}, {"value": 'b"2'}]})
    assert json.loads(standard_patch(entra))["Operations"] == [
        {"op": "remove", "path": 'members[value eq "a1"]'},
        {"op": "remove", "path": 'members[value eq "b\\"2"]'},
    ]


def test_standard_and_unreadable_bodies_pass_unchanged() -> None:
    """A filtered remove, an add, a remove without value, and non-JSON are left as sent."""
    for unchanged in (
        body({"op": "remove", "path": 'members[value eq "a1"]'}),
        body({"op": "Add", "path": "members", "value": [{"value": "a1"}]}),
        body({"op": "remove", "path": "members"}),
        body({"op": "remove", "path": "members", "value": [{"display": "no value"}]}),
        b"[" * 5000,
        b"{not json",
        b'{"Operations": "nope"}',
    ):
        assert standard_patch(unchanged) == unchanged
