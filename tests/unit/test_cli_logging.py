"""Tests of the command's logging set-up: every secret setting is registered for redaction."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from consumer.cli import _configure_logging
from consumer.observability.logging import REDACTED, clear_secrets, scrub_text
from consumer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    clear_secrets()


def test_every_secret_setting_is_scrubbed_from_logs(tmp_path: Path) -> None:
    """Each secret setting is scrubbed from log text once the command has set up logging."""
    pem = tmp_path / "client.pem"
    pem.write_text("-")
    values = {
        name: f"{name}-value-{index}-c0ffee" for index, name in enumerate(Settings.secret_fields())
    }
    settings = Settings(  # type: ignore[call-arg]
        cxone_scim_base_url="https://cxone.example.com/scim/v2",
        cxone_token_url="https://cxone.example.com/auth/token",
        cxone_client_id="client",
        cxone_access_key_id="key-id",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="svc",
        kafka_ssl_certfile=pem,
        kafka_ssl_keyfile=pem,
        webhook_url="https://hooks.example.com/role-sync",
        policy_file=ROOT / "examples" / "policy.yaml",
        **values,
    )
    assert [scrub_text(value) for value in values.values()] == list(values.values())
    _configure_logging(settings)
    assert {name: scrub_text(f"x {value} y") for name, value in values.items()} == {
        name: f"x {REDACTED} y" for name in values
    }
