"""Tests of the metric registry: contract names and labels, buckets, series present from start."""

from __future__ import annotations

import pytest
from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as parse_text

from consumer import __version__
from consumer.events import Outcome
from consumer.observability import metrics
from consumer.observability.metrics import REGISTRY

# The contract of DESIGN.md: exposed name -> (type, label names).
CONTRACT: dict[str, tuple[type[MetricWrapperBase], tuple[str, ...]]] = {
    "cxone_sync_events_total": (Counter, ("outcome",)),
    "cxone_sync_latency_seconds": (Histogram, ("outcome",)),
    "cxone_sync_retries_total": (Counter, ("reason",)),
    "cxone_sync_escalation_rejections_total": (Counter, ("reason",)),
    "cxone_sync_inflight": (Gauge, ()),
    "cxone_sync_consumer_lag": (Gauge, ("topic", "partition")),
    "cxone_scim_requests_total": (Counter, ("method", "status")),
    "cxone_scim_request_duration_seconds": (Histogram, ("method",)),
    "cxone_sync_dlq_total": (Counter, ("reason",)),
    "cxone_sync_last_success_timestamp_seconds": (Gauge, ()),
    "cxone_sync_circuit_open": (Gauge, ()),
    "cxone_sync_guard_tripped": (Gauge, ()),
    "cxone_sync_build_info": (Gauge, ("version",)),
    "cxone_sync_oldest_unfinished_age_seconds": (Gauge, ("topic", "partition")),
}


def _collectors() -> dict[str, MetricWrapperBase]:
    """The module's metric objects by their exposed name (counters gain `_total`)."""
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if isinstance(value, Counter) else "")
            found[name] = value
    return found


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_metric_has_its_type_and_exact_labels(name: str) -> None:
    """Each metric of the contract exists once, with its type and exactly its label names."""
    kind, labels = CONTRACT[name]
    collector = _collectors()[name]
    assert isinstance(collector, kind)
    assert tuple(collector._labelnames) == labels


def test_no_metric_outside_the_contract_but_the_documented_extras() -> None:
    """The module defines the contract's metrics plus the documented extras only."""
    extras = {
        "cxone_sync_webhook_failures_total",
        "cxone_sync_publish_blocked",
        "cxone_sync_auth_rejected",
        "cxone_sync_guard_budget",
        "cxone_sync_guard_would_hold_total",
        "cxone_sync_partition_share",
        "cxone_sync_rate_allowed_per_minute",
        "cxone_ingress_requests_total",
        "cxone_ingress_events_total",
        "cxone_ingress_mapping_misses",
        "cxone_ingress_state_resources",
        "cxone_ingress_unresolved_users",
        "cxone_sync_late_writes_repaired_total",
    }
    assert set(_collectors()) == set(CONTRACT) | extras


def test_every_metric_is_registered_in_the_service_registry() -> None:
    """Every family of the contract is exposed by the service's registry."""
    text = generate_latest(REGISTRY).decode()
    families = {family.name for family in parse_text(text)}
    exposed = {name.removesuffix("_total") for name in CONTRACT}
    assert exposed <= families


def test_latency_buckets_span_5ms_to_60s() -> None:
    """Both histograms use increasing buckets from 5 ms to 60 s."""
    for histogram in (metrics.LATENCY, metrics.SCIM_DURATION):
        bounds = list(histogram._upper_bounds)
        assert bounds[0] == 0.005
        assert bounds[-2] == 60.0
        assert bounds[-1] == float("inf")
        assert bounds == sorted(bounds)


def _label_values(name: str, label: str) -> set[str]:
    values = set()
    for family in parse_text(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == name:
                values.add(sample.labels[label])
    return values


def test_known_label_values_exist_before_anything_happens() -> None:
    """Known outcomes and reasons are exposed from start-up, so rate() sees the first event."""
    assert _label_values("cxone_sync_events_total", "outcome") >= {o.value for o in Outcome}
    assert _label_values("cxone_sync_latency_seconds_count", "outcome") >= {
        o.value for o in Outcome
    }
    assert _label_values("cxone_sync_retries_total", "reason") >= {
        "rate_limited",
        "server_error",
        "network",
        "auth",
        "conflict",
    }
    assert _label_values("cxone_sync_escalation_rejections_total", "reason") >= {
        "unknown_role",
        "approval_required",
    }
    assert _label_values("cxone_sync_dlq_total", "reason") >= {"invalid_json", "schema_violation"}


def test_build_info_carries_the_running_version() -> None:
    """cxone_sync_build_info{version} is 1 for the installed version."""
    assert REGISTRY.get_sample_value("cxone_sync_build_info", {"version": __version__}) == 1.0


def test_last_success_starts_at_start_up_time() -> None:
    """Before the first success the timestamp holds the process start, not 0."""
    value = REGISTRY.get_sample_value("cxone_sync_last_success_timestamp_seconds")
    assert value is not None
    assert value > 1_600_000_000


def test_openmetrics_exposition_parses() -> None:
    """The OpenMetrics rendering Prometheus asks for parses and holds every contract family."""
    text = generate_openmetrics(REGISTRY).decode()  # type: ignore[no-untyped-call]
    parsed = text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    families = {family.name for family in parsed}
    assert {name.removesuffix("_total") for name in CONTRACT} <= families
    assert text.endswith("# EOF\n")
