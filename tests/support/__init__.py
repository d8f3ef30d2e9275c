"""Helpers the tests and benchmarks share (not part of the package): importable as `support.*` with
tests/ on sys.path, as pytest puts it for conftest.py."""
