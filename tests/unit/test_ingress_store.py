"""The ingress's storage: write-through to the state topic, undone when the broker refuses."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from scim2_models import Group, GroupMember, NotFoundException

from consumer.ingress.resources import GROUP_TYPE, USER_TYPE, IngressUser
from consumer.ingress.store import PersistedStorage, StoreUnavailable, resource_key


class RecordingJournal:
    """Stands in for the state topic: keeps what is written, or refuses while `down`."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any] | None] = {}
        self.down = False

    async def put(self, key: str, document: dict[str, Any] | None) -> None:
        """Keep the record, or raise what aiokafka raises for an unreachable broker."""
        if self.down:
            raise KafkaConnectionError("broker down")
        self.records[key] = document


def storage(journal: RecordingJournal, changed: list[frozenset[str]]) -> PersistedStorage:
    """A storage writing through `journal`, noting the users each change concerns."""
    return PersistedStorage(
        journal,  # type: ignore[arg-type]
        on_change=changed.append,
        max_record_bytes=1_048_576,
    )


async def test_each_change_is_written_and_names_the_users_it_concerns() -> None:
    """Create, update and delete each write a record (a tombstone last) and notify their users."""
    journal, changed = RecordingJournal(), []
    store = storage(journal, changed)
    user = await store.create(USER_TYPE, IngressUser(user_name="jdoe", password="s3cret-Pass"))
    assert "password" not in str(journal.records[resource_key(user)])
    group = await store.create(
        GROUP_TYPE, Group(display_name="CC Agents", members=[GroupMember(value=user.id)])
    )
    emptied = group.model_copy(update={"members": []})
    await store.update(GROUP_TYPE, emptied)
    await store.delete(GROUP_TYPE, str(group.id))
    # The emptied group concerned nobody any more when it was deleted.
    assert changed == [frozenset({user.id})] * 3 + [frozenset()]
    assert journal.records[resource_key(group)] is None


async def test_a_refused_write_is_undone_and_answered_503() -> None:
    """When the broker refuses, the memory is as before and the IdP gets 503 to retry."""
    journal, changed = RecordingJournal(), []
    store = storage(journal, changed)
    group = await store.create(GROUP_TYPE, Group(display_name="CC Agents"))
    journal.down = True
    with pytest.raises(StoreUnavailable):
        await store.create(USER_TYPE, IngressUser(user_name="jdoe"))
    with pytest.raises(StoreUnavailable):
        await store.update(GROUP_TYPE, group.model_copy(update={"display_name": "Renamed"}))
    with pytest.raises(StoreUnavailable):
        await store.delete(GROUP_TYPE, str(group.id))
    assert [r.display_name for r in store.resources() if isinstance(r, Group)] == ["CC Agents"]
    assert len(store.resources()) == 1
    assert StoreUnavailable().status == 503
    with pytest.raises(NotFoundException):
        await store.get(USER_TYPE, "anything")
    assert len(changed) == 1


async def test_loading_the_topic_restores_resources_and_continues_versions() -> None:
    """Records read back give the same resources, and the next version is a new one."""
    journal, changed = RecordingJournal(), []
    first = storage(journal, changed)
    user = await first.create(USER_TYPE, IngressUser(user_name="jdoe"))
    updated = await first.update(USER_TYPE, user.model_copy(update={"display_name": "Jane"}))
    second = storage(RecordingJournal(), [])
    second.load({key: doc for key, doc in journal.records.items() if doc is not None})
    restored = await second.get(USER_TYPE, str(user.id))
    assert restored.model_dump() == updated.model_dump()
    again = await second.update(USER_TYPE, restored.model_copy(update={"display_name": "J."}))
    assert again.meta is not None
    assert updated.meta is not None
    assert again.meta.version not in {
        updated.meta.version,
        user.meta.version if user.meta else None,
    }
