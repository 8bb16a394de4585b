"""Logs follow sys.stderr as it is now, and a closed stream never fails the caller."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from engine.logs import configure_logging


def test_logs_go_to_the_current_stderr_and_survive_a_closed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("info", "json")
    log = structlog.get_logger("test")
    log.info("one")
    first.close()  # e.g. a test runner's captured stream, closed after its command
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    log.info("two")
    assert '"event": "two"' in second.getvalue()
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    log.warning("three")  # must not raise: the line is dropped
