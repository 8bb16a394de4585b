"""`lotwise dlq …`: the dead letters of a running engine's NATS ingestion (lotwise.v1.Admin).

    lotwise dlq list [--code C] [--after SEQ] [--limit N]    dead letters, oldest first, a page
    lotwise dlq show SEQ                                     one letter: reason, headers, payload
    lotwise dlq replay SEQ [SEQ ...]                         publish these again, then remove them
    lotwise dlq replay --all [--code C]                      every letter (of a code), in chunks

A dead letter is an inbound message (IoT cabinet, WMS) that could not be decoded,
validated or applied; it waits here with its reason and its original bytes until it is
replayed — typically after the missing sku, site or cabinet mapping was added. Exit
codes as for every client command: 2 bad usage, 1 the engine refused or some letters
could not be replayed (they stay in the store), 3 the engine could not be reached.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from engine.cli.common import (
    DEFAULT_TARGET,
    EXIT_CONFIG,
    EXIT_REFUSED,
    FormatOpt,
    OutputFormat,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _out,
    check_range,
    emit,
    fail,
    show_table,
    with_client,
)
from engine.domain.deadletters import DeadLetterCode

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from engine.api.client import LotwiseClient
    from engine.domain.deadletters import ReplayResult, StoredDeadLetter


dlq_app = typer.Typer(
    name="dlq",
    help="Dead letters of NATS ingestion: list them, show one, replay them once the cause is fixed.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

REASON_COLUMN_CHARS = 60
SHOW_TEXT_MAX_CHARS = 16_000  # a pretty-printed JSON payload is cut here
SHOW_HEX_MAX_BYTES = 2_048  # a binary payload's hex dump is cut here
REPLAY_CHUNK = 100  # letters per ReplayDeadLetters call: one progress step, a bounded call
LIST_PAGE = 1_000
MAX_REPLAY_ALL = 1_000_000  # the most `--all` replays in one run

CodeOpt = Annotated[
    DeadLetterCode | None,
    typer.Option("--code", "-c", help="Only letters of this code.", case_sensitive=False, show_default=False),
]


def _stamp(ms: int) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


# ---- lotwise dlq list -----------------------------------------------------------------


@dlq_app.command("list")
def list_(
    code: CodeOpt = None,
    after: Annotated[int, typer.Option("--after", help="Only letters after this seq (page on with it).")] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Letters per page (1..1000).")] = 100,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Dead letters, oldest first: when, why (code and reason), which event, from where."""
    if after < 0:
        fail(f"--after must be ≥ 0 (got {after})", EXIT_CONFIG)
    check_range("--limit", limit, 1, LIST_PAGE)
    code_value = code.value if code else ""
    page = with_client(target, timeout, lambda c: c.list_dead_letters(after_seq=after, limit=limit, code=code_value))
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [_letter_record(s) for s in page.letters], LETTER_FIELDS)
        return
    which = f" ({code_value})" if code_value else ""
    table = Table(title=f"{len(page.letters)} dead letters{which}; {page.total} in the store", title_justify="left")
    for name in ("seq", "failed at (UTC)", "code", "event type", "event id", "subject", "reason"):
        table.add_column(name, justify="right" if name == "seq" else "left", no_wrap=name != "reason")
    for s in page.letters:
        letter = s.letter
        table.add_row(
            str(s.seq),
            _stamp(letter.failed_at_ms),
            letter.code.value,
            letter.event_type or Text("?", style="dim"),
            letter.event_id or Text("?", style="dim"),
            letter.subject,
            _short(letter.reason, REASON_COLUMN_CHARS),
        )
    out = _out()
    show_table(out, table)
    if page.next_after_seq:
        out.print(Text(f"next page: --after {page.next_after_seq}"), soft_wrap=True)
    else:
        out.print("last page")


LETTER_FIELDS = ("seq", "failed_at_ms", "code", "event_type", "event_id", "subject", "deliveries", "reason")


def _letter_record(s: StoredDeadLetter) -> dict[str, str | int]:
    letter = s.letter
    return {
        "seq": s.seq,
        "failed_at_ms": letter.failed_at_ms,
        "code": letter.code.value,
        "event_type": letter.event_type,
        "event_id": letter.event_id,
        "subject": letter.subject,
        "deliveries": letter.deliveries,
        "reason": letter.reason,  # whole: a script gets what the table cuts
    }


# ---- lotwise dlq show -----------------------------------------------------------------


def hex_dump(data: bytes, max_bytes: int = SHOW_HEX_MAX_BYTES) -> str:
    """offset, 16 bytes in hex, the same as ASCII ('.' for the rest); at most max_bytes."""
    lines = []
    for offset in range(0, min(len(data), max_bytes), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  {text}")
    if len(data) > max_bytes:
        lines.append(f"… {len(data) - max_bytes} more bytes")
    return "\n".join(lines)


def render_payload(data: bytes) -> tuple[str, str]:
    """(what it is, how to show it): pretty JSON when it is JSON, else a hex dump; bounded."""
    if not data:
        return "empty", ""
    try:
        text = json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):
        return f"{len(data)} bytes, not JSON (hex)", hex_dump(data)
    if len(text) > SHOW_TEXT_MAX_CHARS:
        text = text[:SHOW_TEXT_MAX_CHARS] + f"\n… cut at {SHOW_TEXT_MAX_CHARS} characters"
    return f"{len(data)} bytes, JSON", text


