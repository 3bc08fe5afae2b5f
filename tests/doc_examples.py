"""The examples of the README and the docs pages, as the tests that run them read them.

A fenced block may carry a marker, an HTML comment on the line right above its opening fence
(invisible on GitHub and on the site), that says how its test runs it:

- `<!-- example: sandbox -->` (shell): the block runs as one script against a running sandbox
  (see `sandbox_script`), and each `#> ` line after a command is a line it must print;
- `<!-- example: not run, REASON -->` (shell): the `cxone-role-sync` lines are parsed by the
  real argument parser and the `make` targets checked, but nothing runs (a real tenant, a
  real cluster, a command that never ends);
- `<!-- example: output of COMMAND -->` (text): COMMAND runs, and every line shown, except
  `...`, is a line of what it prints, in the same order.

JSON and YAML blocks need no marker: every one is checked by its kind.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
PROGRAM = "cxone-role-sync"
SHELLS = frozenset({"sh", "shell", "bash", "console"})

_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(.+?)\s*-->\s*$")
_INLINE = re.compile(rf"`({PROGRAM}(?: [^`]*)?)`")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATORS = frozenset({"|", "||", "&&", ";", "&"})
_REDIRECTIONS = frozenset({"<", ">", ">>", "<<<"})
_SHOWN = "#> "
# What changes from one run to the next in a line shown: times, event ids, partition@offset.
_VARYING = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT[\d:.]+Z)|(?P<event>evt-[\w.-]+)|(?P<offset>/\d+@\d+)|(?P<space>\s+)"
)
_VARYING_AS = {"time": r"\S+", "event": r"evt-\S+", "offset": r"/\d+@\d+", "space": r"\s+"}
# An `audit` line polls until it prints something: results arrive while the consumer works.
_POLL = """_printed=''
for _ in $(seq 240); do
  _printed=$(
{line}
)
  [ -n "$_printed" ] && break
  sleep 0.5
done
[ -n "$_printed" ]
printf '%s\\n' "$_printed"
"""
# Settings of the machine running the tests must not reach a command under test.
_PROJECT_SETTINGS = ("KAFKA_", "CXONE_", "SYNC_", "POLICY_", "WEBHOOK_", "LOG_", "METRICS_")
_PROJECT_SECRETS = ("ADMIN_TOKEN", "APPROVAL_HMAC_KEY", "TANSU_BIN")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: where it starts, its language, its marker and its text."""

    page: Path
    line: int
    language: str
    marker: str | None
    text: str

    @property
    def where(self) -> str:
        """`page:line` of the opening fence, for failure messages and test ids."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(pages: Sequence[Path] = PAGES) -> list[Block]:
    """Every fenced block of the pages, in page order."""
    found: list[Block] = []
    for page in pages:
        lines = page.read_text().splitlines()
        index = 0
        while index < len(lines):
            opening = _FENCE.match(lines[index])
            if opening is None:
                index += 1
                continue
            indent, language = opening.groups()
            above = _MARKER.match(lines[index - 1]) if index else None
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            text = "\n".join(line.removeprefix(indent) for line in lines[index + 1 : end])
            marker = above.group(1) if above else None
            found.append(Block(page, index + 1, language, marker, text + "\n"))
            index = end + 1
    return found


def prose(page: Path) -> str:
    """A page without its fenced blocks."""
    kept: list[str] = []
    inside = False
    for line in page.read_text().splitlines():
        if _FENCE.match(line) or (inside and line.strip() == "```"):
            inside = not inside
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def inline_commands(pages: Sequence[Path] = PAGES) -> list[tuple[Path, str]]:
    """Every inline code span of the prose that is a `cxone-role-sync` command."""
    return [(page, span) for page in pages for span in _INLINE.findall(prose(page))]


def logical_lines(script: str) -> list[str]:
    """The lines of a shell block with backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for line in script.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return [line for line in lines if line.strip()]


