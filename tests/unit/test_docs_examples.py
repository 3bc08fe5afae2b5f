"""Every example of the README and the docs pages, held against the code it shows.

Input events validate with the consumer's own parser, every JSON block parses, every policy
loads, every `cxone-role-sync` command shown parses with the real argument parser, every `make`
target named exists, every output shown is what its command prints, the signed approval's
openssl line prints its signature (tests/unit/test_approvals.py holds the approval itself against
the code), and every alert's runbook link lands on a heading of the built site.
The shell blocks marked `sandbox` run against a sandbox in tests/integration/test_docs_sandbox.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from consumer.catalog import load_policy
from consumer.cli import app
from consumer.events import parse_event
from tests.doc_examples import (
    PAGES,
    ROOT,
    SHELLS,
    Block,
    blocks,
    clean_environment,
    inline_commands,
    make_targets,
    output_pattern,
    program_commands,
    sandbox_script,
    shell,
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
SITE_PAGE = re.compile(r"/blob/main/docs/(?P<page>[\w-]+)\.md#(?P<anchor>[\w-]+)$")


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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site, built strictly as `make docs` builds it."""
    directory = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", directory],
        cwd=ROOT,
        env=clean_environment({"NO_MKDOCS_2_WARNING": "1"}),
        check=True,
        timeout=120,
    )
    return directory


def _alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load((ROOT / "dashboards" / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_alert_links_its_runbook_on_the_built_site(site: Path) -> None:
    """Each alert's runbook_url names a docs page and a heading id that the built site has."""
    alerts = _alerts()
    assert len(alerts) >= 12
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        found = SITE_PAGE.search(url)
        assert found, url
        html = (site / found["page"] / "index.html").read_text()
        assert f'id="{found["anchor"]}"' in html, url
        assert found["anchor"] == f"runbook-{alert['alert'].lower()}"


def test_every_runbook_heading_belongs_to_an_alert() -> None:
    """Each `## Runbook: NAME` heading names an alert of the rules, and each alert has one."""
    headings = re.findall(r"^## Runbook: (\w+)$", (ROOT / "docs/runbooks.md").read_text(), re.M)
    assert sorted(headings) == sorted(alert["alert"] for alert in _alerts())


def test_every_page_is_in_the_site_navigation() -> None:
    """Each docs page is reachable from the navigation, and the README links each of them."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = {page for entry in config["nav"] for page in entry.values()}
    pages = {page.name for page in PAGES if page.parent == ROOT / "docs"}
    assert listed == pages
    readme = (ROOT / "README.md").read_text()
    assert {page for page in pages if f"(docs/{page})" not in readme} == set()


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


def test_every_readme_link_into_the_docs_lands_on_the_built_site(site: Path) -> None:
    """Each `docs/PAGE.md#anchor` link of the README names a page and a heading of the site."""
    links = re.findall(r"\]\(docs/([\w-]+)\.md(?:#([\w-]+))?\)", (ROOT / "README.md").read_text())
    assert len(links) >= 15
    for page, anchor in links:
        html = (site / ("" if page == "index" else page) / "index.html").read_text()
        assert not anchor or f'id="{anchor}"' in html, f"docs/{page}.md#{anchor}"


def test_every_glossary_term_is_linked_from_another_page() -> None:
    """Each term of the glossary is linked from the README or another docs page."""
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    terms = re.findall(r"^### (.+)$", glossary, re.M)
    anchors = {re.sub(r"[^\w]+", "-", term.lower()).strip("-") for term in terms}
    assert len(anchors) == len(terms) >= 20
    linked = {
        anchor
        for page in PAGES
        if page.name != "glossary.md"
        for anchor in re.findall(r"glossary\.md#([\w-]+)", page.read_text())
    }
    assert linked <= anchors, linked - anchors
    assert anchors - linked == set()
