"""`lotwise transfers …`: transfers between sites under their approval flow (lotwise.v1.Transfers).

    lotwise transfers create T-1 --from DC --to BOS --line sku=GLU,qty=120 [--line …] [--note …]
    lotwise transfers approve T-1 [--note …]        (reject, cancel alike)
    lotwise transfers ship T-1 [--eta 2026-12-09T08:00Z]
    lotwise transfers receive T-1 --line sku=GLU,qty=90,damaged=5 [--final]
    lotwise transfers show T-1                       lines, lots in transit, steps, time in each state
    lotwise transfers list [--site S] [--state X]    a page, oldest request first
    lotwise transfers times [--site S] [--since T]   time in each state, request → dispatch

Every step sends a request id (`--request-id`; by default `create:<id>` for a create, so
running the same create again is harmless, and a fresh one for every other step): the
engine applies a step once however often the same id is sent. Exit codes as for every
client command: 2 bad usage, 1 refused by the engine (e.g. not your role, the requester
approving, insufficient stock), 3 the engine could not be reached.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from engine.cli.common import (
    DEFAULT_TARGET,
    EXIT_CONFIG,
    FormatOpt,
    OutputFormat,
    Record,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _out,
    check_id,
    check_range,
    emit,
    emit_object,
    fail,
    show_table,
    with_client,
)
from engine.cli.history import TIME_HELP, parse_time
from engine.domain.transfer_flow import MAX_PAGE_SIZE, ReceiptLine, TransferLine, parse_value

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
    from engine.api.transfers_client import TransfersClient

transfers_app = typer.Typer(
    name="transfers",
    help="Transfers between sites: create, approve or reject, ship, receive, cancel, show, list.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_T = TypeVar("_T")
MAX_LINES = 256
CREATE_LINE_KEYS = ("sku", "qty", "lot", "value")
RECEIVE_LINE_KEYS = ("sku", "qty", "damaged", "lot")

IdArg = Annotated[str, typer.Argument(help="The transfer id.", show_default=False)]
NoteOpt = Annotated[str, typer.Option("--note", help="A note recorded on the step.")]
RequestIdOpt = Annotated[
    str,
    typer.Option("--request-id", help="The step's idempotency key (default: a fresh one; create: create:<id>)."),
]


# ---- helpers --------------------------------------------------------------------------


def parse_line(spec: str, keys: Sequence[str]) -> dict[str, str]:
    """`sku=GLU,qty=120,lot=L1`: key=value pairs, commas between (no id holds `,` or `=`)."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in keys or not value.strip():
            fail(f"--line {spec!r}: write {','.join(k + '=…' for k in keys)} (sku and qty required)", EXIT_CONFIG)
        if key in out:
            fail(f"--line {spec!r}: {key} given twice", EXIT_CONFIG)
        out[key] = value.strip()
    if "sku" not in out or "qty" not in out:
        fail(f"--line {spec!r}: sku= and qty= are required", EXIT_CONFIG)
    return out


def _count(spec: str, key: str, value: str, low: int) -> int:
    if not value.isdigit() or int(value) < low:
        fail(f"--line {spec!r}: {key} must be a whole number ≥ {low} (got {value!r})", EXIT_CONFIG)
    return int(value)


def transfer_lines(specs: Sequence[str]) -> list[TransferLine]:
    if not 1 <= len(specs) <= MAX_LINES:
        fail(f"--line: give 1..{MAX_LINES} lines (got {len(specs)})", EXIT_CONFIG)
    lines = []
    for spec in specs:
        f = parse_line(spec, CREATE_LINE_KEYS)
        check_id("--line sku", f["sku"])
        if f.get("lot"):
            check_id("--line lot", f["lot"])
        if "value" in f and parse_value(f["value"]) is None:
            fail(f"--line {spec!r}: value must be a decimal such as 12.50 (got {f['value']!r})", EXIT_CONFIG)
        lines.append(TransferLine(f["sku"], _count(spec, "qty", f["qty"], 1), f.get("lot", ""), f.get("value", "")))
    return lines


