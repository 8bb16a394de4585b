"""Contract tests: one suite, run against every implementation of a port (DESIGN.md §10)."""
