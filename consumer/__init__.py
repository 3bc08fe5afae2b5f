"""cxone-role-sync: keeps NICE CXone user roles equal to what the identity provider says.

A map (tests/unit/test_layering.py checks the import rules):

- The functional core: `policy.py` (the least-privilege decision), `fold.py` (an event and the
  ones queued behind it -> one desired state) and `scim/mapping.py` are pure: data in, data out, no
  I/O, logging or clock. `catalog.py` is the policy file (`Policy`, `RoleCatalog`) and its loading;
  `events.py` the input and audit events; `errors.py` the error tree.
- `sync.py`: one event -> one result against CXone; it knows nothing of Kafka.
- `revocation_guard.py`: the mass-revocation guard's window (pure), `revocation_gate.py` the gate
  that parks revocations while it is tripped; `share.py` (pure) splits a group-wide budget by
  partition ownership, and `assignment_share.py` re-splits the guard's and the rate limit's at
  every rebalance.
- `stream/` the Kafka side, `scim/` the CXone side, `observability/` metrics, logs, health server.
- `service.py` wires them into the running consumer; `replay.py`, `send.py` and `audit_reader.py`
  are the other commands, `cli.py` the command line, `settings.py` all configuration.
- `sandbox/` (and `demo.py`, which drives it): the embedded broker and CXone simulator. Production
  code never imports it: only `demo.py` and `demo_summary.py` do, and the CLI loads `demo.py` only
  inside its `demo` and `sandbox` commands.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxone-role-sync")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
