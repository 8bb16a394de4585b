"""`lotwise history …`: ask a running engine's history store (lotwise.v1.History).

    lotwise history balance [--at TIME] [--sku S] [--site S] [--by lot ...]   balances as of a time
    lotwise history movements [--sku S] [--lot L] [--doc D] [--from T --to T] every movement, paged
    lotwise history consumption SKU SITE [--days 30]                          daily consumption
    lotwise history turnover SKU SITE [--days 30]                             days of stock on hand
    lotwise history expiry [--within-days 30]                                 stock expiring soon
    lotwise history trace LOT [--sku S]                                       where a lot went
    lotwise history status                                                    how far history lags

Times are ISO-8601 (2026-01-01, 2026-01-01T12:00, 2026-01-01T12:00:00+02:00; UTC when no
offset is given) or UTC epoch milliseconds. Exit codes as for every client command: 2 bad
usage (an unreadable time, --from after --to, an unknown --by), 1 the engine refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from engine.cli.common import (
    DEFAULT_TARGET,
    EXIT_CONFIG,
    MS_PER_DAY,
    FormatOpt,
    OutputFormat,
    Record,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _day,
    _expiry_cell,
    _now_ms,
    _out,
    check_id,
    check_range,
    check_sites,
    emit,
    emit_object,
    fail,
    show_table,
    with_client,
)
from engine.domain.commands import MAX_BIN_DEPTH
from engine.domain.history import HistoryDimension

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.api.gen.lotwise.v1 import history_pb2 as hpb
    from engine.api.history_client import HistoryClient


history_app = typer.Typer(
    name="history",
    help="Ask the history store: balances as of any time, movements, consumption, expiry, lot traces.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_T = TypeVar("_T")

TIME_HELP = "ISO-8601 (2026-01-01T12:00Z; UTC without an offset) or UTC epoch ms"
MAX_SERIES_DAYS = 3660
MAX_HORIZON_DAYS = 3650
MAX_ROWS = 10_000  # the server's cap on balance and expiry rows


# ---- helpers --------------------------------------------------------------------------


def parse_time(value: str, flag: str) -> int:
    """ISO-8601 (a day, or a date and time; UTC when naive) or epoch ms → epoch ms."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        ms = int(text)
    else:
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            fail(f"{flag}: cannot read {value!r} as a time; use {TIME_HELP}", EXIT_CONFIG)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        ms = int(at.timestamp() * 1000)
    if ms < 0:
        fail(f"{flag}: {value!r} is before 1970-01-01", EXIT_CONFIG)
    return ms


def _last_days(days: int) -> tuple[int, int]:
    """[from, to) covering the last `days` UTC days, today (up to now) included."""
    now = _now_ms()
    return now - now % MS_PER_DAY - (days - 1) * MS_PER_DAY, now + 1


def _history(
    target: str, timeout_s: float, work: Callable[[HistoryClient], Awaitable[_T]], sites: Sequence[str] = ()
) -> _T:
    """Run `work` with a HistoryClient on a client's channel; errors as with_client prints them.
    `sites` (a filter) are checked against the site directory first: unknown is an error."""

    async def go(client: LotwiseClient) -> _T:
        import grpc

        from engine.api.errors import RemoteError
        from engine.api.history_client import HistoryClient

        await check_sites(client, sites)
        try:
            return await work(HistoryClient(client.channel, timeout_s=timeout_s, metadata=client.metadata))
        except RemoteError as exc:
            if exc.code is grpc.StatusCode.UNIMPLEMENTED:
                raise RemoteError(exc.code, "this engine does not serve lotwise.v1.History") from exc
            raise

    return with_client(target, timeout_s, go)


def _stamp(ms: int) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _bucket(msg: hpb.HistoryMovement, field: str) -> str:
    if not msg.HasField(field):
        return ""
    b = getattr(msg, field)
    if b.external:
        return b.external
    return f"{b.bin or '(site)'} {b.status} {b.owner}"


# ---- lotwise history balance ----------------------------------------------------------


def _check_filters(sku: Sequence[str], site: Sequence[str], lot: str = "", bin_depth: int = 0) -> None:
    for value in sku:
        check_id("--sku", value)
    for value in site:
        check_id("--site", value)
    if lot:
        check_id("--lot", lot)
    check_range("--bin-depth", bin_depth, 0, MAX_BIN_DEPTH)