def receipt_lines(specs: Sequence[str], final: bool) -> list[ReceiptLine]:
    if not specs and not final:
        fail("--line: name what arrived, or give --final", EXIT_CONFIG)
    lines = []
    for spec in specs[: MAX_LINES + 1]:
        f = parse_line(spec, RECEIVE_LINE_KEYS)
        check_id("--line sku", f["sku"])
        qty, damaged = _count(spec, "qty", f["qty"], 0), _count(spec, "damaged", f.get("damaged", "0"), 0)
        if not qty and not damaged:
            fail(f"--line {spec!r}: receive or report damaged at least one unit", EXIT_CONFIG)
        lines.append(ReceiptLine(f["sku"], qty, damaged, f.get("lot", "")))
    return lines


def _desk(target: str, timeout_s: float, work: Callable[[TransfersClient], Awaitable[_T]]) -> _T:
    async def go(client: LotwiseClient) -> _T:
        from engine.api.transfers_client import TransfersClient

        return await work(TransfersClient(client.channel, timeout_s=timeout_s, metadata=client.metadata))

    return with_client(target, timeout_s, go)


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M") if ms else "—"


def _hours(ms: int) -> str:
    return f"{ms / 3_600_000:.1f} h"


def _summary(t: tpb.Transfer) -> dict[str, str | int]:
    return {
        "transfer_id": t.transfer_id,
        "from_site": t.from_site,
        "to_site": t.to_site,
        "state": t.state,
        "requested_by": t.requested_by,
        "total_qty": sum(x.qty for x in t.lines),
        "value": t.value,
        "org_distance": t.org_distance,
        "escalated_to": t.escalated_to,
        "created_at_ms": t.steps[0].at_ms if t.steps else 0,
        "eta_ms": t.eta_ms,
    }


# ---- show -----------------------------------------------------------------------------


def show_transfer(t: tpb.Transfer, fmt: OutputFormat) -> None:
    steps: list[Record] = [
        {"action": s.action, "state": s.state, "actor": s.actor, "at_ms": s.at_ms, "note": s.note} for s in t.steps
    ]
    lots: list[Record] = [
        {"sku": x.sku, "lot_id": x.lot_id, "shipped": x.shipped_qty, "received": x.received_qty,
         "damaged": x.damaged_qty, "short": x.short_qty}
        for x in t.lots
    ]  # fmt: skip
    times: list[Record] = [
        {"state": x.state, "entered_at_ms": x.entered_at_ms, "duration_ms": x.duration_ms} for x in t.state_times
    ]
    lines: list[Record] = [
        {"sku": x.sku, "qty": x.qty, "lot_id": x.lot_id, "unit_value": x.unit_value} for x in t.lines
    ]
    if fmt is not OutputFormat.TABLE:
        emit_object(fmt, _summary(t), {"lines": lines, "lots": lots, "steps": steps, "state_times": times})
        return
    out = _out()
    head = f"transfer {t.transfer_id}: {t.from_site} → {t.to_site}, {t.state}"
    if t.escalated_to:
        head += f" (escalated: {t.escalated_to} may act)"
    out.print(head, highlight=False)
    extra = f", value {t.value}" if t.value else ""
    out.print(f"requested by {t.requested_by}; org distance {t.org_distance}{extra}", highlight=False)
    _table(
        "lines",
        ("sku", "qty", "lot", "unit value"),
        [(x.sku, x.qty, x.lot_id or "FEFO", x.unit_value or "—") for x in t.lines],
    )
    if t.lots:
        cols = ("sku", "lot", "shipped", "received", "damaged", "short")
        _table(f"lots (ETA {_stamp(t.eta_ms)})", cols, [tuple(r.values()) for r in lots])
    _table("steps", ("when (UTC)", "action", "→ state", "actor", "note"),
           [(_stamp(s.at_ms), s.action, s.state, s.actor, s.note) for s in t.steps])  # fmt: skip
    _table("time in each state", ("state", "entered (UTC)", "for"),
           [(x.state, _stamp(x.entered_at_ms), _hours(x.duration_ms)) for x in t.state_times])  # fmt: skip


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, no_wrap=name != "note")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    show_table(_out(), table)


