"""Every example of the README and the docs pages, held against the code it shows.

Input events validate with the consumer's own parser, every JSON block parses, every policy
loads, every `cxone-role-sync` command shown parses with the real argument parser, every `make`
target named exists, every output shown is what its command prints, the signed approval's
openssl line prints its signature (tests/unit/test_approvals.py holds the approval itself against
the code), and the topics and ACLs of the real-tenant guide are what `doctor` judges right.
The shell blocks marked `sandbox` run against a sandbox in tests/integration/test_docs_sandbox.py.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from consumer.catalog import load_policy
from consumer.cli import app
from consumer.doctor.topics import Expectations, TopicFacts, TopicRole, check_topic
from consumer.events import parse_event
from tests.doc_examples import (
    ROOT,
    SHELLS,
    Block,
    blocks,
    clean_environment,
    inline_commands,
    logical_lines,
    make_targets,
    output_pattern,
    program_commands,
    sandbox_script,
    shell,
    simple_commands,
    unprinted,
)

BLOCKS = blocks()
SHELL_BLOCKS = [block for block in BLOCKS if block.language in SHELLS]
JSON_BLOCKS = [block for block in BLOCKS if block.language == "json"]
YAML_BLOCKS = [block for block in BLOCKS if block.language == "yaml"]
OUTPUT_BLOCKS = [block for block in BLOCKS if (block.marker or "").startswith("output of ")]
RUN_KINDS = ("sandbox", "approval signature", "not run, ")
# Inline spans that are the general form of a command, not a command.
SYNTAX = {"cxone-role-sync", "cxone-role-sync COMMAND"}
# Placeholders of inline spans, and a value of the kind they stand for.
PLACEHOLDERS = {"<when it started>": "2026-12-01T08:00:00Z", " FILE": " policy.yaml"}
APPROVAL_PAGE = ROOT / "docs" / "policy.md"


def _ids(blocks: list[Block]) -> list[str]:
    return [block.where for block in blocks]


def _input_events() -> list[Block]:
    """Every JSON block that is an input event of the contract (it names an idp.user type)."""
    return [b for b in JSON_BLOCKS if '"specversion"' in b.text and '"idp.user.' in b.text]


def _commands() -> list[tuple[str, list[str]]]:
    """Every `cxone-role-sync` command of the shell blocks and the prose, with where it is."""
    found = [
        (block.where, arguments)
        for block in SHELL_BLOCKS
        for arguments in program_commands(block.text)
    ]
    for page, span in inline_commands():
        if span in SYNTAX:
            continue
        for placeholder, value in PLACEHOLDERS.items():
            span = span.replace(placeholder, value)
        found.append((str(page.relative_to(ROOT)), span.split()[1:]))
    return found


def parse_command(arguments: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a command line with the command's own parser, running nothing: (command, values)."""
    group = typer.main.get_command(app)
    if arguments and arguments[0].startswith("--"):
        # Options of the program itself act when parsed (completion installs itself): look only.
        [option] = arguments
        assert option in {name for param in group.params for name in param.opts}
        return option, {}
    context = group.make_context("cxone-role-sync", arguments[:1])
    name, command, rest = group.resolve_command(context, list(arguments))
    assert name is not None
    assert command is not None
    return name, command.make_context(name, rest, parent=context).params


def _approval() -> dict[str, Any]:
    """The signed approval of the worked example, as the policy page shows it."""
    [fragment] = [b for b in JSON_BLOCKS if b.page == APPROVAL_PAGE and '"approval"' in b.text]
    approval: dict[str, Any] = json.loads("{" + fragment.text + "}")["approval"]
    return approval


def test_the_docs_show_examples_of_every_kind() -> None:
    """The pages hold input events, other JSON, a policy, shell blocks and outputs to check."""
    assert len(_input_events()) >= 2
    assert len(JSON_BLOCKS) > len(_input_events())
    assert YAML_BLOCKS
    assert len(SHELL_BLOCKS) >= 8
    assert OUTPUT_BLOCKS
    assert len(_commands()) >= 20


