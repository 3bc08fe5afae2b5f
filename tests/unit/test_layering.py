"""The import rules the package docstrings state, checked on the source of every module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, and whether at module level."""

    importer: str
    imported: str
    top_level: bool
    function: str | None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_of(path: Path) -> Iterator[Import]:
    importer = _module_name(path)
    tree = ast.parse(path.read_text())

    def visit(node: ast.AST, function: str | None) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, function or child.name)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(importer, alias.name, function is None, function)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                yield Import(importer, child.module, function is None, function)
                # `from consumer.scim import mapping` imports the module consumer.scim.mapping.
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    if (PACKAGE.parent / (submodule.replace(".", "/") + ".py")).exists():
                        yield Import(importer, submodule, function is None, function)
            yield from visit(child, function)

    yield from visit(tree, None)


IMPORTS = [found for path in sorted(PACKAGE.rglob("*.py")) for found in _imports_of(path)]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _closure(start: str) -> set[str]:
    """Every consumer module `start` loads at import time (module-level imports, transitively)."""
    seen = {start}
    todo = [start]
    while todo:
        importer = todo.pop()
        found = {
            each.imported
            for each in IMPORTS
            if each.importer == importer and each.top_level and _within(each.imported, "consumer")
        }
        todo += found - seen
        seen |= found
    return seen


def test_only_the_demo_imports_the_sandbox() -> None:
    """Outside consumer/sandbox only the demo (and its summary) import the sandbox."""
    importers = {
        found.importer
        for found in IMPORTS
        if _within(found.imported, "consumer.sandbox")
        and not _within(found.importer, "consumer.sandbox")
    }
    assert importers == {"consumer.demo", "consumer.demo_ingress", "consumer.demo_summary"}


def test_the_cli_loads_the_demo_only_in_the_demo_and_sandbox_commands() -> None:
    """The CLI imports consumer.demo inside the demo and sandbox commands, never at start-up."""
    demo_imports = [found for found in IMPORTS if found.imported == "consumer.demo"]
    outside_sandbox = {
        found.importer for found in demo_imports if not _within(found.importer, "consumer.sandbox")
    }
    assert outside_sandbox == {"consumer.cli"}
    in_cli = {found.function for found in demo_imports if found.importer == "consumer.cli"}
    assert in_cli == {"demo", "sandbox", "_checked_policy"}


def test_the_service_and_replay_never_load_the_sandbox() -> None:
    """What `run` and `replay` load at import time holds no sandbox or demo module."""
    for start in ("consumer.cli", "consumer.service", "consumer.replay"):
        loaded = _closure(start)
        assert not {m for m in loaded if _within(m, "consumer.sandbox") or m == "consumer.demo"}


PURE = (
    "consumer.policy",
    "consumer.scim.mapping",
    "consumer.fold",
    "consumer.approvals",
    "consumer.idp_mapping",
    "consumer.ingress.desired",
    "consumer.ingress.emission",
    "consumer.ingress.compat",
)
PURE_STDLIB = {
    "__future__",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "hashlib",
    "hmac",
    "json",
    "typing",
}
PURE_CONSUMER = {
    "consumer.approvals",
    "consumer.idp_mapping",
    "consumer.ingress",
    "consumer.ingress.desired",
    "consumer.catalog",
    "consumer.errors",
    "consumer.events",
    "consumer.policy",
    "consumer.scim",
    "consumer.scim.mapping",
}


def test_policy_mapping_and_fold_are_pure() -> None:
    """The functional core imports data and models only: no logging, clock, I/O or Kafka."""
    for module in PURE:
        imported = {found.imported for found in IMPORTS if found.importer == module}
        outside = {
            name
            for name in imported
            if name.split(".")[0] not in PURE_STDLIB | {"pydantic", "scim2_models"}
            and name not in PURE_CONSUMER
        }
        assert outside == set(), module


def test_sync_knows_nothing_of_kafka() -> None:
    """The synchronizer loads neither aiokafka nor the stream package."""
    loaded = _closure("consumer.sync")
    assert not {m for m in loaded if _within(m, "consumer.stream")}
    third_party = {
        found.imported.split(".")[0]
        for found in IMPORTS
        if found.importer in loaded and found.top_level
    }
    assert "aiokafka" not in third_party
    assert "structlog" in third_party  # the walk does see third-party imports


def _package_imports(package: str) -> set[str]:
    """The consumer modules outside `package` that its modules import, at any level."""
    return {
        found.imported
        for found in IMPORTS
        if _within(found.importer, package)
        and _within(found.imported, "consumer")
        and not _within(found.imported, package)
    }


def test_each_package_imports_only_what_its_docstring_allows() -> None:
    """scim/ and stream/ keep out of each other; observability/ needs only events and lifecycle."""
    scim = _package_imports("consumer.scim")
    assert not {
        m for m in scim for p in ("stream", "sync", "sandbox") if _within(m, f"consumer.{p}")
    }
    stream = _package_imports("consumer.stream")
    assert not {m for m in stream for p in ("scim", "sandbox") if _within(m, f"consumer.{p}")}
    assert _package_imports("consumer.observability") <= {
        "consumer",
        "consumer.events",
        "consumer.lifecycle",
    }
