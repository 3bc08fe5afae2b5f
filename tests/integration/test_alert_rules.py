"""Tests of the alert rules with a real promtool: they load, and each one fires and stays silent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.observability.metrics import REGISTRY
from tests.integration.prometheus import exposed_metric_names, referenced_metrics, require_binary

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
RULES = DASHBOARDS / "alerts.yml"
RULE_TESTS = DASHBOARDS / "alerts.test.yml"
RUNBOOK = "https://github.com/cxone-role-sync/cxone-role-sync/blob/main/docs/runbooks.md#runbook-"

EXPECTED_ALERTS = {
    "ConsumerLagGrowing",
    "NoSuccessfulSync",
    "EscalationRejectionsSpike",
    "ScimErrorRatioHigh",
    "DeadLetterTraffic",
    "CircuitOpen",
    "ScimForbidden",
    "CxoneCredentialsRejected",
    "MassRevocationGuardTripped",
    "PublishBlocked",
    "RoleSyncDown",
    "OldestUnfinishedRecordStuck",
}


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rules_file_holds_the_expected_alerts() -> None:
    """alerts.yml defines exactly the alerts operators were promised."""
    assert {rule["alert"] for rule in _alerts()} == EXPECTED_ALERTS


def test_promtool_check_rules_passes() -> None:
    """promtool parses every rule and its PromQL."""
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """promtool test rules runs every case of alerts.test.yml successfully."""
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_compose_prometheus_config_loads_the_rules() -> None:
    """The Prometheus config of docker-compose is valid and finds alerts.yml."""
    result = _promtool("check", "config", str(DASHBOARDS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_fails_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests have teeth: expecting a flat lag to alert makes promtool fail."""
    wrong = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'cxone_sync_consumer_lag{topic="t", partition="0"}',
                        "values": "100x30",
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "ConsumerLagGrowing",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "topic": "t"}}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "wrong.test.yml"
    path.write_text(yaml.safe_dump(wrong))
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 1
    assert "ConsumerLagGrowing" in result.stdout + result.stderr


def test_each_alert_is_tested_firing_and_silent() -> None:
    """For every alert, alerts.test.yml has a case where it fires and one where it stays silent."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == EXPECTED_ALERTS
    assert silent == EXPECTED_ALERTS


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_has_severity_and_annotations(name: str) -> None:
    """Each alert carries a severity, a summary, a description and its README runbook anchor."""
    [rule] = [rule for rule in _alerts() if rule["alert"] == name]
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]
    assert rule["annotations"]["runbook_url"] == RUNBOOK + name.lower()


def test_alerts_read_only_metrics_the_service_exposes() -> None:
    """Every metric an alert expression reads exists in the service's registry."""
    exposed = exposed_metric_names(REGISTRY)
    for rule in _alerts():
        referenced = referenced_metrics(rule["expr"])
        assert referenced
        assert referenced <= exposed, (rule["alert"], referenced - exposed)


def test_runbook_anchors_are_github_style() -> None:
    """Runbook anchors are lower-case letters and dashes, as GitHub derives them from headings."""
    for rule in _alerts():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert re.fullmatch(r"[a-z-]+", anchor)
