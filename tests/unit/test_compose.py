"""What can be checked of docker-compose.yml without a Docker engine: files, settings, profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CONSUMERS = ("consumer", "sandbox-consumer")


def test_profiles_split_the_tenant_from_the_sandbox() -> None:
    """The tenant consumer and the sandbox services each sit in their own profile."""
    assert SERVICES["consumer"]["profiles"] == ["tenant"]
    for name in ("simulator", "sandbox-consumer", "traffic"):
        assert SERVICES[name]["profiles"] == ["sandbox"], name
    for name in ("kafka", "prometheus", "grafana"):
        assert "profiles" not in SERVICES[name], name


def test_every_mounted_file_exists() -> None:
    """Every host path a service mounts is a file or directory of the repository."""
    mounts = [
        volume.split(":")[0]
        for service in SERVICES.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert mounts
    for mount in mounts:
        assert (ROOT / mount).exists(), mount


@pytest.mark.parametrize("name", CONSUMERS)
def test_every_environment_name_is_a_setting(name: str) -> None:
    """The consumers are configured only with names the settings know."""
    environment = SERVICES[name]["environment"]
    assert environment
    assert {key.lower() for key in environment} <= set(Settings.model_fields)


def test_sandbox_consumer_settings_are_valid() -> None:
    """The sandbox consumer's environment is a complete, valid configuration as written."""
    service = SERVICES["sandbox-consumer"]
    mounted = {
        target.removesuffix(":ro"): ROOT / source
        for source, target in (volume.split(":", 1) for volume in service["volumes"])
    }
    values = {key.lower(): value for key, value in service["environment"].items()}
    values["policy_file"] = mounted[values["policy_file"]]
    settings = load_settings(**values)
    assert settings.cxone_scim_base_url == "http://127.0.0.1:8080/scim/v2"
    # An access key: the consumer authenticates with CXone's password grant.
    assert settings.cxone_access_key_id is not None


def test_sandbox_consumer_reaches_the_simulator_over_the_loopback() -> None:
    """The sandbox consumer shares the simulator's network, on the port the simulator serves."""
    service = SERVICES["sandbox-consumer"]
    assert service["network_mode"] == "service:simulator"
    command = SERVICES["simulator"]["command"]
    port = command[command.index("--port") + 1]
    assert service["environment"]["CXONE_SCIM_BASE_URL"] == f"http://127.0.0.1:{port}/scim/v2"


def test_prometheus_finds_the_consumer_of_either_profile() -> None:
    """Prometheus scrapes the alias that the tenant consumer and the sandbox consumer answer on."""
    config = yaml.safe_load((ROOT / "dashboards" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [lookup] = job["dns_sd_configs"]
    alias = lookup["names"][0]
    metrics_ports = {SERVICES[name]["environment"]["METRICS_PORT"] for name in CONSUMERS}
    assert metrics_ports == {str(lookup["port"])}
    for name in ("consumer", "simulator"):
        assert alias in SERVICES[name]["networks"]["default"]["aliases"], name


def test_sandbox_image_has_the_simulator() -> None:
    """The sandbox services build the project's image with the sandbox extra."""
    for name in ("simulator", "sandbox-consumer", "traffic"):
        assert SERVICES[name]["build"]["args"]["EXTRAS"] == "[sandbox]", name
    assert 'ARG EXTRAS=""' in (ROOT / "Dockerfile").read_text()
