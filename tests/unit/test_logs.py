"""Logs follow sys.stderr as it is now, and a closed stream never fails the caller."""

from __future__ import annotations

import io
import os
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


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # as a real closed terminal stream does
        return True


def test_colour_only_at_a_terminal_and_never_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.logs import wants_colour

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_colour(_Tty())
    assert not wants_colour(io.StringIO())  # a file or a pipe
    closed = _Tty()
    closed.close()
    assert not wants_colour(closed)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(_Tty())


def test_logs_redirected_to_a_file_carry_no_colour_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("info", "console")
    structlog.get_logger("test").error("shard recovery failed", shard="000")
    assert "shard recovery failed" in stream.getvalue()
    assert "\x1b[" not in stream.getvalue()


def test_a_local_ray_start_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from engine.logs import quiet_ray_start

    for name in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_COLOR_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    quiet_ray_start(local_ray=True)
    quiet_ray_start(local_ray=True)  # twice: still one filter
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # no 8.8.8.8 probe for a loopback Ray
    assert os.environ["RAY_COLOR_PREFIX"] == "0"  # stderr is not a terminal
    token_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    assert len(token_logger.filters) == 1
    notice = logging.LogRecord(
        token_logger.name,
        logging.WARNING,
        "",
        0,
        "Token authentication is enabled for this Ray cluster. Set …",
        None,
        None,
    )
    other = logging.LogRecord(token_logger.name, logging.WARNING, "", 0, "Token authentication is disabled", None, None)
    assert not token_logger.filters[0].filter(notice)
    assert token_logger.filters[0].filter(other)


def test_joining_a_cluster_keeps_the_node_ip_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.logs import quiet_ray_start

    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    quiet_ray_start(local_ray=False)
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