@pytest.mark.parametrize("block", _input_events(), ids=_ids(_input_events()))
def test_input_event_shown_is_valid(block: Block) -> None:
    """Each input event shown in the docs is accepted by the consumer's own parser."""
    event = parse_event(block.text.encode())
    assert event.subject == event.user_id


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=_ids(JSON_BLOCKS))
def test_every_json_block_is_json(block: Block) -> None:
    """Each JSON block parses: a document, or the members of one (a fragment, e.g. an approval)."""
    text = block.text.strip()
    document = json.loads(text if text.startswith(("{", "[")) else "{" + text + "}")
    assert isinstance(document, dict | list)
    assert document


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=_ids(YAML_BLOCKS))
def test_every_policy_shown_loads(block: Block, tmp_path: Path) -> None:
    """Each YAML block is a policy that loads as `check-policy` and `run` load it."""
    path = tmp_path / "policy.yaml"
    path.write_text(block.text)
    policy = load_policy(path)
    assert set(yaml.safe_load(block.text)["roles"]) == set(policy.catalog)


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=_ids(SHELL_BLOCKS))
def test_every_shell_block_says_how_its_test_runs_it(block: Block) -> None:
    """Each shell block is marked to run against the sandbox, or says why it is not run."""
    assert block.marker is not None, f"{block.where}: no `<!-- example: ... -->` marker above"
    assert block.marker.startswith(RUN_KINDS), block.marker


@pytest.mark.parametrize(("where", "arguments"), _commands(), ids=[w for w, _ in _commands()])
def test_every_command_shown_parses(where: str, arguments: list[str]) -> None:
    """Each `cxone-role-sync` command shown is accepted by the real argument parser."""
    name, _ = parse_command(arguments)
    assert name == arguments[0]


def test_the_parser_refuses_a_command_the_docs_must_not_show() -> None:
    """Parsing is the real check: a misspelt option, a bad time or a missing value is refused."""
    assert parse_command(["audit", "--user", "u-1002"]) == (
        "audit",
        {"follow": False, "user": "u-1002", "since": None, "outcome": None, "as_json": False},
    )
    for wrong in (
        ["audit", "--users", "u-1002"],
        ["replay", "--since", "last tuesday"],
        ["send", "--user"],
        ["sync"],
    ):
        with pytest.raises(typer.TyperException):
            parse_command(wrong)


def test_every_make_target_shown_exists() -> None:
    """Each `make` target a page names is a target of the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    shown = {target for block in SHELL_BLOCKS for target in make_targets(block.text)}
    assert {"demo", "test", "docs"} <= shown
    assert shown <= targets, shown - targets


@pytest.mark.parametrize("block", OUTPUT_BLOCKS, ids=_ids(OUTPUT_BLOCKS))
def test_output_shown_is_what_the_command_prints(block: Block) -> None:
    """Each output block's lines are printed, in order, by the command its marker names."""
    assert block.marker is not None
    command = block.marker.removeprefix("output of ")
    completed = shell(command, env=clean_environment(), cwd=ROOT, within=60.0)
    printed = completed.stdout + completed.stderr
    shown = [line for line in block.text.splitlines() if line.strip() not in ("", "...")]
    assert unprinted(shown, printed) == [], printed


def test_the_openssl_line_prints_the_example_signature() -> None:
    """The page's openssl command, run as shown, prints the signature its example carries."""
    [block] = [b for b in SHELL_BLOCKS if b.marker == "approval signature"]
    completed = shell(block.text, env=clean_environment(), cwd=ROOT, within=30.0)
    assert completed.returncode == 0, completed.stderr
    assert re.findall(r"\b[0-9a-f]{64}\b", completed.stdout) == [_approval()["signature"]]


def test_a_sandbox_block_becomes_a_script_the_session_can_run() -> None:
    """Long-lived commands go to the session, audits poll, `--follow` is skipped, `#>` is shown."""
    made = sandbox_script(
        ". .venv/bin/activate\n"
        "cxone-role-sync sandbox      # leave it running\n"
        "LOG_FORMAT=console cxone-role-sync run   # first shell\n"
        "cxone-role-sync send --user u-1 --roles a \\\n"
        "  --primary a\n"
        "cxone-role-sync audit --user u-1\n"
        "#> 2026-12-01T12:30:05Z  u-1  synced\n"
        "cxone-role-sync audit --follow --json | jq .data.outcome\n"
    )
    assert made.starts_sandbox
    assert made.service == "LOG_FORMAT=console cxone-role-sync run   # first shell"
    assert made.shown == ("2026-12-01T12:30:05Z  u-1  synced",)
    assert "cxone-role-sync send --user u-1 --roles a    --primary a\n" in made.script
    assert "_printed=$(\ncxone-role-sync audit --user u-1\n)" in made.script
    assert "--follow" not in made.script
    assert "activate" not in made.script
    assert made.script.startswith("set -euo pipefail\n")


