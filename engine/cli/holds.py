"""`lotwise holds …`: list the holds of a running engine (lotwise.v1.Inventory/ListHolds).

    lotwise holds list [--sku S] [--site W] [--state active ...] [--expiring-before T]
                       [--page-size N] [--page-token TOKEN]

One row per hold part (a hold across several pairs shows one row per pair that matches),
ordered by hold id; the last line names the token of the next page. Same exit codes as
every client command: 2 bad usage, 1 the engine refused, 3 the engine could not be reached.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from engine.cli.common import (
    DEFAULT_TARGET,
    EXIT_CONFIG,
    FormatOpt,
    OutputFormat,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _out,
    check_id,
    check_range,
    emit,
    fail,
    show_table,
    with_client,
)
from engine.domain.model import HoldState  # a part's states: the --state choices

if TYPE_CHECKING:
    from engine.runtime.types import HoldSummary

holds_app = typer.Typer(
    name="holds",
    help="Holds of a running engine: list them by pair, site, state and expiry.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

MAX_PAGE_SIZE = 1_000  # the server's bound (engine.domain.hold_listing.MAX_PAGE_SIZE)
HOLD_FIELDS = ("hold_id", "sku", "site", "state", "held", "committed", "released", "created_at_ms", "expires_at_ms")


def parse_time_ms(flag: str, value: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (UTC unless it names a zone)."""
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"{flag} must be epoch milliseconds or an ISO-8601 time such as 2026-12-07T18:00 (got {value!r})",
            EXIT_CONFIG,
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "—"


def hold_records(holds: list[HoldSummary]) -> list[dict[str, str | int]]:
    return [
        {
            "hold_id": h.hold_id,
            "sku": p.sku,
            "site": p.site,
            "state": p.state.value,
            "held": p.held_qty,
            "committed": p.committed_qty,
            "released": p.released_qty,
            "created_at_ms": p.created_at_ms,
            "expires_at_ms": p.expires_at_ms,
        }
        for h in holds
        for p in h.parts
    ]


@holds_app.command("list")
def list_(
    sku: Annotated[str, typer.Option("--sku", help="Only parts at this sku.")] = "",
    site: Annotated[str, typer.Option("--site", help="Only parts at this site.")] = "",
    state: Annotated[
        list[HoldState] | None,
        typer.Option("--state", help="Only parts in this state (repeat for several).", case_sensitive=False),
    ] = None,
    expiring_before: Annotated[
        str, typer.Option("--expiring-before", help="Only parts expiring before this time (epoch ms or ISO-8601).")
    ] = "",
    page_size: Annotated[int, typer.Option("--page-size", "-n", help="Holds per page (1..1000).")] = 100,
    page_token: Annotated[str, typer.Option("--page-token", help="The token the previous page printed.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Holds by pair, site, state and expiry, ordered by hold id, one row per matching part."""
    if sku:
        check_id("--sku", sku)
    if site:
        check_id("--site", site)
    check_range("--page-size", page_size, 1, MAX_PAGE_SIZE)
    before_ms = parse_time_ms("--expiring-before", expiring_before) if expiring_before else 0
    states = [s.value for s in state or ()]
    if page_token and not page_token.replace("-", "").replace("_", "").isalnum():
        fail(f"--page-token is not a token a page printed (got {page_token!r})", EXIT_CONFIG)
    holds, next_token = with_client(
        target,
        timeout,
        lambda c: c.list_holds(
            sku=sku,
            site=site,
            states=states,
            expiring_before_ms=before_ms,
            page_size=page_size,
            page_token=page_token,
        ),
    )
    records = hold_records(holds)
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records, HOLD_FIELDS)
        return
    table = Table(title=f"{len(holds)} holds, {len(records)} parts", title_justify="left")
    for name in ("hold", "sku", "site", "state", "held", "committed", "released", "expires (UTC)"):
        table.add_column(name, justify="right" if name in ("held", "committed", "released") else "left")
    for r in records:
        table.add_row(
            str(r["hold_id"]),
            str(r["sku"]),
            str(r["site"]),
            str(r["state"]),
            str(r["held"]),
            str(r["committed"]),
            str(r["released"]),
            _stamp(int(r["expires_at_ms"])),
        )
    out = _out()
    show_table(out, table)
    out.print(Text(f"next page: --page-token {next_token}" if next_token else "last page"), soft_wrap=True)
