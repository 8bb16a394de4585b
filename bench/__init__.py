"""Benchmarks of Lotwise: the core write path and its ceilings (see bench/README.md)."""
