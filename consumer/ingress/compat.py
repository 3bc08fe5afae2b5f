"""IdP quirks that RFC 7644 does not allow, turned into the standard request: pure.

Entra ID removes group members with `{"op": "Remove", "path": "members", "value": [{"value":
"<id>"}]}`, a value on a remove, which RFC 7644 §3.5.2.2 expresses as a filter in the path. Each
listed value becomes one standard remove, `members[value eq "<id>"]`. Everything else passes
unchanged (scim2-models already reads ops in any case, and "True"/"False" for a boolean).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["standard_patch"]


def standard_patch(body: bytes) -> bytes:
    """The PATCH body with value-carrying removes rewritten as filtered removes; else unchanged."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return body  # scim2-server reports what is wrong with it
    if not isinstance(document, dict) or not isinstance(document.get("Operations"), list):
        return body
    operations: list[Any] = []
    changed = False
    for operation in document["Operations"]:
        rewritten = _filtered_removes(operation)
        changed |= rewritten is not None
        operations.extend(rewritten if rewritten is not None else [operation])
    if not changed:
        return body
    return json.dumps({**document, "Operations": operations}).encode()


def _filtered_removes(operation: Any) -> list[dict[str, Any]] | None:
    if not isinstance(operation, dict) or str(operation.get("op", "")).lower() != "remove":
        return None
    path, value = operation.get("path"), operation.get("value")
    if not isinstance(path, str) or "[" in path or not isinstance(value, list) or not value:
        return None
    if not all(isinstance(item, dict) and isinstance(item.get("value"), str) for item in value):
        return None
    return [
        {"op": "remove", "path": f"{path}[value eq {json.dumps(item['value'])}]"} for item in value
    ]