@dlq_app.command("show")
def show(
    seq: Annotated[int, typer.Argument(help="The letter's seq (from `lotwise dlq list`).", min=1)],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """One dead letter: every field, its original headers, and its payload (JSON pretty-printed, else hex).

    With --format json or csv the payload is base64 (payload_base64): the original bytes, whatever they are."""
    stored: StoredDeadLetter = with_client(target, timeout, lambda c: c.get_dead_letter(seq))
    letter = stored.letter
    if fmt is not OutputFormat.TABLE:
        record = {
            **_letter_record(stored),
            "key": letter.key,
            "payload_base64": base64.b64encode(letter.payload).decode(),
        }
        if fmt is OutputFormat.JSON:
            original = [{"name": name, "value": value} for name, value in letter.headers]
            typer.echo(json.dumps({**record, "headers": original}, ensure_ascii=False))
        else:
            emit(fmt, [record])
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in (
        ("seq", str(stored.seq)),
        ("key", letter.key),
        ("code", letter.code.value),
        ("reason", letter.reason),
        ("subject", letter.subject),
        ("event type", letter.event_type or "—"),
        ("event id", letter.event_id or "—"),
        ("deliveries", str(letter.deliveries)),
        ("failed at", f"{_stamp(letter.failed_at_ms)} UTC" if letter.failed_at_ms else "—"),
    ):
        grid.add_row(name, Text(value))
    out = _out()
    out.print(grid)
    if letter.headers:
        headers = Table(title="original headers", title_justify="left")
        headers.add_column("name", no_wrap=True)
        headers.add_column("value")
        for name, value in letter.headers:
            headers.add_row(name, Text(value))
        out.print(headers)
    kind, body = render_payload(letter.payload)
    out.print(Text(f"payload: {kind}", style="bold"))
    if body:
        out.print(Text(body), soft_wrap=True)


# ---- lotwise dlq replay ---------------------------------------------------------------


@dlq_app.command("replay")
def replay(
    seqs: Annotated[
        list[int] | None,
        typer.Argument(help="Seqs of the letters to replay (from `lotwise dlq list`).", metavar="SEQ"),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Replay every letter (of --code), oldest first, in chunks.")
    ] = False,
    code: CodeOpt = None,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 60.0,
) -> None:
    """Publish letters again to their original subjects, original bytes and headers, and remove them.

    Fix the cause first (add the sku, the site, the cabinet mapping): a letter that fails again comes back as a new one.
    A letter whose publish fails stays in the store, and the command exits 1.
    Replaying an event that was already applied changes nothing (its event id is the request id).
    """
    given = list(dict.fromkeys(seqs or ()))
    if all_ and given:
        fail("give either seqs or --all, not both", EXIT_CONFIG)
    if not all_ and not given:
        fail("give the seqs to replay, or --all (see `lotwise dlq list`)", EXIT_CONFIG)
    if code is not None and not all_:
        fail("--code filters --all; with seqs, list exactly the letters to replay", EXIT_CONFIG)
    if any(s <= 0 for s in given):
        fail("seqs must be ≥ 1", EXIT_CONFIG)
    code_value = code.value if code else ""
    out = _out()

    async def work(client: LotwiseClient) -> tuple[int, ReplayResult]:
        from engine.domain.deadletters import ReplayResult

        targets = given
        if all_:
            with out.status("listing dead letters …"):
                targets = await _all_seqs(client, code_value)
        total = ReplayResult()
        if not targets:
            return 0, total
        chunks = [targets[i : i + REPLAY_CHUNK] for i in range(0, len(targets), REPLAY_CHUNK)]
        progress = _progress(out, show=len(chunks) > 1 or all_)
        with progress:
            task = progress.add_task("replaying", total=len(targets))
            for chunk in chunks:
                result = await client.replay_dead_letters(chunk)
                total.replayed.extend(result.replayed)
                total.failed.extend(result.failed)
                progress.update(task, advance=len(chunk))
        return len(targets), total

    asked, result = with_client(target, timeout, work)
    if asked == 0:
        out.print("no dead letters to replay" + (f" ({code_value})" if code_value else ""))
        return
    if result.failed:
        table = Table(title=f"{len(result.failed)} not replayed (still in the store)", title_justify="left")
        table.add_column("seq", justify="right")
        table.add_column("why")
        for seq, why in result.failed:
            table.add_row(str(seq), Text(why))
        out.print(table)
    out.print(f"replayed {len(result.replayed)} of {asked} dead letters")
    if result.failed:
        fail(f"replay: {len(result.failed)} of {asked} letters failed; they stay in the store", EXIT_REFUSED)


async def _all_seqs(client: LotwiseClient, code: str) -> list[int]:
    """Every letter's seq (of `code`) as the store holds them now, oldest first: letters
    that arrive during the replay (a replay that fails again) wait for the next run."""
    seqs: list[int] = []
    after = 0
    while len(seqs) < MAX_REPLAY_ALL:  # each page moves `after` forward
        page = await client.list_dead_letters(after_seq=after, limit=LIST_PAGE, code=code)
        seqs.extend(s.seq for s in page.letters)
        if not page.next_after_seq:
            break
        after = page.next_after_seq
    return seqs[:MAX_REPLAY_ALL]


def _progress(out: Console, *, show: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        disable=not show,
        transient=False,
    )
