"""What every `lotwise` command shares: exit codes, consoles, failing with one clear line,
talking to an engine, and the options and cells the client commands have in common."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.endpoints import Target

EXIT_REFUSED = 1
EXIT_CONFIG = 2  # the same code click uses for usage errors: "you asked for something impossible"
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
_DEBUG_HINT = "LOTWISE_LOG_LEVEL=debug logs the full traceback"

# "": the engine.json of the data dir (`lotwise up` writes it), else 127.0.0.1:50051 (engine/endpoints.py).
DEFAULT_TARGET = ""
SERVICE = "lotwise.v1.Inventory"
MS_PER_DAY = 86_400_000
EXPIRY_WARN_DAYS = 30  # expiry within a month is shown in yellow: what a pharmacist scans for

_T = TypeVar("_T")


class ConfigError(Exception):
    """Bad configuration, caught before anything starts. Names the field it is about;
    `more` lists further problems found at the same time (so one run shows them all)."""

    def __init__(self, field: str, message: str, more: Sequence[str] = ()) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.more = tuple(more)


class StartError(Exception):
    """The engine could not start for a reason that is not bad configuration (Ray did not
    come up, a cluster is unreachable, the journal cannot be read)."""


# ---- consoles and failures ------------------------------------------------------------


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    # soft_wrap: an error stays one line however narrow the terminal (greppable in logs).
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(lines: str | Sequence[str], code: int) -> NoReturn:
    """Print `lotwise: error: ...` (first line) plus detail lines to stderr and exit."""
    items = [lines] if isinstance(lines, str) else list(lines)
    err = _err()
    err.print(Text("lotwise: error: ", style="bold red") + Text(items[0]))
    for line in items[1:]:
        err.print(Text("  " + line))
    raise typer.Exit(code)


# ---- talking to an engine -------------------------------------------------------------


def describe(err: BaseException) -> list[str]:
    """A typed refusal as lines: what happened, then its details (violations, quantities)."""
    from engine.api.errors import RemoteError
    from engine.domain.errors import (
        DeadlineExceeded,
        FailedPrecondition,
        InsufficientStock,
        InvalidArgument,
        NotFound,
        Overloaded,
        PermissionDenied,
        RequestConflict,
        Unavailable,
    )

    match err:
        case InvalidArgument():
            return ["invalid argument (INVALID_ARGUMENT):"] + [f"{v.field}: {v.description}" for v in err.violations]
        case InsufficientStock():
            return [
                f"insufficient stock (FAILED_PRECONDITION, INSUFFICIENT_STOCK) at {err.sku}@{err.site}:",
                f"requested {err.requested}, available {err.available}",
            ]
        case FailedPrecondition():
            meta = ", ".join(f"{k}={v}" for k, v in sorted(err.metadata.items()))
            return [f"refused (FAILED_PRECONDITION, {err.reason}): {err.message}"] + ([meta] if meta else [])
        case NotFound():
            what = f"{err.resource_type} {err.resource_name!r}" if err.resource_type else err.message
            return [f"not found (NOT_FOUND): {what}"]
        case RequestConflict():
            return [f"conflict (ALREADY_EXISTS): {err.message}"]
        case PermissionDenied():
            return [f"permission denied (PERMISSION_DENIED): {err.message}"]
        case Overloaded():
            return [f"engine overloaded (RESOURCE_EXHAUSTED): {err.message}", "retry with backoff"]
        case Unavailable():
            return [f"engine unavailable (UNAVAILABLE): {err.message}"]
        case DeadlineExceeded():
            return [f"no answer in time (DEADLINE_EXCEEDED): {err.message}"]
        case RemoteError():
            return [f"{err.code.name}: {err.message}"]
    return [f"{type(err).__name__}: {err}"]


def _exit_code(err: BaseException) -> int:
    from engine.domain.errors import DeadlineExceeded, Unavailable

    return EXIT_UNREACHABLE if isinstance(err, Unavailable | DeadlineExceeded) else EXIT_REFUSED


def with_client(target: str, timeout_s: float, work: Callable[[LotwiseClient], Awaitable[_T]]) -> _T:
    """Run `work` with a client of `target`; typed refusals become messages and exit codes."""
    from engine.api.client import LotwiseClient
    from engine.api.errors import RemoteError
    from engine.domain.errors import DomainError, Unavailable
    from engine.logs import configure_logging

    if timeout_s <= 0:
        fail("--timeout must be > 0", EXIT_CONFIG)
    resolved = _resolve_target(target)
    target = resolved.address
    configure_logging("warning")  # the client's retry chatter is debug; the table is the output

    async def go() -> _T:
        async with LotwiseClient(target, timeout_s=timeout_s) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except Unavailable as exc:
        lines = [f"cannot reach the engine at {target} (from {resolved.source})", *describe(exc)]
        fail([*lines, _UNREACHABLE_HINT], EXIT_UNREACHABLE)
    except (DomainError, RemoteError) as exc:
        fail(describe(exc), _exit_code(exc))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)


_UNREACHABLE_HINT = (
    "is `lotwise up` running? `make up` serves inside a private network namespace: "
    "run clients in `make shell`, or set LOTWISE_NO_NETNS=1"
)


def _resolve_target(given: str) -> Target:
    from engine.endpoints import EndpointsError, resolve_target

    try:
        return resolve_target(given)
    except EndpointsError as exc:
        fail([f"unusable {exc.path}: {exc.problem}", "give --target, or remove the file"], EXIT_CONFIG)


# ---- rendering ------------------------------------------------------------------------


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat() if ms else "—"


def _expiry_cell(ms: int, now_ms: int) -> Text:
    if not ms:
        return Text("never", style="dim")
    days = (ms - now_ms) / MS_PER_DAY
    style = "bold red" if days <= 0 else "yellow" if days < EXPIRY_WARN_DAYS else ""
    left = "expired" if days <= 0 else f"{days:.0f} d"
    return Text(f"{_day(ms)} ({left})", style=style)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---- options shared by the client commands --------------------------------------------

TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        "-t",
        envvar="LOTWISE_TARGET",
        help="host:port of a running engine.",
        show_default="the engine.json in LOTWISE_DATA_DIR (.data), else 127.0.0.1:50051",
    ),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for an answer, retries included.")]
