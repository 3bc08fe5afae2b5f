"""Every Prometheus metric of the service, created once; names and labels are a contract."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from consumer import __version__
from consumer.events import Outcome

REGISTRY = CollectorRegistry(auto_describe=True)

# Memory, CPU and open files of the process, beside the service's own metrics.
ProcessCollector(registry=REGISTRY)

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

# The known values of the reason labels: codes, never messages or user ids.
RETRY_REASONS = frozenset({"rate_limited", "server_error", "network", "auth", "conflict"})
ESCALATION_REASONS = frozenset(
    {"unknown_role", "approval_required", "approval_invalid", "approval_expired"}
)
DLQ_REASONS = frozenset({"invalid_json", "schema_violation", "too_large", "key_mismatch"})

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
    "Unix time of the last event that ended synced or unchanged (process start until then).",
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
GUARD_BUDGET = Gauge(
    "cxone_sync_guard_budget",
    "This instance's share of the guard's max_revocations per window (by partitions owned).",
    registry=REGISTRY,
)
GUARD_WOULD_HOLD = Counter(
    "cxone_sync_guard_would_hold",
    "Revocations a dry run let through that the mass-revocation guard would have held.",
    registry=REGISTRY,
)
RATE_ALLOWED = Gauge(
    "cxone_sync_rate_allowed_per_minute",
    "SCIM requests a minute this instance may send now (+Inf while unpaced).",
    registry=REGISTRY,
)
PARTITION_SHARE = Gauge(
    "cxone_sync_partition_share",
    "The part of the input topic's partitions this instance owns (0 to 1): its budget share.",
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "cxone_sync_build_info",
    "Always 1; the label carries the running version.",
    ["version"],
    registry=REGISTRY,
)
PUBLISH_BLOCKED = Gauge(
    "cxone_sync_publish_blocked",
    "Records the broker refuses for good (audit or DLQ copy); their partitions stop committing.",
    registry=REGISTRY,
)
AUTH_REJECTED = Gauge(
    "cxone_sync_auth_rejected",
    "1 while the token endpoint refuses the configured credentials or scopes.",
    registry=REGISTRY,
)
OLDEST_UNFINISHED_AGE = Gauge(
    "cxone_sync_oldest_unfinished_age_seconds",
    "Seconds since the oldest unfinished record of a partition was fetched (0 when none is).",
    ["topic", "partition"],
    registry=REGISTRY,
)
LATE_WRITES_REPAIRED = Counter(
    "cxone_sync_late_writes_repaired",
    "Users found, on the second look after a request the service gave up on could still land, "
    "in another state than their newest event's, and written back.",
    registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "cxone_sync_webhook_failures",
    "Webhook notifications dropped after their retries ran out or the queue was full.",
    registry=REGISTRY,
)


def _initialise() -> None:
    # A labelled series that does not exist yet is invisible to rate() and increase(): the first
    # DLQ record or rejection would never alert. Every known label value therefore starts at 0.
    for outcome in Outcome:
        EVENTS.labels(outcome=outcome.value)
        LATENCY.labels(outcome=outcome.value)
    for reason in RETRY_REASONS:
        RETRIES.labels(reason=reason)
    for reason in ESCALATION_REASONS:
        ESCALATION_REJECTIONS.labels(reason=reason)
    for reason in DLQ_REASONS:
        DLQ.labels(reason=reason)
    # The dashboard's share of requests answered 429 needs the first 429 to be an increase.
    for method in ("GET", "PUT"):
        SCIM_REQUESTS.labels(method=method, status="429")
    BUILD_INFO.labels(version=__version__).set(1)
    # "No success for 15 minutes" counts from start-up until the first success.
    LAST_SUCCESS.set_to_current_time()


_initialise()

# The SCIM ingress (`ingress`): what IdPs send, and the events it becomes.
INGRESS_REQUESTS = Counter(
    "cxone_ingress_requests",
    "SCIM requests an IdP sent the ingress, by operation and HTTP status.",
    ["operation", "status"],
    registry=REGISTRY,
)
INGRESS_EVENTS = Counter(
    "cxone_ingress_events",
    "Input events the ingress emitted, by event type.",
    ["type"],
    registry=REGISTRY,
)
INGRESS_MAPPING_MISSES = Gauge(
    "cxone_ingress_mapping_misses",
    "Distinct IdP group names and role values held by users that idp_mapping does not name.",
    registry=REGISTRY,
)
INGRESS_STATE = Gauge(
    "cxone_ingress_state_resources",
    "Users and groups the ingress holds, by kind.",
    ["kind"],
    registry=REGISTRY,
)
INGRESS_UNRESOLVED = Gauge(
    "cxone_ingress_unresolved_users",
    "IdP users with a change to emit but no CXone user found for them (yet).",
    registry=REGISTRY,
)
