"""`lotwise import FILE`: bulk load skus, sites and lots (receipts) into a running engine.

    lotwise import catalog.csv                  CSV with a header row
    lotwise import lots.jsonl --rejects bad.csv JSON Lines, one object per line
    lotwise import lots.parquet                 Parquet (needs pyarrow)

A file holds one kind of row (its columns tell which: lots have lot_id and qty; sites have
site and no sku; skus have sku and no site) or several, each row naming its kind in a
`record` column (sku, site or lot). Columns:

    sku rows   sku, name, unit, opened_shelf_life_days
    site rows  site, org_path, kind, name
    lot rows   sku, site, lot_id, qty, bin, status, owner, expires_at, received_at,
               opened_at (dates as 2027-03-31, ISO date-times or epoch ms), doc_ref,
               source (supplier, customer, transit, count_variance), request_id

Rows go to the engine in chunks over one stream (lotwise.v1.Admin/Import); each row is
applied whole or not at all. Every lot row carries a request id derived from its content,
so importing the same file again changes nothing (within the engine's idempotency window,
15 minutes by default); after fixing refused rows, import the file again: only what
changed is applied. Refused rows are listed with file, line and reason, and written to a
rejects file (FILE.rejects.csv unless --rejects says otherwise).

Exit codes: 0 every row applied; 1 some rows were refused (see the rejects file); 2 the
file cannot be imported at all (not UTF-8, unknown or missing columns; nothing was sent);
3 the engine could not be reached (rows already applied stay; run the import again).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.common import (
    DEFAULT_TARGET,
    EXIT_CONFIG,
    EXIT_REFUSED,
    TargetOpt,
    TokenFileOpt,
    _err,
    _out,
    fail,
    with_client,
)

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.api.import_client import ImportTally
    from engine.importfile import FileFormat, RowSource

SHOWN_REFUSALS = 20  # refusals printed on the terminal; all of them go to the rejects file
LINE_COUNT_CHUNK_BYTES = 1 << 20


def count_lines(path: Path) -> int:
    """Lines in the file: the progress bar's total (a row per line, less the header)."""
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(LINE_COUNT_CHUNK_BYTES):
            lines += chunk.count(b"\n")
    return lines


def import_command(
    file: Annotated[Path, typer.Argument(help="The file: .csv, .jsonl (.ndjson) or .parquet.", show_default=False)],
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="Where to write the refused rows (CSV).", show_default="FILE.rejects.csv"),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the file name).", show_default=False),
    ] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", help="Rows per chunk on the stream (1..4096).")] = 2048,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds the whole import may take.")] = 3600.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Bulk load skus, sites and lots (receipts) from a CSV, JSONL or Parquet file.

    Columns: sku rows sku, name, unit, opened_shelf_life_days; site rows site, org_path,
    kind, name; lot rows sku, site, lot_id, qty, bin, status, owner, expires_at,
    received_at, opened_at, doc_ref, source, request_id. A file that mixes kinds names
    each row's in a `record` column (sku, site or lot). Importing a file again changes
    nothing; refused rows go to FILE.rejects.csv. Exit 1: some rows refused; 2: the file
    cannot be imported (nothing sent); 3: the engine could not be reached.
    """
    from engine.importfile import ImportFileError, read_rows

    if not 1 <= chunk_rows <= 4096:
        fail("--chunk-rows must be in 1..4096", EXIT_CONFIG)
    try:
        source = read_rows(file, _format(fmt))
    except ImportFileError as exc:
        fail([f"cannot import {exc.path}:", *exc.problems], EXIT_CONFIG)
    started = time.perf_counter()
    total = None if quiet else max(count_lines(file) - 1, 1)
    tally = with_client(target, timeout, lambda client: _run(client, source, chunk_rows, total, timeout))
    took_s = time.perf_counter() - started
    out = _out()
    out.print(_summary(file, tally, took_s))
    if tally.refused:
        _report_refusals(file, rejects or file.with_name(file.name + ".rejects.csv"), tally)
        raise typer.Exit(EXIT_REFUSED)


def _format(given: str | None) -> FileFormat | None:
    from engine.importfile import FileFormat

    if given is None:
        return None
    try:
        return FileFormat(given.lower())
    except ValueError:
        fail(f"--format must be one of {', '.join(f.value for f in FileFormat)} (got {given!r})", EXIT_CONFIG)


async def _run(
    client: LotwiseClient, source: RowSource, chunk_rows: int, total: int | None, timeout_s: float
) -> ImportTally:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.api.import_client import import_source

    if total is None:
        return await import_source(
            client.channel, source, chunk_rows=chunk_rows, timeout_s=timeout_s, metadata=client.metadata
        )
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("rows", total=total)
        tally = await import_source(
            client.channel,
            source,
            chunk_rows=chunk_rows,
            on_reply=lambda _, rows: progress.advance(task, rows),
            timeout_s=timeout_s,
            metadata=client.metadata,
        )
        progress.update(task, completed=total)
    return tally


def _summary(file: Path, tally: ImportTally, took_s: float) -> str:
    rate = tally.lots / took_s if took_s > 0 else 0.0
    return (
        f"{file}: {tally.rows:,} rows in {took_s:.1f} s — {tally.lots:,} lots ({tally.units:,} units, "
        f"{rate:,.0f} lots/s), {tally.skus:,} skus, {tally.sites:,} sites applied; {len(tally.refused):,} refused"
    )


def _report_refusals(file: Path, rejects: Path, tally: ImportTally) -> None:
    from rich.text import Text

    from engine.api.import_client import write_rejects

    err = _err()
    for r in tally.refused[:SHOWN_REFUSALS]:
        err.print(Text(f"{file}:{r.line}: ", style="bold") + Text(f"{r.code}: {r.reason}"))
    more = len(tally.refused) - SHOWN_REFUSALS
    if more > 0:
        err.print(f"… and {more:,} more")
    try:
        write_rejects(rejects, file, tally.refused)
    except OSError as exc:
        err.print(f"lotwise: error: cannot write the rejects file {rejects}: {exc.strerror or exc}")
        return
    err.print(f"refused rows written to {rejects}")
