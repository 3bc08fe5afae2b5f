"""The documentation site: it builds strictly, every page is in its navigation, the README's
links and every alert's runbook link land on a heading of it, and the glossary is linked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.doc_examples import PAGES, ROOT, clean_environment

SITE_PAGE = re.compile(r"/blob/main/docs/(?P<page>[\w-]+)\.md#(?P<anchor>[\w-]+)$")


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
