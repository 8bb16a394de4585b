"""`lotwise`: serve the engine, run the demo, and ask a running engine about its stock.

    lotwise up [--port 50051 --shards 2 --demo]      serve until Ctrl-C / SIGTERM
    lotwise demo [--target host:port]                the scripted medical-device demo
    lotwise availability SKU SITE [--by lot ...]     one pair, sliced
    lotwise stock [--org medline/east --by sku ...]  many pairs, rolled up
    lotwise hold HOLD_ID                             one hold and its parts
    lotwise holds list [--site W --state active]     holds by pair, site, state, expiry (engine/cli/holds.py)
    lotwise sites [--org ...]                        the site directory
    lotwise verify | shards                          journal check, shard states
    lotwise where                                    the addresses in engine.json
    lotwise history balance|movements|...            ask the history store (engine/cli/history.py)
    lotwise dlq list|show|replay                     dead letters of NATS ingestion (engine/cli/dlq.py)
    lotwise alerts list|show|ack|close               alerts (engine/cli/alerts.py)
    lotwise reconcile submit|report|proposals|approve|reject|shelf|sweep   stock health (engine/cli/reconcile.py)
    lotwise import FILE                              bulk load skus, sites, lots (engine/cli/bulk.py)
    lotwise finance vouchers|approve|post|export|... vouchers and their review (engine/cli/finance.py)

Exit codes (one table for every command, engine/cli/common.py ExitCode): 0 ok; 1 the
engine refused the request (the typed error is printed with its details), `up` could not
start it, or `verify` found a difference; 2 bad usage or bad configuration (nothing was
sent or started); 3 the engine could not be reached; 130 interrupted (`up` stops cleanly
on Ctrl-C, then exits 130; on SIGTERM it exits 0).

Heavy imports (Ray, gRPC, the engine) happen inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.cli import health
from engine.cli.alerts import alerts_app
from engine.cli.bulk import import_command
from engine.cli.common import (
    _DEBUG_HINT,
    DEFAULT_TARGET,
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    SERVICE,
    FormatOpt,
    OutputFormat,
    Record,
    Scalar,
    StartError,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _day,
    _expiry_cell,
    _now_ms,
    _out,
    check_id,
    check_org,
    check_range,
    check_sites,
    describe,
    emit,
    emit_object,
    fail,
    no_site_under,
    show_table,
    with_client,
)
from engine.cli.config import build_settings, check_can_listen, config_errors, field_label
from engine.cli.dlq import dlq_app
from engine.cli.finance import finance_app
from engine.cli.history import history_app
from engine.cli.holds import holds_app
from engine.cli.reconcile import reconcile_app
from engine.cli.replenish import replenish_app
from engine.cli.token import token
from engine.cli.transfers import transfers_app
from engine.cli.where import where
from engine.domain.cell import Dimension
from engine.domain.commands import MAX_BIN_DEPTH

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.bootstrap import RunningEngine
    from engine.demo import DemoRun, DemoSummary, SliceTable, Step
    from engine.domain.cell import SliceRow
    from engine.domain.inventory import StockQuery, StockRow
    from engine.domain.model import HoldView
    from engine.runtime.types import HoldSummary
    from engine.settings import Settings

app = typer.Typer(
    name="lotwise",
    help="Lotwise — a real-time inventory engine: lot-level stock per (sku, site), holds, slices, over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    # Our errors are printed as one clear line each; a bug still gets Python's plain traceback.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: " + "; ".join(f"{code.value} {meaning}" for code, meaning in EXIT_CODES.items()) + ".",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"lotwise {version('lotwise')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("lotwise (not installed: no package metadata)")
        raise typer.Exit()


@app.callback()
def _root(
    _: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Lotwise — a real-time inventory engine: lot-level stock per (sku, site), holds, slices, over gRPC."""


