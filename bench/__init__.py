"""Benchmarks of cxone-role-sync against the sandbox; run them with `python -m bench`."""