@history_app.command("balance")
def balance(
    at: Annotated[str | None, typer.Option("--at", help=f"As of this time, {TIME_HELP}; default now.")] = None,
    sku: Annotated[list[str] | None, typer.Option("--sku", help="Only this sku (repeat for more).")] = None,
    site: Annotated[list[str] | None, typer.Option("--site", help="Only this site (repeat for more).")] = None,
    by: Annotated[
        list[HistoryDimension] | None,
        typer.Option("--by", "-b", help="Group by this dimension (repeat for more); default: one total row."),
    ] = None,
    lot: Annotated[str, typer.Option("--lot", help="Only this lot.")] = "",
    bin_prefix: Annotated[str, typer.Option(help="Only bins under this path, e.g. A/03.")] = "",
    bin_depth: Annotated[
        int, typer.Option(help=f"With --by bin: cut bin paths to this many levels (0: full; 0..{MAX_BIN_DEPTH}).")
    ] = 0,
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses (repeat for more).")] = None,
    owner: Annotated[str, typer.Option(help="Owner filter: own, consignment, consignment:<supplier>, ...")] = "",
    limit: Annotated[
        int, typer.Option(help=f"At most this many rows (0: the server's maximum, {MAX_ROWS}; 0..{MAX_ROWS}).")
    ] = 0,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Balances (qty and held) as of a time, summed from every journaled movement, grouped."""
    as_of = parse_time(at, "--at") if at is not None else _now_ms()
    _check_filters(sku or (), site or (), lot, bin_depth)
    check_range("--limit", limit, 0, MAX_ROWS)
    dims = list(dict.fromkeys(by or ()))
    reply = _history(
        target,
        timeout,
        lambda h: h.balance_as_of(
            as_of,
            skus=sku or (),
            sites=site or (),
            bin_prefix=bin_prefix,
            statuses=status or (),
            owner=owner,
            lot_id=lot,
            group_by=dims,
            bin_depth=bin_depth,
            limit=limit,
        ),
        sites=site or (),
    )
    rows = list(reply.rows)
    if fmt is not OutputFormat.TABLE:
        names = [d.value for d in dims]
        emit(
            fmt,
            [{**{n: g.value for n, g in zip(names, r.group, strict=True)}, "qty": r.qty, "held": r.held} for r in rows],
        )
        return
    out = _out()
    out.print(f"[bold]balance as of {_stamp(as_of)} UTC[/]: {sum(r.qty for r in rows)} units, {len(rows)} rows")
    table = Table(show_footer=len(rows) > 1)
    names = [d.value for d in dims] or [""]
    for i, name in enumerate(names):
        table.add_column(name, footer="total" if i == 0 else "", no_wrap=True)
    table.add_column("qty", justify="right", style="bold green", footer=str(sum(r.qty for r in rows)), no_wrap=True)
    table.add_column("held", justify="right", footer=str(sum(r.held for r in rows)), no_wrap=True)
    for r in rows:
        # A bin of "" is the site itself; say so rather than print an empty cell.
        cells = [
            (g.value or "(site)") if d is HistoryDimension.BIN else g.value for d, g in zip(dims, r.group, strict=True)
        ]
        table.add_row(*(cells or ["all"]), str(r.qty), str(r.held))
    if not rows:
        table.add_row(*([""] * len(names)), "0", "0")
    show_table(out, table)


# ---- lotwise history movements --------------------------------------------------------

MOVEMENT_COLUMNS = ("at (UTC)", "sku", "site", "seq", "kind", "lot", "qty", "from", "to", "held Δ", "doc", "hold")


@history_app.command("movements")
def movements(
    sku: Annotated[str, typer.Option("--sku", help="Only this sku.")] = "",
    site: Annotated[str, typer.Option("--site", help="Only this site.")] = "",
    lot: Annotated[str, typer.Option("--lot", help="Only this lot.")] = "",
    doc: Annotated[str, typer.Option("--doc", help="Only this document (the caller's doc_ref).")] = "",
    hold: Annotated[str, typer.Option("--hold", help="Only this hold.")] = "",
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Only this kind: receive, move, commit, ... (repeat).")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help=f"At or after this time, {TIME_HELP}.")] = None,
    to: Annotated[str | None, typer.Option("--to", help=f"Before this time, {TIME_HELP}.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Movements per page (1..1000).")] = 100,
    cursor: Annotated[str, typer.Option("--cursor", help="Continue from a previous page's next cursor.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Every movement by sku, site, lot, document or hold and time range, one page at a time."""
    from_ms = parse_time(from_, "--from") if from_ is not None else 0
    to_ms = parse_time(to, "--to") if to is not None else 0
    if to_ms and from_ms > to_ms:
        fail(f"--from ({from_}) is after --to ({to})", EXIT_CONFIG)
    check_range("--limit", limit, 1, 1000)
    _check_filters([sku] if sku else [], [site] if site else [], lot)
    reply = _history(
        target,
        timeout,
        lambda h: h.search_movements(
            sku=sku,
            site=site,
            lot_id=lot,
            doc_ref=doc,
            hold_id=hold,
            kinds=kind or (),
            from_ms=from_ms,
            to_ms=to_ms,
            page_size=limit,
            cursor=cursor,
        ),
        sites=[site] if site else (),
    )
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [_movement_record(m) for m in reply.movements])
        return
    table = Table(title=f"{len(reply.movements)} movements", title_justify="left")
    for name in MOVEMENT_COLUMNS:
        table.add_column(name, justify="right" if name in ("seq", "qty", "held Δ") else "left", no_wrap=True)
    for m in reply.movements:
        table.add_row(
            _stamp(m.at_ms),
            m.sku,
            m.site,
            str(m.seq),
            m.kind,
            m.lot_id,
            str(m.qty) if m.qty else "",
            _bucket(m, "src"),
            _bucket(m, "dst"),
            f"{m.held_delta:+d}" if m.held_delta else "",
            m.doc_ref,
            m.hold_id,
        )
    out = _out()
    show_table(out, table)  # 12 columns: a record per movement below ~150 columns
    if reply.next_cursor:
        out.print(Text(f"next cursor: {reply.next_cursor}"), soft_wrap=True)
    else:
        out.print("last page")


