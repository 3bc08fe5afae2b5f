"""What the service tells its operators: metrics, logs, health.

`metrics.py` every Prometheus metric (created there and nowhere else), `logging.py` the structlog
set-up and secret redaction, `http.py` the /metrics /healthz /readyz server and the guard release,
`outcomes.py` the counters and log line of one result, `lag.py` consumer lag, `retries.py` the one
stamina hook that hands each retry to its subsystem. It imports nothing of the package but
`events`, `lifecycle` and the version, so every other part may import it.
"""