async def start_engine(stack: contextlib.AsyncExitStack, settings: Settings, gateway: Any = None) -> RunningEngine:
    """Enter `running_engine` on `stack`; any failure becomes one StartError line, and the
    traceback goes to the log at debug level (LOTWISE_LOG_LEVEL=debug) for whoever digs."""
    from engine.bootstrap import running_engine

    try:
        return await stack.enter_async_context(running_engine(settings, gateway=gateway))
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise
    except Exception as exc:
        import structlog

        structlog.get_logger("lotwise.cli").debug("engine start failed", exc_info=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise StartError(f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__) from exc


class StockBy(StrEnum):
    """What `lotwise stock` groups by: sku and site, plus the four dimensions of a cell."""

    SKU = "sku"
    SITE = "site"
    BIN = "bin"
    STATUS = "status"
    OWNER = "owner"
    LOT = "lot"
    EXPIRY_DAY = "expiry_day"
    RECEIVED_DAY = "received_day"


def slice_table(dims: Sequence[str], rows: Sequence[SliceRow], now_ms: int) -> Table:
    table = Table(show_footer=len(rows) > 1)
    for dim in dims:
        table.add_column(dim, footer="total" if dim == dims[0] else "", no_wrap=True)
    if not dims:
        table.add_column("", footer="")
    totals = [sum(r.qty for r in rows), sum(r.held for r in rows), sum(r.available for r in rows)]
    table.add_column("qty", justify="right", footer=str(totals[0]))
    table.add_column("held", justify="right", footer=str(totals[1]))
    table.add_column("available", justify="right", style="bold green", footer=str(totals[2]))
    table.add_column("on hand", justify="right", footer=str(sum(r.on_hand for r in rows)))
    table.add_column("earliest expiry", footer="", no_wrap=True)
    for row in rows:
        group = dict(row.group)
        # A bin of "" is the site itself; say so rather than print an empty cell.
        cells: list[str | Text] = [(group.get(d, "") or "(site)") if d == "bin" else group.get(d, "") for d in dims]
        if not dims:
            cells = ["all"]
        table.add_row(
            *cells,
            str(row.qty),
            str(row.held),
            str(row.available),
            str(row.on_hand),
            _expiry_cell(row.earliest_expiry_ms, now_ms),
        )
    if not rows:
        table.add_row(*([""] * max(len(dims), 1)), "0", "0", "0", "0", Text("no stock", style="dim"))
    return table


def print_slice(console: Console, t: SliceTable) -> None:
    dims = [d.value for d in t.group_by]
    console.print(f"[bold]{t.sku} @ {t.site}[/] — {t.title}: [bold green]{t.available}[/] available")
    show_table(console, slice_table(dims, t.rows, t.as_of_ms))


def stock_table(rows: Sequence[StockRow], by_sku: bool, by_site: bool, dims: Sequence[str]) -> Table:
    now_ms = _now_ms()
    table = Table(show_footer=len(rows) > 1)
    keys = (["sku"] if by_sku else []) + (["site"] if by_site else []) + list(dims)
    for i, key in enumerate(keys):
        table.add_column(key, footer="total" if i == 0 else "", no_wrap=True)
    table.add_column("qty", justify="right", footer=str(sum(r.row.qty for r in rows)))
    table.add_column("held", justify="right", footer=str(sum(r.row.held for r in rows)))
    table.add_column("available", justify="right", style="bold green", footer=str(sum(r.row.available for r in rows)))
    table.add_column("on hand", justify="right", footer=str(sum(r.row.on_hand for r in rows)))
    table.add_column("earliest expiry", no_wrap=True)
    for r in rows:
        group = dict(r.row.group)
        cells = ([r.sku] if by_sku else []) + ([r.site] if by_site else []) + [group.get(d, "") for d in dims]
        table.add_row(
            *cells,
            str(r.row.qty),
            str(r.row.held),
            str(r.row.available),
            str(r.row.on_hand),
            _expiry_cell(r.row.earliest_expiry_ms, now_ms),
        )
    return table


def hold_table(hold: HoldSummary) -> Table:
    now_ms = _now_ms()
    expires = "" if not hold.expires_at_ms else f", expires {_stamp(hold.expires_at_ms, now_ms)}"
    table = Table(title=f"hold {hold.hold_id}: [bold]{hold.state.value}[/]{expires}", title_justify="left")
    table.title_style = "none"
    for name in ("sku", "site", "state", "held", "committed", "released", "allocations (lot bin owner ×qty)"):
        table.add_column(name, justify="right" if name in ("held", "committed", "released") else "left")
    for p in hold.parts:
        allocations = "\n".join(f"{a.lot_id} {a.bin or '(site)'} {a.owner} ×{a.qty}" for a in p.allocations)
        table.add_row(
            p.sku,
            p.site,
            p.state.value,
            str(p.held_qty),
            str(p.committed_qty),
            str(p.released_qty),
            allocations or Text("—", style="dim"),
        )
    return table


def _stamp(ms: int, now_ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta_s = (ms - now_ms) / 1000
    return f"{at} (in {delta_s:.0f} s)" if delta_s >= 0 else f"{at} ({-delta_s:.0f} s ago)"


# ---- lotwise up -----------------------------------------------------------------------


@app.command()
def up(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (env LOTWISE_HOST, default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="gRPC port; 0 picks a free one (env LOTWISE_PORT, default 50051).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus /metrics port; 0 picks one (env LOTWISE_METRICS_PORT, default 9464).")
    ] = None,
    shards: Annotated[
        int | None, typer.Option(help="Shard actors, each hosting many cells (env LOTWISE_SHARDS, default 2).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="'' starts a local Ray; 'auto' or ray://host:port joins a cluster.")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Ray namespace of the engine (env LOTWISE_NAMESPACE).")] = None,
    ray_num_cpus: Annotated[int | None, typer.Option(help="CPUs a local Ray may use (default: all).")] = None,
    status_dictionary: Annotated[
        Path | None, typer.Option(help="Status dictionary JSON (default: the packaged one).")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error (env LOTWISE_LOG_LEVEL).")
    ] = None,
    log_format: Annotated[str | None, typer.Option(help="console or json (env LOTWISE_LOG_FORMAT).")] = None,
    journal: Annotated[
        str | None,
        typer.Option(help="nats: durable JetStream journal; memory: nothing survives a restart (env LOTWISE_JOURNAL)."),
    ] = None,
    nats_url: Annotated[
        str | None, typer.Option(help="'' starts an embedded nats-server; else nats://host:port of a cluster.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where embedded servers keep their files (env LOTWISE_DATA_DIR, default .data).")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP/JSON port; 0 picks a free one (env LOTWISE_HTTP_PORT, default 8051).")
    ] = None,
    http: Annotated[
        bool | None,
        typer.Option(
            "--http/--no-http", help="Serve HTTP/JSON through Envoy (env LOTWISE_HTTP, default on).", show_default=False
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Load the demo dataset (medical devices) once started.")
    ] = False,
) -> None:
    """Serve the engine: gRPC API + /metrics, until Ctrl-C or SIGTERM.

    Flags override LOTWISE_* environment variables (and .env), which override defaults.
    Bad configuration exits with code 2 before anything starts.
    """
    overrides = {
        "host": host,
        "port": port,
        "metrics_port": metrics_port,
        "shards": shards,
        "ray_address": ray_address,
        "namespace": namespace,
        "ray_num_cpus": ray_num_cpus,
        "status_dictionary": status_dictionary,
        "log_level": log_level,
        "log_format": log_format,
        "journal": journal,
        "nats_url": nats_url,
        "data_dir": data_dir,
        "http_port": http_port,
        "http": http,
    }
    with config_errors():
        settings = build_settings(overrides)
        host_label = field_label("host", overrides)
        check_can_listen(settings.host, settings.port, host_label, field_label("port", overrides))
        check_can_listen(settings.host, settings.metrics_port, host_label, field_label("metrics_port", overrides))
        if settings.http:
            check_can_listen(settings.host, settings.http_port, host_label, field_label("http_port", overrides))
    from engine.logs import configure_logging, quiet_ray_start

    configure_logging(settings.log_level, settings.log_format)
    quiet_ray_start(local_ray=not settings.ray_address)
    from engine.api.errors import RemoteError
    from engine.domain.errors import DomainError

    if demo:
        settings = with_demo_devices(settings)
    try:
        stopped_by = asyncio.run(_serve(settings, demo))
    except typer.Exit:
        raise
    except KeyboardInterrupt:  # Ctrl-C during start-up, before our handlers were in place
        fail("interrupted during start-up; stopped", EXIT_INTERRUPTED)
    except (DomainError, RemoteError) as exc:  # loading the demo dataset was refused
        fail(["the demo dataset could not be loaded", *describe(exc)], EXIT_REFUSED)
    except StartError as exc:  # Ray did not come up, a port was taken since our check, ...
        fail([f"could not start the engine: {exc}", _DEBUG_HINT], EXIT_REFUSED)
    if stopped_by == signal.SIGINT:  # Ctrl-C: stopped cleanly all the same, but a shell sees 130
        raise typer.Exit(EXIT_INTERRUPTED)


def with_demo_devices(settings: Settings) -> Settings:
    """The demo dataset's cabinets and GTINs, unless an ingestion config was given."""
    if settings.ingest_config is not None:
        return settings
    from adapters.nats.ingest.config import EXAMPLE_CONFIG

    return settings.model_copy(update={"ingest_config": EXAMPLE_CONFIG})


async def _serve(settings: Settings, demo: bool) -> signal.Signals:
    """Start, serve until SIGINT or SIGTERM, stop cleanly; return the signal that stopped it
    (SIGTERM is how a supervisor asks for a stop: exit 0; Ctrl-C exits 130, as shells expect)."""

    out = _out()
    started = time.monotonic()
    stop = asyncio.Event()
    stopped_by: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        stopped_by.append(sig)
        stop.set()

    async with contextlib.AsyncExitStack() as stack:
        stack.callback(_shutdown_ray_if_local, settings)
        with out.status(f"Starting Lotwise: {_where_ray(settings)}, {settings.shards} shards…"):
            engine = await start_engine(stack, settings)
        # Ray replaces the driver's SIGTERM handler during start-up: install ours after it.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        print_listening(out, engine, time.monotonic() - started)
        _publish_endpoints(stack, engine)
        if demo:
            await _load_demo(out, engine.grpc_address, engine.token_file)
        out.print("Serving. Press [bold]Ctrl-C[/] (or send SIGTERM) to stop.")
        await stop.wait()
        with out.status("Stopping: draining gRPC, stopping shards…"):
            await stack.aclose()
    out.print("[green]✓[/] Lotwise stopped cleanly.")
    return stopped_by[0]


def _publish_endpoints(stack: contextlib.AsyncExitStack, engine: RunningEngine) -> None:
    """engine.json in the data dir, so clients find this engine; removed on a clean stop."""
    import os

    from engine.endpoints import Endpoints, remove_endpoints, write_endpoints

    nats = engine.nats
    nats_url = nats.url if nats is not None else engine.settings.nats_url
    token_file = str(engine.token_file.resolve()) if engine.token_file else ""
    endpoints = Endpoints(
        engine.grpc_address,
        engine.metrics_url,
        nats_url,
        os.getpid(),
        token_file,
        console=engine.console_url,
        http=engine.http_url,
    )
    data_dir = engine.settings.data_dir
    write_endpoints(data_dir, endpoints)
    stack.callback(remove_endpoints, data_dir, endpoints)


def _where_ray(settings: Settings) -> str:
    return f"joining Ray at {settings.ray_address}" if settings.ray_address else "local Ray"


def _where_journal(engine: RunningEngine) -> str:
    settings = engine.settings
    if settings.journal == "memory":
        return "in memory (nothing survives a restart; development only)"
    nats = engine.nats
    if nats is not None:
        return f"NATS JetStream, embedded nats-server at {nats.url}, files in {settings.data_dir / 'nats'}"
    return f"NATS JetStream at {settings.nats_url}"


def _shutdown_ray_if_local(settings: Settings) -> None:
    if not settings.ray_address:
        from engine.bootstrap import shutdown_ray

        shutdown_ray()


def _where_token(engine: RunningEngine) -> str:
    """The admin token's file (never the token), or why there is none."""
    if engine.token_file is not None:
        return f"{engine.token_file}  (the CLI and LotwiseClient use it; docs/security.md)"
    if not engine.settings.auth:
        return "none: authentication is OFF (LOTWISE_AUTH=off)"
    return "from your token issuer (LOTWISE_AUTH_PUBLIC_KEYS_FILE)"


def _where_http(engine: RunningEngine) -> str:
    from engine.bootstrap.http import http_skipped_because

    if engine.http_url:
        return f"{engine.http_url}  (HTTP/JSON for every gRPC method; {engine.http_url}/openapi.json; docs/http.md)"
    return http_skipped_because(engine.settings) or "off"


def _http_try_lines(engine: RunningEngine) -> list[str]:
    if not engine.http_url:
        return []
    bearer = f' -H "authorization: Bearer $(cat {engine.token_file})"' if engine.token_file else ""
    return [f'curl -s{bearer} "{engine.http_url}/v1/sites/FW-BOS/skus/GLU-50/availability?group_by=DIMENSION_LOT"']


def print_listening(out: Console, engine: RunningEngine, took_s: float) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("gRPC", f"{engine.grpc_address}  ({SERVICE}, grpc.health.v1.Health, reflection)")
    grid.add_row("metrics", engine.metrics_url or "off")
    grid.add_row("console", f"{engine.console_url}  (sign in with the token below)" if engine.console_url else "off")
    grid.add_row("http", _where_http(engine))
    grid.add_row("shards", f"{engine.settings.shards}  ({_where_ray(engine.settings)})")
    grid.add_row("journal", _where_journal(engine))
    grid.add_row("token", _where_token(engine))
    out.print(f"[green]✓[/] Lotwise is up in {took_s:.1f} s")
    out.print(grid)
    # Commands to copy: never wrapped, whatever the terminal width.
    address = engine.grpc_address
    bearer = f' -H "authorization: Bearer $(cat {engine.token_file})"' if engine.token_file else ""
    out.print("[bold]try[/]", soft_wrap=True)
    for line in (
        f"grpcurl -plaintext {address} list {SERVICE}",
        f'grpcurl -plaintext{bearer} -d \'{{"sku": "GLU-50", "site": "FW-BOS", "group_by": ["DIMENSION_LOT"]}}\' '
        f"{address} {SERVICE}/GetAvailability",
        f"lotwise availability GLU-50 FW-BOS --by lot --target {address}",
        *_http_try_lines(engine),
    ):
        out.print(Text("  " + line), soft_wrap=True)


async def _load_demo(out: Console, address: str, token_file: Path | None = None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from engine.api.client import LotwiseClient
    from engine.demo import SEED_RUN, load_dataset

    async with LotwiseClient(address, token_file=token_file) as client:
        with Progress(TextColumn("Loading the demo dataset"), BarColumn(), MofNCompleteColumn(), transient=True) as bar:
            task = bar.add_task("load", total=None)
            report = await load_dataset(
                client, SEED_RUN, progress=lambda n, total: bar.update(task, completed=n, total=total)
            )
    if report.loaded:
        out.print(
            f"[green]✓[/] demo dataset: {report.skus} skus, {report.sites} sites, "
            f"{report.receipts} opening receipts ({report.units} units)"
        )
    else:
        out.print("[green]✓[/] demo dataset already loaded (its central warehouse exists); nothing booked")


# ---- lotwise demo ---------------------------------------------------------------------


@app.command("demo")
def demo_command(
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="Run against this engine (host:port) instead of an embedded one."),
    ] = None,
    token_file: TokenFileOpt = None,  # with --target: the token to send (the embedded engine uses its own)
    run_id: Annotated[
        str | None, typer.Option(help="Prefix of every request and hold id (default: a fresh random one).")
    ] = None,
    shards: Annotated[
        int | None, typer.Option(help="Shards of the embedded engine (env LOTWISE_SHARDS, default 2).")
    ] = None,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Embedded engine without Ray: shards in this process (starts at once).")
    ] = False,
    hold_ttl_ms: Annotated[int, typer.Option(help="TTL of the hold the demo lets expire (it waits for it).")] = 1_500,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Run the scripted medical-device day: receive, QC, putaway, orders, scan-takes, counts, holds.

    Without --target it starts an engine of its own (gRPC and metrics on free ports),
    loads the demo dataset, runs the flow, prints availability before and after, and
    stops the engine. With --target the run books into its own copies of the sites
    (FW-BOS.<run-id>, ...), so it never disturbs the target's stock.
    """
    from engine.demo import DemoRun

    if not 100 <= hold_ttl_ms <= 60_000:
        fail("--hold-ttl-ms must be in 100..60000 (the demo waits for it)", EXIT_CONFIG)
    if run_id is not None:
        _check_run_id(run_id)
    out = _out()
    if target is not None:
        run = DemoRun.shared_engine(run_id)
        summary = with_client(target, timeout, lambda client: _demo_flow(out, client, run, hold_ttl_ms))
        _print_summary(out, summary)
        return
    # An engine of its own, with its files in a fresh directory: every demo starts from
    # empty stock, whatever a previous run (or a `lotwise up` in this directory) journaled.
    with tempfile.TemporaryDirectory(prefix="lotwise-demo-") as data_dir:
        with config_errors():
            settings = build_settings({"port": 0, "metrics_port": 0, "shards": shards, "data_dir": Path(data_dir)})
        settings = with_demo_devices(settings)
        if settings.log_level != "debug":  # shards log in their own processes: quiet them too
            settings = settings.model_copy(update={"log_level": "warning"})
        from engine.logs import configure_logging, quiet_ray_start

        # The narration is the output; the engine's per-RPC access logs would drown it.
        configure_logging("debug" if settings.log_level == "debug" else "warning", settings.log_format)
        quiet_ray_start(local_ray=not settings.ray_address)
        try:
            summary = asyncio.run(
                _demo_embedded(out, settings, DemoRun.fresh_engine(run_id), in_process, hold_ttl_ms, timeout)
            )
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except StartError as exc:
            fail([f"could not start the embedded engine: {exc}", _DEBUG_HINT], EXIT_REFUSED)
    _print_summary(out, summary)


def _check_run_id(run_id: str) -> None:
    from engine.domain.commands import check_id
    from engine.domain.errors import FieldViolation

    problems: list[FieldViolation] = []
    check_id(run_id, "--run-id", problems)
    if problems or len(run_id) > 48:
        fail(f"--run-id: {problems[0].description if problems else 'must be at most 48 characters'}", EXIT_CONFIG)


async def _demo_embedded(
    out: Console, settings: Settings, run: DemoRun, in_process: bool, hold_ttl_ms: int, timeout_s: float
) -> DemoSummary:
    from engine.api.client import LotwiseClient
    from engine.domain.errors import DomainError

    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        gateway = None
        if in_process:
            from engine.bootstrap import in_process_gateway

            gateway = in_process_gateway(settings)
            stack.push_async_callback(gateway.close)  # running_engine closes only gateways it made
        else:
            stack.callback(_shutdown_ray_if_local, settings)
        where = "in this process" if in_process else _where_ray(settings)
        with out.status(f"Starting an embedded Lotwise ({where}, {settings.shards} shards)…"):
            engine = await start_engine(stack, settings, gateway)
        out.print(f"[green]✓[/] engine up in {time.monotonic() - started:.1f} s at {engine.grpc_address} ({where})")
        client = await stack.enter_async_context(
            LotwiseClient(engine.grpc_address, timeout_s=timeout_s, token_file=engine.token_file)
        )
        try:
            summary = await _demo_flow(out, client, run, hold_ttl_ms)
            if engine.ingest is not None and engine.nats is not None:
                await _demo_cabinet(out, client, engine.nats.url, settings.namespace)
        except DomainError as exc:  # the demo itself was refused: a bug in the demo or the engine
            fail(["the demo was refused unexpectedly", *describe(exc)], EXIT_REFUSED)
        with out.status("Stopping the embedded engine…"):
            await stack.aclose()
    return summary


async def _demo_flow(out: Console, client: LotwiseClient, run: DemoRun, hold_ttl_ms: int) -> DemoSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from engine.demo import load_dataset, run_flow

    with Progress(TextColumn("Loading the demo dataset"), BarColumn(), MofNCompleteColumn(), transient=True) as bar:
        task = bar.add_task("load", total=None)
        report = await load_dataset(client, run, progress=lambda n, total: bar.update(task, completed=n, total=total))
    out.print(
        f"[green]✓[/] dataset: {report.skus} skus, {report.sites} sites "
        f"({', '.join(run.sites)}), {report.receipts} opening receipts, {report.units} units; run id {run.run_id}"
    )
    out.rule("the day, step by step")

    def on_step(step: Step) -> None:
        mark = "[green]✓[/]" if step.ok else "[yellow]![/]"
        out.print(f"{mark} [bold]{step.title:<8}[/] {step.detail}")

    with out.status("Running the scripted flow…") as status:

        def narrate(step: Step) -> None:
            on_step(step)
            status.update(f"Running the scripted flow… (after: {step.title})")

        return await run_flow(client, run, short_ttl_ms=hold_ttl_ms, on_step=narrate)


async def _demo_cabinet(out: Console, client: LotwiseClient, nats_url: str, namespace: str) -> None:
    from engine.demo import CABINET_DEVICE, cabinet_scan_over_nats

    with out.status("A cabinet publishes a scan over NATS…"):
        scan = await cabinet_scan_over_nats(client, nats_url, namespace)
    out.print(
        f"[green]✓[/] [bold]{'nats':<8}[/] {CABINET_DEVICE} published a GS1 scan-take on NATS: {scan.site} "
        f"available IVC-20G {scan.available_before} → {scan.available_after}, visible centrally after "
        f"{scan.visible_after_ms:.0f} ms"
    )
    out.print(
        f"[green]✓[/] [bold]{'event':<8}[/] business event on {scan.event_subject}: doc {scan.event_doc_ref}, "
        f"extended price USD {scan.event_extended_price}"
    )


def _print_summary(out: Console, s: DemoSummary) -> None:
    out.rule("availability before the day")
    for t in s.before:
        print_slice(out, t)
    out.rule("availability after the day")
    for t in s.after:
        print_slice(out, t)
    out.print(f"[bold]QueryStock roll-up over org {s.rollup_org}[/] (all its sites), by sku and owner")
    show_table(out, stock_table(s.rollup, by_sku=True, by_site=False, dims=["owner"]))
    out.rule("what to notice")
    fefo = " then ".join(s.fefo_lots)
    out.print(
        f"• FEFO picked {s.fefo_lots[0]} first (expires first; FIFO would have taken {s.oldest_receipt_lot}): {fefo}"
    )
    out.print(f"• min shelf life 30 d skipped the soon-expiring 22G lot and took {s.shelf_life_lot}")
    out.print(
        f"• SO-1001 spanned two sites, all or nothing; partial commit: {s.committed_qty} committed, "
        f"{s.released_on_commit_qty} released in the same step ({s.order_state})"
    )
    out.print(
        f"• SO-1002 refused whole: {s.refused_reason} (requested {s.refused_requested}, "
        f"available {s.refused_available}); its other line was undone: "
        f"{'nothing changed' if s.refusal_changed_nothing else 'STOCK CHANGED'}"
    )
    out.print(
        f"• scan-take over book stock: {s.overtake_consumed_qty} from the books + "
        f"{s.overtake_shortfall_qty} booked as a discrepancy; cycle count variance {s.count_variance}"
    )
    out.print(
        f"• SO-1003 {s.released_hold_state} ({s.released_hold_qty} units); SO-1004 {s.expiring_hold_state}: "
        f"free {s.expiring_available_before} → {s.expiring_available_during} while held → "
        f"{s.expiring_available_after} after its TTL"
    )
    out.print(f"[bold green]Demo complete[/] (run id {s.run_id}).")


# ---- lotwise availability / stock / hold / sites --------------------------------------


MAX_SHELF_LIFE_DAYS = 36_500  # the engine's bound (engine/domain/commands.py)
MAX_STOCK_ROWS = 100_000


def _slice_record(group: Sequence[tuple[str, str]], row: SliceRow) -> dict[str, Scalar]:
    return {
        **dict(group),
        "qty": row.qty,
        "held": row.held,
        "available": row.available,
        "on_hand": row.on_hand,
        "earliest_expiry": _day(row.earliest_expiry_ms) if row.earliest_expiry_ms else None,
    }


@app.command()
def availability(
    sku: Annotated[str, typer.Argument(help="The sku, e.g. GLU-50.")],
    site: Annotated[str, typer.Argument(help="The site, e.g. FW-BOS.")],
    by: Annotated[
        list[Dimension] | None, typer.Option("--by", "-b", help="Group by this dimension (repeat for more).")
    ] = None,
    bin_depth: Annotated[
        int, typer.Option(help=f"With --by bin: cut bin paths to this many levels (0: full; 0..{MAX_BIN_DEPTH}).")
    ] = 0,
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses (repeat for more).")] = None,
    owner: Annotated[str, typer.Option(help="Owner filter: own, consignment, consignment:<supplier>, ...")] = "",
    bin_prefix: Annotated[str, typer.Option(help="Only bins under this path, e.g. A/03.")] = "",
    lot: Annotated[str, typer.Option(help="Only this lot.")] = "",
    min_shelf_life_days: Annotated[
        float | None, typer.Option(help=f"Only lots with at least this many days left (0..{MAX_SHELF_LIFE_DAYS}).")
    ] = None,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Available-to-promise of one (sku, site), sliced by bin, status, owner, lot or expiry."""
    from engine.domain.cell import SliceFilter

    check_id("SKU", sku)
    check_id("SITE", site)
    if lot:
        check_id("--lot", lot)
    check_range("--bin-depth", bin_depth, 0, MAX_BIN_DEPTH)
    if min_shelf_life_days is not None:
        check_range("--min-shelf-life-days", min_shelf_life_days, 0, MAX_SHELF_LIFE_DAYS)
    dims = tuple(by or ())
    filt = SliceFilter(
        statuses=frozenset(status or ()),
        owner=owner,
        bin_prefix=bin_prefix,
        lot_id=lot,
        min_shelf_life_days=min_shelf_life_days,
    )
    a = with_client(target, timeout, lambda c: c.get_availability(sku, site, dims, filt, bin_depth))
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [{"sku": a.sku, "site": a.site, **_slice_record(r.group, r)} for r in a.rows])
        return
    out = _out()
    out.print(f"[bold]{a.sku} @ {a.site}[/]: [bold green]{a.available}[/] available")
    show_table(out, slice_table([d.value for d in dims], a.rows, a.as_of_ms))


@app.command()
def stock(
    sku: Annotated[list[str] | None, typer.Option("--sku", help="Only this sku (repeat for more).")] = None,
    site: Annotated[list[str] | None, typer.Option("--site", help="Only this site (repeat for more).")] = None,
    org: Annotated[str, typer.Option(help="Only sites at or below this org node, e.g. medline/east.")] = "",
    by: Annotated[
        list[StockBy] | None,
        typer.Option(
            "--by", "-b", help="Group by (repeat); default: sku and site. Leave out sku/site to sum over them."
        ),
    ] = None,
    bin_depth: Annotated[
        int, typer.Option(help=f"With --by bin: cut bin paths to this many levels (0: full; 0..{MAX_BIN_DEPTH}).")
    ] = 0,
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses (repeat for more).")] = None,
    owner: Annotated[str, typer.Option(help="Owner filter: own, consignment, consignment:<supplier>, ...")] = "",
    sellable_only: Annotated[bool, typer.Option("--sellable-only", help="Only sellable statuses.")] = False,
    limit: Annotated[int, typer.Option(help=f"At most this many rows (1..{MAX_STOCK_ROWS}).")] = 1_000,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Stock over many (sku, site) pairs: filtered by sku, site and org node, rolled up.

    A --site the engine does not know is an error (exit 1), not an empty table."""
    from engine.domain.cell import SliceFilter
    from engine.domain.inventory import StockQuery

    for value in sku or ():
        check_id("--sku", value)
    for value in site or ():
        check_id("--site", value)
    check_range("--limit", limit, 1, MAX_STOCK_ROWS)
    check_range("--bin-depth", bin_depth, 0, MAX_BIN_DEPTH)
    keys = list(dict.fromkeys(by or (StockBy.SKU, StockBy.SITE)))
    dims = tuple(Dimension(k.value) for k in keys if k not in (StockBy.SKU, StockBy.SITE))
    query = StockQuery(
        skus=tuple(sku or ()),
        sites=tuple(site or ()),
        org_prefix=org,
        filter=SliceFilter(statuses=frozenset(status or ()), owner=owner, sellable_only=sellable_only),
        group_by=dims,
        by_sku=StockBy.SKU in keys,
        by_site=StockBy.SITE in keys,
        bin_depth=bin_depth,
        limit=limit,
    )

    async def work(client: LotwiseClient) -> tuple[list[StockRow], str]:
        await check_sites(client, query.sites)
        await check_org(client, org)
        return await _stock_and_view(client, query)

    rows, view = with_client(target, timeout, work)
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [_stock_record(r, query.by_sku, query.by_site) for r in rows])
        return
    scope = f"org {org}" if org else "all sites" if not site else ", ".join(site)
    out = _out()
    if view:
        out.print(Text(view), soft_wrap=True)  # whose view the table is (docs/security.md)
    out.print(
        f"[bold]stock over {scope}[/]: [bold green]{sum(r.row.available for r in rows)}[/] available, {len(rows)} rows"
    )
    show_table(out, stock_table(rows, query.by_sku, query.by_site, [d.value for d in dims]))


def _stock_record(r: StockRow, by_sku: bool, by_site: bool) -> Record:
    keys = ({"sku": r.sku} if by_sku else {}) | ({"site": r.site} if by_site else {})
    return {**keys, **_slice_record(r.row.group, r.row)}


async def _stock_and_view(client: LotwiseClient, query: StockQuery) -> tuple[list[StockRow], str]:
    """The rows, and one line saying whose grants shaped them ("" from an engine without Identity)."""
    from engine.api.errors import RemoteError

    rows = await client.query_stock(query)
    try:
        return rows, (await client.whoami()).line()
    except RemoteError:  # an older engine: UNIMPLEMENTED
        return rows, ""


@app.command()
def hold(
    hold_id: Annotated[str, typer.Argument(help="The hold's id (as given to Reserve).")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """One hold: its state, and per (sku, site) what it holds, committed and released."""
    check_id("HOLD_ID", hold_id)
    summary = with_client(target, timeout, lambda c: c.get_hold(hold_id))
    if fmt is not OutputFormat.TABLE:
        head = {"hold_id": summary.hold_id, "state": summary.state.value, "expires_at_ms": summary.expires_at_ms}
        emit_object(
            fmt, head, {"parts": [_part_record(p) for p in summary.parts], "allocations": _allocations(summary)}
        )
        return
    show_table(_out(), hold_table(summary))


def _part_record(p: HoldView) -> Record:
    return {
        "sku": p.sku,
        "site": p.site,
        "state": p.state.value,
        "held": p.held_qty,
        "committed": p.committed_qty,
        "released": p.released_qty,
    }


def _allocations(summary: HoldSummary) -> list[Record]:
    return [
        {
            "sku": p.sku,
            "site": p.site,
            "lot": a.lot_id,
            "bin": a.bin,
            "status": a.status,
            "owner": a.owner,
            "qty": a.qty,
        }
        for p in summary.parts
        for a in p.allocations
    ]


@app.command()
def sites(
    org: Annotated[str, typer.Option(help="Only sites at or below this org node.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """The site directory: every site with its org node and kind."""
    found = with_client(target, timeout, lambda c: c.list_sites(org))
    if org and not found:
        no_site_under(org)
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [{"site": s.site, "org": s.org_path, "kind": s.kind, "name": s.name} for s in found])
        return
    table = Table(title=f"{len(found)} sites" + (f" under {org}" if org else ""), title_justify="left")
    for name in ("site", "org", "kind", "name"):
        table.add_column(name, no_wrap=name == "site")
    for s in found:
        table.add_row(s.site, s.org_path, s.kind, s.name)
    show_table(_out(), table)


@app.command()
def verify(
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 600.0,
) -> None:
    """Rebuild every shard from its snapshot + journal and compare with the live engine.

    Exits 0 when every shard's rebuilt state hash equals its live one; otherwise prints
    what differs (a corrupt journal names its stream and position) and exits 1.
    """
    out = _out()
    with out.status("rebuilding every shard from snapshot + journal …"):
        ok, checks = with_client(target, timeout, lambda c: c.verify(timeout_s=timeout))
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [_verify_record(c) for c in checks])
    else:
        table = Table(title="verify: live state vs snapshot + journal", title_justify="left")
        for name, justify in (("shard", "left"), ("batch", "right"), ("replayed", "right"), ("live hash", "left")):
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        table.add_column("result")
        for c in checks:
            result = Text("ok", style="green") if c.ok else Text(c.error or f"differs: {c.rebuilt_hash}", style="red")
            table.add_row(c.shard, f"{c.batch_seq:,}", f"{c.replayed_batches:,}", c.live_hash, result)
        show_table(out, table)
    if not ok:
        fail(f"verify: {sum(not c.ok for c in checks)} of {len(checks)} shards differ from their journal", EXIT_REFUSED)
    if fmt is OutputFormat.TABLE:
        out.print(f"verify: all {len(checks)} shards match their journal")


def _verify_record(c: Any) -> Record:
    return {
        "shard": c.shard,
        "ok": c.ok,
        "batch_seq": c.batch_seq,
        "replayed_batches": c.replayed_batches,
        "live_hash": c.live_hash,
        "rebuilt_hash": c.rebuilt_hash,
        "error": c.error or "",
    }


@app.command()
def shards(
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Every shard's state, cells, batches and journal position."""
    stats = with_client(target, timeout, lambda c: c.shard_stats())
    columns = ("shard", "state", "cells", "batches", "ops", "batch_seq", "position", "recoveries", "failure")
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [{c: row[c] for c in columns} for row in stats], columns)
        return
    table = Table(title=f"{len(stats)} shards", title_justify="left")
    for name in columns:
        table.add_column(name, no_wrap=name != "failure")
    for row in stats:
        table.add_row(*(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in columns))
    show_table(_out(), table)


app.command()(where)
app.command("import")(import_command)
app.command("token")(token)

app.add_typer(history_app, name="history", help="Ask the history store: balances as of any time, movements, analytics.")
app.add_typer(dlq_app, name="dlq", help="Dead letters of NATS ingestion: list, show, replay.")
app.add_typer(replenish_app, name="replenish", help="Replenishment suggestions, decisions, suppliers, data health.")
app.add_typer(alerts_app, name="alerts", help="Alerts: list, show, acknowledge, close.")
app.add_typer(reconcile_app, name="reconcile", help="Reconciliation, proposed adjustments, shelf counts, expiry sweep.")
app.add_typer(transfers_app, name="transfers", help="Transfers between sites under their approval flow.")
app.command("count")(health.count)
app.command("open")(health.open_lot)
app.add_typer(holds_app, name="holds", help="Holds of a running engine: list them by pair, site, state and expiry.")
app.add_typer(finance_app, name="finance", help="Vouchers at each business event: review, post, trace, value, export.")