def simple_commands(line: str) -> Iterator[list[str]]:
    """The simple commands of one shell line (split at pipes and lists), comments dropped and
    leading `NAME=value` assignments and redirections left out."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    command: list[str] = []
    redirected = False
    for token in [*lexer, ";"]:
        if redirected:
            # The file of a redirection is no argument of the command.
            redirected = False
            continue
        if token in _REDIRECTIONS:
            redirected = True
            continue
        if token in _SEPARATORS:
            while command and _ASSIGNMENT.match(command[0]):
                command.pop(0)
            if command:
                yield command
            command = []
        else:
            command.append(token)


def program_commands(script: str) -> list[list[str]]:
    """The arguments of every `cxone-role-sync` command of a shell script, including one shown
    as another way in a trailing `# or: ...` comment."""
    found: list[list[str]] = []
    for line in logical_lines(script):
        code, _, alternative = line.partition("# or:")
        found.extend(_program_arguments(code))
        found.extend(_program_arguments(alternative))
    return found


def _program_arguments(text: str) -> list[list[str]]:
    try:
        commands = list(simple_commands(text))
    except ValueError:
        # Prose in a comment (an unbalanced quote) is not a command.
        return []
    return [command[1:] for command in commands if command[0] == PROGRAM]


def make_targets(script: str) -> list[str]:
    """The targets of every `make` command of a shell script."""
    return [
        target
        for line in logical_lines(script)
        if not line.lstrip().startswith("#")
        for command in simple_commands(line)
        if command[0] == "make"
        for target in command[1:]
        if not target.startswith("-") and "=" not in target
    ]


def clean_environment(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """This process's environment without the project's settings, the virtualenv's commands
    first on the PATH (as after `. .venv/bin/activate`), plus `extra`."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_PROJECT_SETTINGS) and name not in _PROJECT_SECRETS
    }
    kept["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{kept.get('PATH', '')}"
    return {**kept, **extra}


def shell(
    line: str, *, env: Mapping[str, str], cwd: Path, within: float
) -> subprocess.CompletedProcess[str]:
    """Run one line with bash, as an operator pasting it would, and capture what it prints."""
    return subprocess.run(
        ["bash", "-c", line],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=within,
        check=False,
    )


@dataclass(frozen=True)
class SandboxScript:
    """A `sandbox` block made runnable: the script, the lines it must print, and the two
    long-lived commands it names, which the session starts instead of the script."""

    script: str
    shown: tuple[str, ...]
    starts_sandbox: bool
    service: str | None


def sandbox_script(text: str) -> SandboxScript:
    """The script a session runs for a `sandbox` block.

    `cxone-role-sync sandbox` and `... cxone-role-sync run` are left to the session, which
    starts them once, in the background; activating the virtualenv is left to the session's
    PATH; a command with `--follow` never ends and is only parsed (by the unit tests); an
    `audit` command is repeated until it prints, since results arrive while the consumer works.
    """
    script = ["set -euo pipefail"]
    shown: list[str] = []
    starts_sandbox = False
    service: str | None = None
    for line in logical_lines(text):
        stripped = line.strip()
        if stripped.startswith(_SHOWN.strip()):
            shown.append(stripped.removeprefix(_SHOWN.strip()).strip())
            continue
        words = stripped.split()
        if words[:1] in (["."], ["source"]) and words[-1].endswith("bin/activate"):
            continue
        commands = program_commands(line)
        names = {arguments[0] for arguments in commands if arguments}
        if "sandbox" in names:
            starts_sandbox = True
        elif "run" in names:
            service = line
        elif any("--follow" in arguments or "-f" in arguments for arguments in commands):
            continue
        elif "audit" in names:
            script.append(_POLL.format(line=line))
        else:
            script.append(line)
    return SandboxScript("\n".join(script) + "\n", tuple(shown), starts_sandbox, service)


def output_pattern(shown: str) -> re.Pattern[str]:
    """A line shown as printed, with its times, event ids and offsets free to differ."""
    parts: list[str] = []
    position = 0
    for varying in _VARYING.finditer(shown):
        parts.append(re.escape(shown[position : varying.start()]))
        parts.append(_VARYING_AS[str(varying.lastgroup)])
        position = varying.end()
    parts.append(re.escape(shown[position:]))
    return re.compile("".join(parts))


def unprinted(shown: Sequence[str], printed: str) -> list[str]:
    """The lines shown that were not printed, in order, with what varies left free."""
    remaining = [line.strip() for line in printed.splitlines()]
    missing: list[str] = []
    for line in shown:
        pattern = output_pattern(line.strip())
        found = next((i for i, out in enumerate(remaining) if pattern.fullmatch(out)), None)
        if found is None:
            missing.append(line)
        else:
            remaining = remaining[found + 1 :]
    return missing


def quote(arguments: Sequence[str]) -> str:
    """A command line of the program with these arguments, quoted for a shell."""
    return shlex.join([PROGRAM, *arguments])
