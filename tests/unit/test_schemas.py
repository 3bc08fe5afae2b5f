"""The committed JSON Schemas match what the models generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.schemas import generated_schemas, main

SCHEMAS = Path(__file__).parents[2] / "schemas"


def test_all_three_schemas_are_generated() -> None:
    """The generator produces the event, result and policy schemas."""
    assert sorted(generated_schemas()) == [
        "policy.schema.json",
        "role-change-event.schema.json",
        "sync-result.schema.json",
    ]


@pytest.mark.parametrize("name", sorted(generated_schemas()))
def test_committed_schema_matches_the_model(name: str) -> None:
    """A committed schema file equals the one generated from the code."""
    committed = SCHEMAS / name
    assert committed.is_file(), f"schemas/{name} is missing: run `make schemas`"
    assert committed.read_text(encoding="utf-8") == generated_schemas()[name], (
        f"schemas/{name} is out of date with the code: run `make schemas` and commit the result"
    )


def test_policy_schema_forbids_unknown_fields() -> None:
    """The policy schema refuses fields the loader would refuse."""
    schema = json.loads(generated_schemas()["policy.schema.json"])
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["RoleDefinition"]["additionalProperties"] is False
    assert schema["properties"]["roles"]["additionalProperties"] is False
    assert schema["properties"]["max_roles_per_user"]["minimum"] == 1


def test_main_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m consumer.schemas DIR` writes every schema into DIR."""
    assert main([str(tmp_path / "out")]) == 0
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == sorted(generated_schemas())
    assert (tmp_path / "out" / "policy.schema.json").read_text(encoding="utf-8") == (
        generated_schemas()["policy.schema.json"]
    )
    assert capsys.readouterr().out.count("wrote ") == 3


def test_main_without_a_directory_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """Called without a directory, the generator says how to call it and fails."""
    assert main([]) == 2
    assert "usage: python -m consumer.schemas DIR" in capsys.readouterr().err