def test_a_line_shown_matches_what_is_printed_with_times_ids_and_offsets_free() -> None:
    """Times, event ids, partition@offset and spacing may differ; nothing else may."""
    shown = "#> 2026-12-01T12:30:05Z  u-1002  synced  event evt-... at idp.role-changes/2@0"
    line = shown.removeprefix("#> ")
    printed = "2026-12-02T16:01:09Z u-1002    synced  event evt-3f09a1c2 at idp.role-changes/1@17"
    assert unprinted([line], printed) == []
    assert unprinted([line], printed.replace("synced", "failed")) == [line]
    assert unprinted([line, line], printed) == [line]
    assert output_pattern("a.b (c)").fullmatch("a.b (c)")
    assert not output_pattern("a.b (c)").fullmatch("aXb (c)")


def _kafka_tool_lines(tool: str) -> list[argparse.Namespace]:
    """The `tool` commands of the real-tenant guide's topic block, parsed as the tool parses."""
    parser = argparse.ArgumentParser(add_help=False)
    for name in ("--bootstrap-server", "--command-config", "--topic", "--group"):
        parser.add_argument(name)
    for name in ("--partitions", "--replication-factor"):
        parser.add_argument(name, type=int)
    for name in ("--config", "--operation"):
        parser.add_argument(name, action="append", default=[])
    parser.add_argument("--allow-principal")
    parser.add_argument("--create", action="store_true")
    parser.add_argument("--add", action="store_true")
    [block] = [b for b in SHELL_BLOCKS if b.page.name == "production.md" and tool in b.text]
    return [
        parser.parse_args(command[1:])
        for line in logical_lines(block.text)
        for command in simple_commands(line)
        if command[0] == tool
    ]


def test_the_guides_topics_pass_the_doctors_topic_checks() -> None:
    """The topics the real-tenant guide creates are what `doctor` judges right for two instances."""
    roles = {"idp.role-changes": TopicRole.INPUT, "cxone.role-sync.audit": TopicRole.AUDIT}
    roles["idp.role-changes.dlq"] = TopicRole.DLQ
    created = _kafka_tool_lines("kafka-topics.sh")
    assert sorted(line.topic for line in created) == sorted(roles)
    expected = Expectations(instances=2, brokers=3, max_record_bytes=1_048_576)
    for line in created:
        configs = dict(config.split("=", 1) for config in line.config)
        facts = TopicFacts(line.topic, line.partitions, line.replication_factor, configs)
        finding = check_topic(roles[line.topic], facts, expected)
        assert finding.verdict == "ok", finding
        assert configs["min.insync.replicas"] == "2"


def test_the_guides_acls_give_each_principal_only_its_part() -> None:
    """The service reads the input and its group, writes audits and dead letters and keeps the
    guard's ledger; the bridge only writes the input; auditors only read the audit topic."""
    granted = {
        (line.allow_principal, operation, line.topic or f"group {line.group}")
        for line in _kafka_tool_lines("kafka-acls.sh")
        for operation in line.operation
        if operation != "Describe"
    }
    assert granted == {
        ("User:role-sync", "Read", "idp.role-changes"),
        ("User:role-sync", "Read", "group cxone-role-sync"),
        ("User:role-sync", "Write", "cxone.role-sync.audit"),
        ("User:role-sync", "Write", "idp.role-changes.dlq"),
        ("User:role-sync", "Read", "cxone.role-sync.guard"),
        ("User:role-sync", "Write", "cxone.role-sync.guard"),
        ("User:idp-bridge", "Write", "idp.role-changes"),
        ("User:auditors", "Read", "cxone.role-sync.audit"),
    }


def test_a_shell_line_splits_into_its_commands_without_assignments_or_redirections() -> None:
    """Pipes and lists split a line; `NAME=value`, redirections and comments are no arguments."""
    line = "LOG_FORMAT=console cxone-role-sync send --file - < event.json | jq . && echo ok  # or"
    assert list(simple_commands(line)) == [
        ["cxone-role-sync", "send", "--file", "-"],
        ["jq", "."],
        ["echo", "ok"],
    ]
    assert program_commands("cxone-role-sync audit  # or: x | cxone-role-sync send --file -\n") == [
        ["audit"],
        ["send", "--file", "-"],
    ]
