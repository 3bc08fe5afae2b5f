"""The CXone side: SCIM 2.0 over HTTP.

`auth.py` OAuth2 tokens (an `httpx.Auth` flow), `client.py` the SCIM client (retries,
`Retry-After`, the read-modify-write), `throttle.py` the adaptive rate limiter, `slots.py` the
group's send schedule under a ceiling and `shared_limit.py` the limiter that sends in a member's
slots, `circuit.py` the circuit breaker, `mapping.py` the pure change of a user's roles. It may
import `errors`, `events`, `settings`, `share` and `observability`; never `stream`, `sync` or the
sandbox. `mapping.py` imports only
`errors` and the SCIM models.
"""