def _movement_record(m: hpb.HistoryMovement) -> dict[str, str | int]:
    return {
        "at_ms": m.at_ms,
        "sku": m.sku,
        "site": m.site,
        "seq": m.seq,
        "kind": m.kind,
        "lot": m.lot_id,
        "qty": m.qty,
        "from": _bucket(m, "src"),
        "to": _bucket(m, "dst"),
        "held_delta": m.held_delta,
        "doc": m.doc_ref,
        "hold": m.hold_id,
    }


# ---- lotwise history consumption / turnover -------------------------------------------


@history_app.command("consumption")
def consumption(
    sku: Annotated[str, typer.Argument(help="The sku, e.g. GLU-50.")],
    site: Annotated[str, typer.Argument(help="The site, e.g. FW-BOS.")],
    days: Annotated[int, typer.Option("--days", help="The last this many days, today included (1..3660).")] = 30,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Daily consumption (qty issued to customers) of one (sku, site), one row per UTC day."""
    check_range("--days", days, 1, MAX_SERIES_DAYS)
    _check_filters([sku], [site])
    from_ms, to_ms = _last_days(days)
    reply = _history(target, timeout, lambda h: h.consumption_series(from_ms, to_ms, sku=sku, site=site), sites=[site])
    points = list(reply.points)
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [{"day": p.day, "consumed": p.qty} for p in points], ("day", "consumed"))
        return
    total = sum(p.qty for p in points)
    out = _out()
    out.print(f"[bold]{sku} @ {site}[/]: {total} consumed over {len(points)} days")
    table = Table(show_footer=True)
    table.add_column("day (UTC)", footer="total")
    table.add_column("consumed", justify="right", style="bold", footer=str(total))
    for p in points:
        table.add_row(p.day, str(p.qty) if p.qty else Text("0", style="dim"))
    show_table(out, table)


@history_app.command("turnover")
def turnover(
    sku: Annotated[str, typer.Argument(help="The sku, e.g. GLU-50.")],
    site: Annotated[str, typer.Argument(help="The site, e.g. FW-BOS.")],
    days: Annotated[
        int, typer.Option("--days", help="Window: the last this many days, today included (1..3660).")
    ] = 30,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Days of stock on hand at the average consumption rate of one (sku, site)."""
    check_range("--days", days, 1, MAX_SERIES_DAYS)
    _check_filters([sku], [site])
    from_ms, to_ms = _last_days(days)
    reply = _history(target, timeout, lambda h: h.turnover(from_ms, to_ms, skus=[sku], sites=[site]), sites=[site])
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [_turnover_record(r) for r in reply.rows], TURNOVER_FIELDS)
        return
    table = Table(title=f"turnover over the last {days} days", title_justify="left")
    for name in ("sku", "site", "days", "avg on hand", "consumed", "turnover (days)"):
        table.add_column(
            name, justify="left" if name in ("sku", "site") else "right", no_wrap=name != "turnover (days)"
        )
    for r in reply.rows:
        turns = f"{r.turnover_days:.1f}" if r.HasField("turnover_days") else Text("— (nothing consumed)", style="dim")
        table.add_row(r.sku, r.site, str(r.days), f"{r.avg_on_hand:.1f}", str(r.consumed), turns)
    if not reply.rows:
        table.add_row(sku, site, str(days), "0", "0", Text("— (no stock, no consumption)", style="dim"))
    show_table(_out(), table)


