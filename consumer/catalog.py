"""The policy file: its pydantic model, the role catalog with its hierarchy, and loading it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from consumer.errors import ConfigurationError
from consumer.events import RoleId
from consumer.idp_mapping import IdpMapping, check_mapping, describe_mapping

# Enough to fix a file in one pass without drowning the one-line message.
_MAX_REPORTED_ERRORS = 5


class _PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleDefinition(_PolicyModel):
    """One role of the catalog, as written in the policy file."""

    display_name: Annotated[
        str, Field(min_length=1, max_length=256, description="The name CXone shows for the role.")
    ]
    inherits_from: tuple[RoleId, ...] = Field(
        default=(), description="The roles whose permissions this role includes."
    )
    privileged: bool = Field(
        default=False,
        strict=True,
        description="Adding this role to a user who does not hold it needs an approval.",
    )


class MassRevocationGuardConfig(_PolicyModel):
    """How many revocations may arrive inside a window before revocations stop."""

    max_revocations: Annotated[int, Field(ge=1, strict=True)]
    window_seconds: Annotated[float, Field(gt=0, strict=True)]


class PolicyFile(_PolicyModel):
    """The least-privilege policy file (YAML), field for field."""

    max_roles_per_user: Annotated[
        int, Field(ge=1, strict=True, description="The most roles one user may be assigned.")
    ]
    max_hierarchy_depth: Annotated[
        int,
        Field(
            ge=1,
            strict=True,
            description="The longest inheritance chain, counted in roles, a user may be assigned.",
        ),
    ]
    roles: Annotated[
        dict[RoleId, RoleDefinition],
        Field(
            min_length=1,
            description="The catalog: every role a user may hold, by role id.",
            # Without it the schema would let a role id that breaks the pattern through.
            json_schema_extra={"additionalProperties": False},
        ),
    ]
    separation_of_duties: tuple[tuple[RoleId, RoleId], ...] = Field(
        default=(), description="Pairs of roles no user may hold together, even by inheritance."
    )
    mass_revocation_guard: MassRevocationGuardConfig | None = Field(
        default=None, description="Absent: revocations are never held back."
    )
    idp_mapping: IdpMapping | None = Field(
        default=None,
        description="For the SCIM ingress: the roles IdP groups and pushed role values grant.",
    )


def find_cycle(graph: Mapping[str, Sequence[str]]) -> tuple[str, ...] | None:
    """The first inheritance cycle in a role -> parents graph, as a path ending where it began."""
    return _depth_first(graph)[1]


def _depth_first(graph: Mapping[str, Sequence[str]]) -> tuple[list[str], tuple[str, ...] | None]:
    # Iterative, so a long chain cannot hit the recursion limit; parents come before children
    # in the returned order, which is what the depth computation needs.
    done: set[str] = set()
    order: list[str] = []
    for root in graph:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        pending = [iter(graph.get(root, ()))]
        while pending:
            parent = next(pending[-1], None)
            if parent is None:
                pending.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                order.append(finished)
            elif parent in on_path:
                return order, (*path[path.index(parent) :], parent)
            elif parent not in done:
                path.append(parent)
                on_path.add(parent)
                pending.append(iter(graph.get(parent, ())))
    return order, None


class RoleCatalog:
    """The roles a user may hold and what each inherits; closed and acyclic by construction."""

    __slots__ = ("_ancestors", "_chains", "_children", "_roles")

    def __init__(self, roles: Mapping[str, RoleDefinition]) -> None:
        for role_id, role in roles.items():
            for parent in role.inherits_from:
                if parent not in roles:
                    raise ConfigurationError(
                        f"role {role_id!r}: inherits from unknown role {parent!r}"
                    )
        order, cycle = _depth_first(
            {role_id: role.inherits_from for role_id, role in roles.items()}
        )
        if cycle is not None:
            raise ConfigurationError(f"role {cycle[0]!r}: inheritance cycle: {' -> '.join(cycle)}")
        self._roles = dict(roles)
        self._chains: dict[str, tuple[str, ...]] = {}
        self._ancestors: dict[str, frozenset[str]] = {}
        for role_id in order:
            parents = self._roles[role_id].inherits_from
            # max() keeps the first longest chain, so the reported chain follows file order.
            longest = max((self._chains[parent] for parent in parents), key=len, default=())
            self._chains[role_id] = (role_id, *longest)
            self._ancestors[role_id] = frozenset(parents).union(
                *(self._ancestors[parent] for parent in parents)
            )
        self._children: dict[str, tuple[str, ...]] = {
            role_id: tuple(child for child, role in roles.items() if role_id in role.inherits_from)
            for role_id in roles
        }

    def __contains__(self, role_id: object) -> bool:
        return role_id in self._roles

    def __iter__(self) -> Iterator[str]:
        return iter(self._roles)

    def __len__(self) -> int:
        return len(self._roles)

    def definition(self, role_id: str) -> RoleDefinition:
        """The role as the policy file defines it; KeyError for a role not in the catalog."""
        return self._roles[role_id]

    def display_name(self, role_id: str) -> str:
        """The name CXone shows for the role."""
        return self._roles[role_id].display_name

    def is_privileged(self, role_id: str) -> bool:
        """Whether the policy file marks the role `privileged`."""
        return self._roles[role_id].privileged

    def parents(self, role_id: str) -> frozenset[str]:
        """The roles this role inherits from directly."""
        return frozenset(self._roles[role_id].inherits_from)

    def ancestors(self, role_id: str) -> frozenset[str]:
        """Every role this role inherits from, transitively, not counting itself."""
        return self._ancestors[role_id]

    def children(self, role_id: str) -> tuple[str, ...]:
        """The roles that inherit from this one directly, in file order."""
        return self._children[role_id]

    def roots(self) -> tuple[str, ...]:
        """The roles that inherit from nothing, in file order."""
        return tuple(role_id for role_id, role in self._roles.items() if not role.inherits_from)

    def depth(self, role_id: str) -> int:
        """The longest inheritance chain from this role, counted in roles (a root role is 1)."""
        return len(self._chains[role_id])

    def longest_chain(self, role_id: str) -> tuple[str, ...]:
        """The role, its parent, and so on up the longest inheritance chain."""
        return self._chains[role_id]

    def effective_roles(self, role_ids: Iterable[str]) -> frozenset[str]:
        """The catalog roles among `role_ids` plus everything they inherit; others are ignored."""
        known = [role_id for role_id in role_ids if role_id in self._roles]
        return frozenset(known).union(*(self._ancestors[role_id] for role_id in known))


@dataclass(frozen=True, slots=True)
class Policy:
    """The checked policy that `consumer.policy.evaluate` decides against."""

    catalog: RoleCatalog
    max_roles_per_user: int
    max_hierarchy_depth: int
    separation_of_duties: tuple[tuple[str, str], ...] = ()
    mass_revocation_guard: MassRevocationGuardConfig | None = None
    idp_mapping: IdpMapping | None = None
    # The SHA-256 of the file's bytes, when the policy was loaded from a file.
    sha256: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_roles_per_user", "max_hierarchy_depth"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name}: must be at least 1")
        for first, second in self.separation_of_duties:
            for role_id in (first, second):
                if role_id not in self.catalog:
                    raise ConfigurationError(
                        f"role {role_id!r}: separation_of_duties pair [{first}, {second}]"
                        " names a role that is not in the catalog"
                    )
            if first == second:
                raise ConfigurationError(
                    f"role {first!r}: separation_of_duties pair names the same role twice"
                )
            # A role that inherits both sides of a pair could never be assigned: a contradiction
            # in the file, better caught by `check-policy` than by a rejected event.
            for role_id in self.catalog:
                if {first, second} <= self.catalog.effective_roles((role_id,)):
                    raise ConfigurationError(
                        f"role {role_id!r}: could never be assigned: with what it inherits it"
                        f" holds both {first!r} and {second!r}, a separation_of_duties pair"
                    )
        if self.idp_mapping is not None:
            check_mapping(self.idp_mapping, self.catalog)

    @classmethod
    def from_file(cls, model: PolicyFile) -> Policy:
        """The policy a validated policy file describes; ConfigurationError when it is unsound."""
        return cls(
            catalog=RoleCatalog(model.roles),
            max_roles_per_user=model.max_roles_per_user,
            max_hierarchy_depth=model.max_hierarchy_depth,
            separation_of_duties=model.separation_of_duties,
            mass_revocation_guard=model.mass_revocation_guard,
            idp_mapping=model.idp_mapping,
        )


def parse_policy(document: Any, *, source: str = "policy") -> Policy:
    """The policy from an already-parsed YAML document; ConfigurationError naming the problem."""
    if document is None:
        raise ConfigurationError(f"{source}: is empty")
    if not isinstance(document, Mapping):
        raise ConfigurationError(f"{source}: must be a mapping of policy settings")
    try:
        model = PolicyFile.model_validate(document)
    except ValidationError as error:
        raise ConfigurationError(f"{source}: {_describe_validation(error)}") from error
    try:
        return Policy.from_file(model)
    except ConfigurationError as error:
        raise ConfigurationError(f"{source}: {error}") from error


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a repeated key: a role defined twice would lose one silently."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it properly
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and check a policy file; ConfigurationError with one line naming the problem."""
    source = f"policy file {os.fspath(path)}"
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError as error:
        raise ConfigurationError(f"{source}: not found") from error
    except UnicodeDecodeError as error:
        raise ConfigurationError(f"{source}: not UTF-8 text") from error
    except OSError as error:
        raise ConfigurationError(f"{source}: cannot be read: {error.strerror}") from error
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{source}: {_describe_yaml(error)}") from error
    # The digest of exactly the bytes enforced, so a log line can prove which file was in use.
    return replace(parse_policy(document, source=source), sha256=hashlib.sha256(raw).hexdigest())