# ---- the commands ---------------------------------------------------------------------


def _answer(t: tpb.Transfer, fmt: OutputFormat, done: str) -> None:
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [_summary(t)])
        return
    tail = f"; escalated: {t.escalated_to} may act" if t.escalated_to else ""
    _out().print(f"transfer {t.transfer_id} {done}: now {t.state}{tail}", highlight=False)


@transfers_app.command("create")
def create(
    transfer_id: IdArg,
    from_site: Annotated[str, typer.Option("--from", help="The source site.", show_default=False)],
    to_site: Annotated[str, typer.Option("--to", help="The destination site.", show_default=False)],
    line: Annotated[
        list[str],
        typer.Option("--line", help="sku=GLU,qty=120[,lot=L1][,value=12.50] (repeat per line).", show_default=False),
    ],
    note: NoteOpt = "",
    request_id: RequestIdOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Request a transfer of stock from one site to another (it then waits for approval)."""
    for flag, value in (("TRANSFER_ID", transfer_id), ("--from", from_site), ("--to", to_site)):
        check_id(flag, value)
    lines = transfer_lines(line)
    rid = request_id or f"create:{transfer_id}"
    t = _desk(target, timeout, lambda d: d.create(transfer_id, from_site, to_site, lines, request_id=rid, note=note))
    _answer(t, fmt, "requested")


def _step(name: str, done: str) -> None:
    def command(
        transfer_id: IdArg,
        note: NoteOpt = "",
        request_id: RequestIdOpt = "",
        fmt: FormatOpt = OutputFormat.TABLE,
        target: TargetOpt = DEFAULT_TARGET,
        token_file: TokenFileOpt = None,
        timeout: TimeoutOpt = 10.0,
    ) -> None:
        check_id("TRANSFER_ID", transfer_id)
        rid = request_id or f"{name}:{uuid.uuid4().hex[:12]}"
        t = _desk(target, timeout, lambda d: getattr(d, name)(transfer_id, request_id=rid, note=note))
        _answer(t, fmt, done)

    command.__doc__ = {
        "approve": "Approve a transfer in your role (the flow says what is next; the last approval holds the stock).",
        "reject": "Reject a transfer waiting for your approval.",
        "cancel": "Cancel a transfer before it ships (an approved transfer's hold is released).",
    }[name]
    transfers_app.command(name)(command)


for _name, _done in (("approve", "approved"), ("reject", "rejected"), ("cancel", "cancelled")):
    _step(_name, _done)


@transfers_app.command("ship")
def ship(
    transfer_id: IdArg,
    eta: Annotated[str, typer.Option("--eta", help=f"Expected arrival: {TIME_HELP}.", show_default=False)] = "",
    request_id: RequestIdOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Ship an approved transfer: the held stock leaves the source and is in transit to the destination."""
    check_id("TRANSFER_ID", transfer_id)
    eta_ms = parse_time(eta, "--eta") if eta else 0
    rid = request_id or f"ship:{uuid.uuid4().hex[:12]}"
    _answer(_desk(target, timeout, lambda d: d.ship(transfer_id, request_id=rid, eta_ms=eta_ms)), fmt, "shipped")


@transfers_app.command("receive")
def receive(
    transfer_id: IdArg,
    line: Annotated[
        list[str] | None,
        typer.Option("--line", help="sku=GLU,qty=90[,damaged=5][,lot=L1] (repeat per line).", show_default=False),
    ] = None,
    final: Annotated[bool, typer.Option("--final", help="Nothing more will come: the rest is a shortage.")] = False,
    request_id: RequestIdOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Receive (part of) a shipped transfer at the destination: received, damaged, and with --final the shortage."""
    check_id("TRANSFER_ID", transfer_id)
    lines = receipt_lines(line or [], final)
    rid = request_id or f"receive:{uuid.uuid4().hex[:12]}"
    t = _desk(target, timeout, lambda d: d.receive(transfer_id, lines, request_id=rid, final=final))
    _answer(t, fmt, "received" if t.state == "received" else "partly received")


@transfers_app.command("show")
def show(
    transfer_id: IdArg,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """One transfer: its lines, lots in transit, every step and how long it spent in each state."""
    check_id("TRANSFER_ID", transfer_id)
    show_transfer(_desk(target, timeout, lambda d: d.get(transfer_id)), fmt)


@transfers_app.command("list")
def list_(
    site: Annotated[str, typer.Option("--site", help="From or to this site.")] = "",
    state: Annotated[str, typer.Option("--state", help="Only transfers in this state.")] = "",
    limit: Annotated[int, typer.Option("--limit", "-n", help=f"Transfers per page (1..{MAX_PAGE_SIZE}).")] = 100,
    page_token: Annotated[str, typer.Option("--page-token", help="Where the previous page ended.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Transfers you may see, oldest request first, a page at a time."""
    check_range("--limit", limit, 1, MAX_PAGE_SIZE)
    if site:
        check_id("--site", site)
    page = _desk(target, timeout, lambda d: d.list(site=site, state=state, page_size=limit, page_token=page_token))
    records = [_summary(t) for t in page.transfers]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    cols = ("transfer", "from", "to", "state", "qty", "value", "requested (UTC)", "by")
    _table(f"{len(records)} transfers", cols, [
        (t.transfer_id, t.from_site, t.to_site, t.state + (" ⚑" if t.escalated_to else ""),
         sum(x.qty for x in t.lines), t.value or "—", _stamp(t.steps[0].at_ms if t.steps else 0), t.requested_by)
        for t in page.transfers
    ])  # fmt: skip
    _out().print(f"next page: --page-token {page.next_page_token}" if page.next_page_token else "last page")


MAX_TIMES_TRANSFERS = 100_000  # the most transfers `times` reads (pages of MAX_PAGE_SIZE)


@transfers_app.command("times")
def times(
    site: Annotated[str, typer.Option("--site", help="From or to this site.")] = "",
    since: Annotated[str, typer.Option("--since", help=f"Created at or after: {TIME_HELP}.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 60.0,
) -> None:
    """How long transfers you may see spent in each state, and from request to dispatch (count, mean, median, p90)."""
    if site:
        check_id("--site", site)
    since_ms = parse_time(since, "--since") if since else 0

    async def gather(desk: TransfersClient) -> list[tpb.Transfer]:
        found: list[tpb.Transfer] = []
        token = ""
        while len(found) < MAX_TIMES_TRANSFERS:  # bounded
            page = await desk.list(site=site, created_after_ms=since_ms, page_size=MAX_PAGE_SIZE, page_token=token)
            found += page.transfers
            token = page.next_page_token
            if not token:
                break
        return found

    found = _desk(target, timeout, gather)
    _show_times(found, fmt)


def _show_times(found: Sequence[tpb.Transfer], fmt: OutputFormat) -> None:
    from engine.domain.transfer_flow import durations

    per_state: dict[str, list[int]] = {}
    to_dispatch: list[int] = []
    for t in found:  # the engine measured each state's time (up to now for the current one)
        for entry in t.state_times:
            per_state.setdefault(entry.state, []).append(entry.duration_ms)
        shipped = next((s.at_ms for s in t.steps if s.action == "ship"), None)
        if shipped is not None and t.steps:
            to_dispatch.append(shipped - t.steps[0].at_ms)
    stats = {state: durations(samples) for state, samples in per_state.items()}
    stats["request_to_dispatch"] = durations(to_dispatch)
    records: list[Record] = [
        {"state": state, "count": d.count, "mean_ms": d.mean_ms, "p50_ms": d.p50_ms, "p90_ms": d.p90_ms}
        for state, d in stats.items()
    ]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    rows = [(r["state"], r["count"], _hours(int(str(r["mean_ms"]))), _hours(int(str(r["p50_ms"]))),
             _hours(int(str(r["p90_ms"])))) for r in records]  # fmt: skip
    _table(f"time in each state over {len(found)} transfers", ("state", "transfers", "mean", "median", "p90"), rows)
