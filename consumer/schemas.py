"""The JSON Schemas of the public formats; `python -m consumer.schemas DIR` writes them."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consumer.catalog import PolicyFile
from consumer.events import json_schemas

POLICY_SCHEMA = "policy.schema.json"


def generated_schemas() -> dict[str, str]:
    """The text of every schema file, by file name, exactly as it is committed."""
    schemas: dict[str, dict[str, Any]] = {
        **json_schemas(),
        POLICY_SCHEMA: PolicyFile.model_json_schema(),
    }
    return {
        name: json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in sorted(schemas.items())
    }


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into `directory`, creating it; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generated_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Write the schema files into the directory named on the command line."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m consumer.schemas DIR", file=sys.stderr)
        return 2
    for path in write_schemas(Path(args[0])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
