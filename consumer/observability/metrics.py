"""Every Prometheus metric of the service, created once; names and labels are a contract."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# SCIM writes take milliseconds when CXone is healthy and up to a minute when it throttles.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
)

EVENTS = Counter(
    "cxone_sync_events",
    "Input events processed, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "cxone_sync_latency_seconds",
    "Time from an event's receipt to its published result, by outcome.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "cxone_sync_retries",
    "SCIM requests retried, by reason.",
    ["reason"],
    registry=REGISTRY,
)
ESCALATION_REJECTIONS = Counter(
    "cxone_sync_escalation_rejections",
    "Changes refused as privilege escalations, by reason.",
    ["reason"],
    registry=REGISTRY,
)
INFLIGHT = Gauge(
    "cxone_sync_inflight",
    "Events being applied right now.",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "cxone_sync_consumer_lag",
    "Records between the committed offset and the log end, per partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
SCIM_REQUESTS = Counter(
    "cxone_scim_requests",
    "SCIM requests sent, by method and HTTP status (or 'error' when none came back).",
    ["method", "status"],
    registry=REGISTRY,
)
SCIM_DURATION = Histogram(
    "cxone_scim_request_duration_seconds",
    "SCIM request duration, by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DLQ = Counter(
    "cxone_sync_dlq",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "cxone_sync_last_success_timestamp_seconds",
    "Unix time of the last event that ended synced or unchanged.",
    registry=REGISTRY,
)
CIRCUIT_OPEN = Gauge(
    "cxone_sync_circuit_open",
    "1 while the circuit breaker keeps new work away from an unwell CXone.",
    registry=REGISTRY,
)
GUARD_TRIPPED = Gauge(
    "cxone_sync_guard_tripped",
    "1 while the mass-revocation guard holds revocations back.",
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "cxone_sync_build_info",
    "Always 1; the label carries the running version.",
    ["version"],
    registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "cxone_sync_webhook_failures",
    "Webhook notifications dropped after their retries ran out or the queue was full.",
    registry=REGISTRY,
)
