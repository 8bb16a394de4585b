"""What every `lotwise` command shares: exit codes, consoles, failing with one clear line,
checking arguments before any call, talking to an engine, output formats (table, json,
csv) and tables that stay readable on a narrow terminal."""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.endpoints import Target


class ExitCode(IntEnum):
    """The one exit-code table of every `lotwise` command (README, "Exit codes")."""

    OK = 0
    # The engine answered with a typed refusal (printed with its details); or something that
    # was well-formed failed once tried: `up` could not start (a data dir it cannot write, Ray
    # or a cluster down), `verify` found a shard differing from its journal.
    REFUSED = 1
    USAGE = 2  # bad usage or configuration, found before any call (click's code for usage errors)
    UNREACHABLE = 3  # no engine answered at the address (it is printed, with where it came from)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it); `up` stops cleanly first


EXIT_CODES: Mapping[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.REFUSED: (
        "refused by the engine (the typed error is printed: field, value, what is accepted), "
        "or the engine could not start, or verify found a shard differing from its journal"
    ),
    ExitCode.USAGE: "bad usage or configuration (nothing was sent or started)",
    ExitCode.UNREACHABLE: "the engine could not be reached (the message says where the client looked)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C; `up` stops cleanly first)",
}

EXIT_REFUSED = ExitCode.REFUSED
EXIT_CONFIG = ExitCode.USAGE
EXIT_UNREACHABLE = ExitCode.UNREACHABLE
EXIT_INTERRUPTED = ExitCode.INTERRUPTED
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
            return [f"not found (NOT_FOUND): {what}", *_NOT_FOUND_HINTS.get(err.resource_type, ())]
        case RequestConflict():
            differs = [f"differs: {err.differs.replace(',', ', ')}"] if err.differs else []
            return [f"conflict (ALREADY_EXISTS): {err.message}", *differs]
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


_NOT_FOUND_HINTS: Mapping[str, tuple[str, ...]] = {
    "site": ("`lotwise sites` lists the sites this engine knows",),
    "sku": ("an sku exists once it was put (PutSku, `lotwise import`); `lotwise stock` lists skus with stock",),
    "org node": ("no site is at or below it; `lotwise sites` lists the sites and their org nodes",),
    "hold": ("holds are named by the hold id given to Reserve; resolved holds are forgotten after a while",),
}


def _exit_code(err: BaseException) -> int:
    from engine.domain.errors import DeadlineExceeded, Unavailable

    return EXIT_UNREACHABLE if isinstance(err, Unavailable | DeadlineExceeded) else EXIT_REFUSED


def with_client(target: str, timeout_s: float, work: Callable[[LotwiseClient], Awaitable[_T]]) -> _T:
    """Run `work` with a client of `target`; typed refusals become messages and exit codes."""
    from engine.api.client import LotwiseClient
    from engine.api.errors import RemoteError
    from engine.domain.errors import DeadlineExceeded, DomainError, Unavailable
    from engine.logs import configure_logging

    if timeout_s <= 0:
        fail("--timeout must be > 0", EXIT_CONFIG)
    resolved = _resolve_target(target)
    target = resolved.address
    configure_logging("warning")  # the client's retry chatter is debug; the table is the output

    token_file = _TOKEN_FILE.get()

    async def go() -> _T:
        async with LotwiseClient(target, timeout_s=timeout_s, token_file=token_file) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except Unavailable as exc:
        # One line says where the client looked and the likely cause; the details follow.
        fail(
            [f"cannot reach the engine at {target} (from {resolved.source}); {_UNREACHABLE_HINT}", *describe(exc)],
            EXIT_UNREACHABLE,
        )
    except (DomainError, RemoteError) as exc:
        if isinstance(exc, DeadlineExceeded):  # no answer in time: as unreachable, with where it looked
            fail(
                [*describe(exc), f"asked {target} (from {resolved.source}); a longer --timeout may help"],
                EXIT_UNREACHABLE,
            )
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
        resolved = resolve_target(given)
    except EndpointsError as exc:
        fail([f"unusable {exc.path}: {exc.problem}", "give --target, or remove the file"], EXIT_CONFIG)
    problem = target_problem(resolved.address)
    if problem:
        fail(f"--target {resolved.address!r} (from {resolved.source}): {problem}", EXIT_CONFIG)
    return resolved


MAX_PORT = 65_535
_TARGET_SCHEMES = ("dns:", "unix:", "ipv4:", "ipv6:")  # gRPC name syntax, passed through as given


def target_problem(address: str) -> str:
    """What is wrong with a host:port a client would dial ("" when nothing): checked here,
    because gRPC would wrap a port like 99999 around and report another one."""
    if address.startswith(_TARGET_SCHEMES):
        return ""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        return "give host:port, e.g. 127.0.0.1:50051"
    if not port.isdigit():
        return f"the port {port!r} is not a number; give host:port, e.g. 127.0.0.1:50051"
    if not 1 <= int(port) <= MAX_PORT:
        return f"the port {int(port)} is out of range; ports are 1..{MAX_PORT}"
    if host.startswith("["):
        if not host.endswith("]"):
            return "an IPv6 host is written in brackets: [::1]:50051"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
    elif ":" in host:
        return "an IPv6 host is written in brackets: [::1]:50051"
    return ""


def check_range(flag: str, value: float, low: float, high: float) -> None:
    """Exit 2 naming the flag, the value and the accepted range when `value` is outside it."""
    if not low <= value <= high:
        fail(f"{flag} must be in {_number(low)}..{_number(high)} (got {_number(value)})", EXIT_CONFIG)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def check_id(flag: str, value: str) -> None:
    """An id argument the engine would refuse anyway (empty, spaces, too long), caught here."""
    from engine.domain.commands import check_id as domain_check_id
    from engine.domain.errors import FieldViolation

    problems: list[FieldViolation] = []
    domain_check_id(value, flag, problems)
    if problems:
        fail(f"{flag}: {problems[0].description}", EXIT_CONFIG)  # the description quotes the value


