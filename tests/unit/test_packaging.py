"""Tests that the documented example files match what the package ships and the code reads."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from consumer.catalog import load_policy
from consumer.demo import example_policy
from consumer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "examples" / "cxone-role-sync.env"
SETTING_LINE = re.compile(r"^(?P<comment># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def _settings_lines() -> dict[str, tuple[bool, str]]:
    """NAME -> (commented out, value) of every setting line of the example environment file."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_FILE.read_text().splitlines():
        match = SETTING_LINE.match(line)
        if match:
            assert match["name"] not in found, f"{match['name']} appears twice"
            found[match["name"]] = (match["comment"] is not None, match["value"])
    return found


def test_shipped_policy_is_the_documented_example() -> None:
    """The policy inside the package is byte for byte examples/policy.yaml."""
    assert example_policy().read_bytes() == (ROOT / "examples" / "policy.yaml").read_bytes()


def test_shipped_policy_loads() -> None:
    """The shipped policy is a valid policy with the example catalog."""
    assert load_policy(example_policy()).catalog.is_privileged("admin_support")


def test_env_file_names_exactly_the_settings() -> None:
    """Every setting appears in examples/cxone-role-sync.env, and nothing that is not one."""
    assert set(_settings_lines()) == {name.upper() for name in Settings.model_fields}


def test_env_file_shows_the_real_defaults_and_sets_the_required() -> None:
    """A commented-out line shows the setting's default; the required ones are set."""
    for name, (commented, value) in _settings_lines().items():
        field = Settings.model_fields[name.lower()]
        if field.is_required():
            assert not commented, f"{name} is required and must be set"
        elif commented and field.default is not None:
            assert value == str(field.default), name


def test_env_file_values_make_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines set in the example, with a real policy path, are a complete valid configuration."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, (commented, value) in _settings_lines().items():
        if not commented:
            monkeypatch.setenv(name, value)
    settings = Settings(policy_file=ROOT / "examples" / "policy.yaml")
    assert settings.cxone_scim_base_url == "https://cxone.niceincontact.com/scim/v2"


def test_license_is_an_spdx_expression_setuptools_understands() -> None:
    """pyproject states the license as an SPDX string and builds with a setuptools that reads it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    # setuptools reads a license expression from 77 on; older ones warn or refuse.
    [requirement] = project["build-system"]["requires"]
    assert requirement == "setuptools>=77"
