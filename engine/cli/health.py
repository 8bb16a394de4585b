"""`lotwise count` and `lotwise open`: the cell's stock-health commands from a shell
(docs/stock-health.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

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
    emit,
    emit_object,
    fail,
    show_table,
    with_client,
)
from engine.domain.commands import Counted, CountLine, CountSource


def _lines(lots: list[str], status: str, owner: str) -> list[CountLine]:
    out = []
    for spec in lots:
        lot, sep, qty = spec.partition("=")
        if not sep or not qty.isdigit():
            fail(f"--lot {spec!r}: write it as LOT=QTY, e.g. --lot L1=12", EXIT_CONFIG)
        check_id("--lot", lot)
        out.append(CountLine(lot, int(qty), status, owner))
    return out


def count(
    sku: Annotated[str, typer.Argument(help="The sku counted.")],
    site: Annotated[str, typer.Argument(help="The site counted.")],
    lot: Annotated[list[str], typer.Option("--lot", help="LOT=QTY counted; repeat per lot.")] = [],  # noqa: B006
    bin_: Annotated[str, typer.Option("--bin", help='The bin counted ("" = the site).')] = "",
    whole_bin: Annotated[
        bool, typer.Option("--whole-bin", help="Count every on-hand quant under --bin: lots not named are 0.")
    ] = False,
    status: Annotated[str, typer.Option(help='The quant\'s status ("" = the ready status).')] = "",
    owner: Annotated[str, typer.Option(help="The quant's owner.")] = "own",
    source: Annotated[CountSource, typer.Option(help="Who counted.")] = CountSource.CYCLE,
    confidence: Annotated[float, typer.Option(help="The counter's confidence, 0..1.")] = 1.0,
    request_id: Annotated[str, typer.Option(help="Idempotency key (a retry with it changes nothing).")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Count stock absolutely, inside the cell in one step: the books become what was counted,
    the difference goes to or from the count-variance bucket, and holds on units found
    missing are cut (and listed)."""
    check_id("SKU", sku)
    check_id("SITE", site)
    if not lot and not whole_bin:
        fail("name at least one --lot LOT=QTY (or count a whole bin with --whole-bin)", EXIT_CONFIG)
    lines = _lines(lot, status, owner)
    reply: Counted = with_client(
        target,
        timeout,
        lambda c: c.count(
            sku,
            site,
            bin_,
            lines,
            whole_bin=whole_bin,
            source=source,
            confidence=confidence,
            request_id=request_id or None,
        ),
    )
    lots: list[Record] = [{"lot": c.lot_id, "before": c.previous_qty, "counted": c.counted_qty} for c in reply.lots]
    cuts: list[Record] = [{"hold": c.hold_id, "lot": c.lot_id, "bin": c.bin, "cut": c.qty} for c in reply.holds_cut]
    if fmt is not OutputFormat.TABLE:
        emit_object(fmt, {"sku": sku, "site": site, "variance": reply.variance}, {"lots": lots, "holds_cut": cuts})
        return
    table = Table(title=f"{sku}@{site}: variance {reply.variance:+d}", title_justify="left")
    for name in ("lot", "before", "counted"):
        table.add_column(name, justify="left" if name == "lot" else "right")
    for row in lots:
        table.add_row(str(row["lot"]), str(row["before"]), str(row["counted"]))
    show_table(_out(), table)
    for cut in cuts:
        _out().print(f"hold {cut['hold']} cut by {cut['cut']} ({cut['lot']} at {cut['bin'] or 'the site'})")


def open_lot(
    sku: Annotated[str, typer.Argument(help="The sku.")],
    site: Annotated[str, typer.Argument(help="The site (the station's).")],
    lot_id: Annotated[str, typer.Argument(help="The lot opened.")],
    opened_at: Annotated[str, typer.Option(help="When it was opened, ISO 8601 with a zone (default: now).")] = "",
    request_id: Annotated[str, typer.Option(help="Idempotency key (a retry with it changes nothing).")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """A lot was opened at the station: its opened shelf life starts. Opening an opened lot
    changes nothing and says when it was opened."""
    for flag, value in (("SKU", sku), ("SITE", site), ("LOT_ID", lot_id)):
        check_id(flag, value)
    at_ms = 0
    if opened_at:
        try:
            when = datetime.fromisoformat(opened_at)
        except ValueError:
            fail(f"--opened-at {opened_at!r}: not an ISO 8601 time", EXIT_CONFIG)
        if when.tzinfo is None:
            fail(f"--opened-at {opened_at!r}: give a zone (e.g. Z or +08:00)", EXIT_CONFIG)
        at_ms = int(when.timestamp() * 1000)
    reply = with_client(
        target, timeout, lambda c: c.open_lot(sku, site, lot_id, opened_at_ms=at_ms, request_id=request_id or None)
    )
    record: Record = {
        "lot": reply.lot_id,
        "opened_at_ms": reply.opened_at_ms,
        "fresh_until_ms": reply.fresh_until_ms,
        "already_open": reply.already_open,
    }
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [record])
        return
    fresh = "no opened shelf life" if not reply.fresh_until_ms else f"fresh until {_iso(reply.fresh_until_ms)}"
    state = "was already open since" if reply.already_open else "opened at"
    _out().print(f"{sku}@{site} lot {reply.lot_id} {state} {_iso(reply.opened_at_ms)}; {fresh}")


def _iso(ms: int) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