def no_site_under(org: str) -> NoReturn:
    fail([f"no site at or below org node {org!r}", "`lotwise sites` lists the sites and their org nodes"], EXIT_REFUSED)


async def check_org(client: LotwiseClient, org: str) -> None:
    """An org filter under which the directory has no site: an error, not an empty table."""
    from engine.domain.errors import NotFound

    if org and not await client.list_sites(org):
        raise NotFound("org node", org)


async def check_sites(client: LotwiseClient, sites: Sequence[str]) -> None:
    """A filter naming a site the directory does not know is a refusal, not an empty table."""
    from engine.domain.errors import NotFound

    if not sites:
        return
    known = {s.site for s in await client.list_sites("")}
    for site in sites:
        if site not in known:
            raise NotFound("site", site)


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

# Where the --token-file callback leaves the path for with_client. Click calls the callback
# of every command that has the option, given or not, so no value outlives its command.
_TOKEN_FILE: ContextVar[Path | None] = ContextVar("lotwise_token_file", default=None)


def _token_file_given(value: Path | None) -> None:
    """Check --token-file while parsing (exit 2 naming the path, nothing dialled), then keep
    it for with_client: every client command takes it without passing it along itself."""
    _TOKEN_FILE.set(None)
    if value is None:
        return
    try:
        token = value.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"--token-file {value}: cannot read it: {problem}", EXIT_CONFIG)
    if not token:
        fail(f"--token-file {value}: the file is empty (it should hold one bearer token)", EXIT_CONFIG)
    _TOKEN_FILE.set(value)


# expose_value=False: the callback keeps the path for with_client (see _TOKEN_FILE).
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding the bearer token to send (else LOTWISE_TOKEN, LOTWISE_TOKEN_FILE, then the "
        "admin token engine.json names for this target).",
        show_default=False,
        callback=_token_file_given,
        expose_value=False,
    ),
]


# ---- output formats: a table for people, json and csv for scripts ---------------------


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FormatOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        "-F",
        case_sensitive=False,
        help="table for people; json or csv for scripts (never wrapped, never coloured).",
    ),
]

Scalar = str | int | float | bool | None
Record = Mapping[str, Scalar]


def emit(fmt: OutputFormat, records: Sequence[Record], columns: Sequence[str] = ()) -> None:
    """json (one array of objects) or csv (a header row, then one row per record) on stdout,
    plain: a script reads exactly the values, whatever the terminal."""
    if fmt is OutputFormat.JSON:
        sys.stdout.write(json.dumps(list(records), ensure_ascii=False) + "\n")
        return
    names = list(columns) or list(dict.fromkeys(name for r in records for name in r))
    writer = csv.DictWriter(sys.stdout, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)


def emit_object(fmt: OutputFormat, obj: Mapping[str, object], sections: Mapping[str, Sequence[Record]]) -> None:
    """A reply with several parts: json as one object (its scalars and each section's list);
    csv as one table of the sections' rows, each named in a leading `record` column."""
    if fmt is OutputFormat.JSON:
        sys.stdout.write(json.dumps({**obj, **{k: list(v) for k, v in sections.items()}}, ensure_ascii=False) + "\n")
        return
    rows = [{"record": name, **r} for name, records in sections.items() for r in records]
    emit(fmt, rows, ["record", *dict.fromkeys(k for name in sections for r in sections[name] for k in r)])


def show_table(out: Console, table: Table) -> None:
    """Print `table` so that a narrow terminal never cuts an id or a quantity to `…`: as it
    is when it fits; else without its borders (columns two spaces apart); else as records,
    one `column: value` line each, a blank line between rows."""
    if _needed_width(out, table) <= out.width:
        out.print(table)
        return
    borders = table.box
    table.box, table.pad_edge = None, False
    if _needed_width(out, table) <= out.width:
        out.print(table)
        return
    table.box = borders
    if table.title:
        out.print(table.title)
    columns = list(table.columns)
    cells = [list(c.cells) for c in columns]
    names = [_header(c) for c in columns]
    for index in range(table.row_count):
        _print_record(out, names, [c[index] for c in cells])
    if table.show_footer and table.row_count > 1:
        _print_record(out, names, [c.footer for c in columns])


def _header(column: Column) -> str:
    header = column.header
    text = header.plain if isinstance(header, Text) else str(header)
    return text or "group"


def _print_record(out: Console, names: Sequence[str], values: Sequence[RenderableType]) -> None:
    width = max(len(n) for n in names) + 2
    for name, value in zip(names, values, strict=True):
        if isinstance(value, str | Text):
            text = value if isinstance(value, Text) else Text.from_markup(value)
            if text.plain:  # an empty cell says nothing in a record
                out.print(Text(f"{name}:".ljust(width), style="bold") + text)
        else:  # another renderable (none of our tables has one): as rich prints it
            out.print(Text(f"{name}:", style="bold"), value)
    out.print()


def _needed_width(out: Console, table: Table) -> int:
    """The width at which no no_wrap cell is cut (rich's own minimum lets it cut them)."""
    total = 0
    for column in table.columns:
        cells: list[RenderableType] = [column.header, *column.cells]
        if table.show_footer:
            cells.append(column.footer)
        sizes = [Measurement.get(out, out.options, cell) for cell in cells]
        total += max((m.maximum if column.no_wrap else m.minimum) for m in sizes)
    _, right, _, left = table.padding
    edges = (len(table.columns) + 1) if table.box is not None else 0
    return total + len(table.columns) * (left + right) + edges
