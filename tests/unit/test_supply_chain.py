"""Tests of the build: the lock file pins every dependency; the image and compose use it well."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)(\s*;.*)?$")


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    """The lock file's pins, by normalized name."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match is not None, f"not an exact pin: {line}"
        pins[normalized(match.group(1))] = match.group(2)
    return pins


def test_the_lock_pins_every_runtime_dependency_exactly() -> None:
    """Each dependency of pyproject.toml has an exact `==` pin in requirements.lock."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        normalized(re.split(r"[<>=!~\[; ]", item, maxsplit=1)[0])
        for item in project["dependencies"]
    }
    pins = locked()
    assert wanted - pins.keys() == set()
    assert len(pins) > len(wanted)


def test_the_image_installs_the_locked_versions_and_nothing_else() -> None:
    """The Dockerfile installs requirements.lock, then the project without resolving anything."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    lock_install = dockerfile.index("pip install --requirement requirements.lock")
    project_install = dockerfile.index("pip install --no-deps .")
    assert lock_install < project_install
    assert "COPY requirements.lock" in dockerfile


def test_compose_publishes_ports_on_loopback_only() -> None:
    """Every port docker-compose publishes is bound to 127.0.0.1 of the host."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["consumer"] == ["127.0.0.1:9400:9400"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)
    assert compose["services"]["consumer"]["environment"]["METRICS_HOST"] == "0.0.0.0"
