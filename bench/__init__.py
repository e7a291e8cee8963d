"""Benchmarks: ``python -m bench.ingest`` and ``python -m bench.commands`` (docs/benchmarks.md)."""