def _describe_yaml(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = error.problem or "syntax error"
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return "invalid YAML: " + " ".join(str(error).split())


def _describe_validation(error: ValidationError) -> str:
    items = error.errors(include_url=False)
    described = [_describe_item(item) for item in items[:_MAX_REPORTED_ERRORS]]
    more = len(items) - len(described)
    return "; ".join(described) + (f" (+{more} more)" if more else "")


def _describe_item(item: ErrorDetails) -> str:
    location = list(item["loc"])
    prefix = ""
    if len(location) >= 2 and location[0] == "roles":
        prefix = f"role {location[1]!r}: "
        location = location[2:]
    # A key from the file may hold a line break: quoted, the message stays one line.
    field = ".".join(str(part) if str(part).isprintable() else repr(part) for part in location)
    if item["type"] == "extra_forbidden":
        return f"{prefix}unknown field {field!r}"
    if field == "[key]":
        return f"{prefix}invalid role id: {item['msg']}"
    value = item.get("input")
    got = (
        f" (got {value!r})"
        if item["type"] != "missing" and isinstance(value, str | int | float | bool)
        else ""
    )
    where = f"{field}: " if field else ""
    return f"{prefix}{where}{item['msg']}{got}"


def render_hierarchy(subject: RoleCatalog | Policy, *, max_depth: int | None = None) -> str:
    """The inheritance tree, each role with its depth and privileged flag; for a policy, limits."""
    if isinstance(subject, Policy):
        depth_limit = subject.max_hierarchy_depth if max_depth is None else max_depth
        tree = render_hierarchy(subject.catalog, max_depth=depth_limit)
        mapping = describe_mapping(subject.idp_mapping, subject.catalog)
        return "\n".join([tree, "", *_describe_limits(subject), *mapping])
    catalog = subject
    lines: list[str] = []
    expanded: set[str] = set()

    def visit(role_id: str, indent: str, branch: str, below: str) -> None:
        children = catalog.children(role_id)
        seen = role_id in expanded and bool(children)
        lines.append(f"{indent}{branch}{_describe_role(catalog, role_id, max_depth, seen=seen)}")
        if seen:
            return
        expanded.add(role_id)
        for index, child in enumerate(children):
            last = index == len(children) - 1
            visit(child, indent + below, "└── " if last else "├── ", "    " if last else "│   ")

    for root in catalog.roots():
        visit(root, "", "", "")
    return "\n".join(lines)


def _describe_limits(policy: Policy) -> list[str]:
    pairs = ", ".join(f"{first} / {second}" for first, second in policy.separation_of_duties)
    guard = policy.mass_revocation_guard
    return [
        f"max_roles_per_user: {policy.max_roles_per_user}",
        f"max_hierarchy_depth: {policy.max_hierarchy_depth}",
        f"separation_of_duties: {pairs or 'none'}",
        "mass_revocation_guard: "
        + (
            "none"
            if guard is None
            else f"{guard.max_revocations} revocations per {guard.window_seconds:g} s"
        ),
    ]


def _describe_role(catalog: RoleCatalog, role_id: str, max_depth: int | None, *, seen: bool) -> str:
    depth = catalog.depth(role_id)
    notes = [f"depth {depth}"]
    if catalog.is_privileged(role_id):
        notes.append("privileged")
    elif any(catalog.is_privileged(ancestor) for ancestor in catalog.ancestors(role_id)):
        notes.append("inherits privileged")
    if max_depth is not None and depth > max_depth:
        notes.append(f"exceeds max_hierarchy_depth {max_depth}")
    # A role with several parents shows up under each; its subtree is drawn only the first time.
    tail = " (children shown above)" if seen else ""
    return f"{role_id} ({catalog.display_name(role_id)}) {', '.join(notes)}{tail}"
