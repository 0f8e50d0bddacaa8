"""Benchmarks for fedistream: `python bench/run.py` runs them all (see bench/README.md)."""