TURNOVER_FIELDS = ("sku", "site", "days", "avg_on_hand", "consumed", "turnover_days")


def _turnover_record(r: hpb.TurnoverRow) -> dict[str, str | int | float | None]:
    turns = r.turnover_days if r.HasField("turnover_days") else None
    return {
        "sku": r.sku,
        "site": r.site,
        "days": r.days,
        "avg_on_hand": r.avg_on_hand,
        "consumed": r.consumed,
        "turnover_days": turns,
    }


# ---- lotwise history expiry / trace / status ------------------------------------------


@history_app.command("expiry")
def expiry(
    sku: Annotated[list[str] | None, typer.Option("--sku", help="Only this sku (repeat for more).")] = None,
    site: Annotated[list[str] | None, typer.Option("--site", help="Only this site (repeat for more).")] = None,
    within_days: Annotated[
        int, typer.Option("--within-days", help="Lots expiring within this many days (1..3650); expired included.")
    ] = 30,
    limit: Annotated[
        int, typer.Option(help=f"At most this many lot rows (0: the server's maximum, {MAX_ROWS}; 0..{MAX_ROWS}).")
    ] = 0,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Stock whose lots expire within a horizon (expired lots included), by expiry."""
    check_range("--within-days", within_days, 1, MAX_HORIZON_DAYS)
    check_range("--limit", limit, 0, MAX_ROWS)
    _check_filters(sku or (), site or ())
    now = _now_ms()
    reply = _history(
        target,
        timeout,
        lambda h: h.expiry_exposure(now, within_days, skus=sku or (), sites=site or (), limit=limit),
        sites=site or (),
    )
    if fmt is not OutputFormat.TABLE:
        lots: list[Record] = [
            {
                "sku": r.sku,
                "site": r.site,
                "lot": r.lot_id,
                "expiry": _day(r.expires_at_ms),
                "days_left": r.days_left,
                "qty": r.qty,
                "held": r.held,
            }
            for r in reply.rows
        ]
        totals: list[Record] = [{"days_left": t.days_left, "qty": t.qty, "lots": t.lots} for t in reply.totals]
        emit_object(fmt, {"within_days": within_days}, {"lots": lots, "totals": totals})
        return
    out = _out()
    units = sum(t.qty for t in reply.totals)
    out.print(f"[bold]expiring within {within_days} days[/]: {units} units in {sum(t.lots for t in reply.totals)} lots")
    table = Table()
    for name in ("sku", "site", "lot", "expiry", "days left", "qty", "held"):
        table.add_column(name, justify="right" if name in ("days left", "qty", "held") else "left", no_wrap=True)
    for r in reply.rows:
        table.add_row(
            r.sku, r.site, r.lot_id, _expiry_cell(r.expires_at_ms, now), str(r.days_left), str(r.qty), str(r.held)
        )
    show_table(out, table)
    if reply.totals:
        totals_table = Table(title="by days left", title_justify="left")
        for name in ("days left", "qty", "lots"):
            totals_table.add_column(name, justify="right")
        for t in reply.totals:
            totals_table.add_row("expired" if t.days_left < 0 else str(t.days_left), str(t.qty), str(t.lots))
        show_table(out, totals_table)


@history_app.command("trace")
def trace(
    lot: Annotated[str, typer.Argument(help="The lot id.")],
    sku: Annotated[str, typer.Option("--sku", help="Only this sku (default: any).")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Every site and document a lot passed through (recalls, traceability)."""
    _check_filters([sku] if sku else [], [], lot)
    reply = _history(target, timeout, lambda h: h.trace_lot(lot, sku=sku))
    if fmt is not OutputFormat.TABLE:
        emit_object(
            fmt, {"lot": reply.lot_id or lot}, {"sites": _stop_records(reply), "documents": _doc_records(reply)}
        )
        return
    out = _out()
    out.print(f"[bold]lot {reply.lot_id or lot}[/]: {len(reply.stops)} sites, {len(reply.documents)} documents")
    stops = Table(title="sites", title_justify="left")
    for name in ("sku", "site", "received", "expires", "first", "last", "in", "out", "balance", "movements"):
        stops.add_column(
            name, justify="right" if name in ("in", "out", "balance", "movements") else "left", no_wrap=True
        )
    for s in reply.stops:
        stops.add_row(
            s.sku,
            s.site,
            _day(s.received_at_ms),
            _day(s.expires_at_ms),
            _stamp(s.first_at_ms),
            _stamp(s.last_at_ms),
            str(s.qty_in),
            str(s.qty_out),
            str(s.balance),
            str(s.movements),
        )
    show_table(out, stops)
    docs = Table(title="documents", title_justify="left")
    for name in ("doc", "sku", "site", "first", "last", "kinds", "qty", "movements"):
        docs.add_column(name, justify="right" if name in ("qty", "movements") else "left", no_wrap=name != "kinds")
    for d in reply.documents:
        docs.add_row(
            d.doc_ref or Text("(none)", style="dim"),
            d.sku,
            d.site,
            _stamp(d.first_at_ms),
            _stamp(d.last_at_ms),
            ", ".join(d.kinds),
            str(d.qty),
            str(d.movements),
        )
    show_table(out, docs)


def _stop_records(reply: hpb.TraceLotResponse) -> list[dict[str, str | int]]:
    return [
        {
            "sku": s.sku,
            "site": s.site,
            "received": _day(s.received_at_ms),
            "expires": _day(s.expires_at_ms),
            "first_at_ms": s.first_at_ms,
            "last_at_ms": s.last_at_ms,
            "in": s.qty_in,
            "out": s.qty_out,
            "balance": s.balance,
            "movements": s.movements,
        }
        for s in reply.stops
    ]


def _doc_records(reply: hpb.TraceLotResponse) -> list[dict[str, str | int]]:
    return [
        {
            "doc": d.doc_ref,
            "sku": d.sku,
            "site": d.site,
            "first_at_ms": d.first_at_ms,
            "last_at_ms": d.last_at_ms,
            "kinds": " ".join(d.kinds),
            "qty": d.qty,
            "movements": d.movements,
        }
        for d in reply.documents
    ]


@history_app.command("status")
def status(
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """How far history is behind the journal (the sink's lag)."""
    reply = _history(target, timeout, lambda h: h.sink_status())
    if fmt is not OutputFormat.TABLE:
        emit(
            fmt,
            [
                {
                    "running": reply.running,
                    "stream_position": reply.stream_position,
                    "acked_position": reply.acked_position,
                    "pending_messages": reply.pending_messages,
                    "stalled": reply.stalled,
                }
            ],
        )
        return
    out = _out()
    if not reply.running:
        out.print("history sink: [yellow]not running[/] on this server (queries are answered from the store as is)")
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_row("stream position", f"{reply.stream_position:,}")
    grid.add_row("acked position", f"{reply.acked_position:,}")
    grid.add_row("pending messages", f"{reply.pending_messages:,}")
    state = Text("stalled (store down, retrying)", style="bold red") if reply.stalled else Text("ok", style="green")
    grid.add_row("state", state)
    caught_up = reply.pending_messages == 0 and not reply.stalled
    out.print("history sink: " + ("[green]caught up[/]" if caught_up else "[yellow]behind[/]"))
    out.print(grid)
