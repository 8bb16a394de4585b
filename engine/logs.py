"""Structured logs (structlog): human-readable on a console, JSON lines in production."""

from __future__ import annotations

import logging
import os
import sys

import structlog


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time of writing. Binding the object that was
    current at configuration would keep writing to a stream someone has since replaced and
    closed (test runners, embedders), and a log line must never fail the work it reports."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except ValueError:  # stderr itself closed: drop the line rather than raise
            return 0

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except ValueError:
            return


def wants_colour(stream: object) -> bool:
    """Colour only for a person at a terminal: never in a file or a pipe, never under NO_COLOR."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def configure_logging(level: str = "info", fmt: str = "console") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=wants_colour(sys.stderr))
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


# Ray's notice that it enabled token authentication for a local cluster: true, and nothing a
# user of `lotwise up` can act on (the cluster is ours, on 127.0.0.1, in our namespace).
_RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
_RAY_TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


class _DropRayTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RAY_TOKEN_NOTICE)


def quiet_ray_start(local_ray: bool) -> None:
    """Keep a start-up's output to what a user can act on. Call before Ray is imported.

    - A local Ray binds to 127.0.0.1, yet asks for "the node's IP" by opening a socket
      towards 8.8.8.8 first and warns when that fails (always, in the loopback-only
      namespace). Ray's own switch for "this is not a multi-node cluster" answers
      127.0.0.1 without the probe; never set when joining a cluster, whose nodes need it.
    - Ray's token-authentication notice for the cluster it starts is dropped.
    - Ray's per-actor log prefixes carry colour codes unless told not to: not in a file.
    """
    if local_ray:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not wants_colour(sys.stderr):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    token_logger = logging.getLogger(_RAY_TOKEN_LOGGER)
    if not any(isinstance(f, _DropRayTokenNotice) for f in token_logger.filters):
        token_logger.addFilter(_DropRayTokenNotice())
