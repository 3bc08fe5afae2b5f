"""An audit record never exceeds KAFKA_MAX_RECORD_BYTES: `detail` (then roles) cut, and said so."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from consumer.events import Outcome, SourcePosition, SyncResult, parse_event
from consumer.stream.publisher import audit_envelope
from consumer.sync import Synchronizer
from tests.unit.cxone_in_memory import InMemoryCxone
from tests.unit.test_policy import POLICY

LIMIT = 16_384
NOTE = " [detail cut to fit KAFKA_MAX_RECORD_BYTES: "


def result(**fields: object) -> SyncResult:
    """A rejected result of u-1 at offset 7; `fields` override."""
    values: dict[str, object] = {
        "event_id": "e-1",
        "user_id": "u-1",
        "outcome": Outcome.REJECTED,
        "reason": "unknown_role",
        "escalation": True,
        "source": SourcePosition(topic="idp.role-changes", partition=0, offset=7),
        "processed_at": datetime(2026, 11, 28, 15, 0, tzinfo=UTC),
        **fields,
    }
    return SyncResult.model_validate(values)


def hostile_input(size: int) -> bytes:
    """A valid event of exactly `size` bytes asking for as many long unknown roles as fit."""
    document = {
        "specversion": "1.0",
        "id": "e-big",
        "source": "okta/test",
        "type": "idp.user.roles.changed",
        "data": {"user_id": "u-1", "roles": [{"role_id": "agent"}], "user_name": "x"},
    }
    roles = document["data"]["roles"]  # type: ignore[index]
    while len(json.dumps(document)) + 140 < size:
        roles.append({"role_id": f"r{len(roles):04d}-" + "x" * 120})
    padding = size - len(json.dumps(document)) + 1
    document["data"]["user_name"] = "x" * padding  # type: ignore[index]
    value = json.dumps(document).encode()
    assert len(value) == size
    return value


def test_a_result_that_fits_is_sent_as_it_is() -> None:
    """A small result's record is its audit event, detail untouched."""
    small = result(detail="unknown_role: role 'ghost' is not in the catalog")
    envelope = audit_envelope(small, max_record_bytes=LIMIT)
    assert envelope.size <= LIMIT
    assert envelope.value is not None
    assert json.loads(envelope.value)["data"]["detail"] == small.detail


def test_the_audit_of_a_16284_byte_input_fits_under_a_16384_byte_limit() -> None:
    """A 16,284-byte event of unknown roles: detail is cut so its audit fits, and says so."""
    value = hostile_input(16_284)
    event = parse_event(value)
    cxone = InMemoryCxone({"id": "u-1", "userName": "u-1", "active": True, "roles": []})
    sync = Synchronizer(POLICY, cxone)  # type: ignore[arg-type]
    source = SourcePosition(topic="idp.role-changes", partition=0, offset=7)
    refused = asyncio.run(sync.apply(event, source=source, received_at=0.0)).result
    assert (refused.outcome, refused.reason) == (Outcome.REJECTED, "unknown_role")
    assert refused.detail is not None
    uncut = audit_envelope(refused, max_record_bytes=10 * LIMIT)
    assert uncut.size > LIMIT  # what an unbounded detail would have sent
    envelope = audit_envelope(refused, max_record_bytes=LIMIT)
    assert envelope.size <= LIMIT
    assert envelope.value is not None
    detail = json.loads(envelope.value)["data"]["detail"]
    kept, _, note = detail.partition(NOTE)
    assert refused.detail.startswith(kept)
    assert note == f"{len(kept)} of {len(refused.detail)} characters]"
    assert LIMIT - envelope.size < 300  # cut to the longest prefix that fits, not far below


def test_roles_are_cut_only_when_the_record_cannot_fit_without_detail() -> None:
    """Thousands of long held roles: both lists are cut to a prefix and the detail says how."""
    held = tuple(f"role-{index:05d}-" + "y" * 100 for index in range(400))
    big = result(roles_before=held, roles_after=held[:10], detail="z" * 5_000)
    envelope = audit_envelope(big, max_record_bytes=LIMIT)
    assert envelope.size <= LIMIT
    assert envelope.value is not None
    data = json.loads(envelope.value)["data"]
    kept = len(data["roles_before"])
    assert 0 < kept < len(held)
    assert tuple(data["roles_before"]) == held[:kept]
    assert data["roles_after"] == list(held[:10])
    assert data["detail"] == (
        "[detail and roles cut to fit KAFKA_MAX_RECORD_BYTES: detail of 5000 characters left"
        f" out, roles_before {kept} of 400, roles_after 10 of 10 kept]"
    )


@given(
    st.text(min_size=0, max_size=3_000),
    st.integers(min_value=900, max_value=6_000),
)
def test_an_audit_record_never_exceeds_the_limit(detail: str, limit: int) -> None:
    """Whatever the detail (escapes, emoji, quotes), the record fits; cut only when it must."""
    given_result = result(detail=detail or None)
    envelope = audit_envelope(given_result, max_record_bytes=limit)
    assert envelope.size <= limit
    assert envelope.value is not None
    sent = json.loads(envelope.value)["data"]["detail"]
    whole = audit_envelope(given_result, max_record_bytes=10**9)
    if whole.size <= limit:
        assert sent == given_result.detail
    else:
        kept, _, _ = sent.partition(NOTE)
        assert detail.startswith(kept)
        assert NOTE in sent
