"""`lotwise alerts …`: alerts of a running engine (lotwise.v1.Alerts), as the caller's
grants let them see them.

    lotwise alerts list [--kind K]… [--state S]… [--site SITE] [--min-severity SEV] [--limit N]
    lotwise alerts show ALERT_ID
    lotwise alerts ack ALERT_ID [--note TEXT]        opened → acknowledged (someone is on it)
    lotwise alerts close ALERT_ID [--note TEXT]      → closed

Exit codes as for every client command: 2 bad usage, 1 the engine refused (unknown alert,
closed already, no grant), 3 the engine could not be reached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from engine.cli.common import (
    DEFAULT_TARGET,
    FormatOpt,
    OutputFormat,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _out,
    check_range,
    emit,
    show_table,
    with_client,
)

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.api.gen.lotwise.v1 import alerts_pb2 as apb

alerts_app = typer.Typer(
    name="alerts",
    help="Alerts: list what needs a person, acknowledge it, close it.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_R = TypeVar("_R")
ALERT_FIELDS = (
    "alert_id",
    "kind",
    "severity",
    "state",
    "site",
    "bin",
    "sku",
    "lot_id",
    "count",
    "opened_at_ms",
    "last_seen_ms",
    "summary",
    "evidence",
    "acknowledged_by",
    "closed_by",
)


async def call(client: LotwiseClient, stub_of: Callable[[Any], Any], method: str, request: Any) -> Any:
    """A raw stub call with the client's token; a refusal comes back as the typed error."""
    import grpc

    from engine.api.errors import from_rpc_error

    stub = stub_of(client.channel)
    try:
        return await getattr(stub, method)(request, metadata=client.metadata, timeout=client._timeout_s)
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None


def alerts_call(method: str, request: Any) -> Callable[[LotwiseClient], Awaitable[Any]]:
    from engine.api.gen.lotwise.v1 import alerts_pb2_grpc

    return lambda c: call(c, alerts_pb2_grpc.AlertsStub, method, request)


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "—"


def record(a: apb.Alert) -> dict[str, str | int]:
    return {
        "alert_id": a.alert_id,
        "kind": a.kind,
        "severity": a.severity,
        "state": a.state,
        "site": a.scope.site,
        "bin": a.scope.bin,
        "sku": a.scope.sku,
        "lot_id": a.scope.lot_id,
        "count": a.count,
        "opened_at_ms": a.opened_at_ms,
        "last_seen_ms": a.last_seen_ms,
        "summary": a.summary,
        "evidence": " ".join(a.evidence),
        "acknowledged_by": a.acknowledged_by,
        "closed_by": a.closed_by,
    }


def _show(alerts: list[apb.Alert], fmt: OutputFormat, title: str) -> None:
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [record(a) for a in alerts], ALERT_FIELDS)
        return
    table = Table(title=title, title_justify="left")
    for name in ("alert id", "kind", "severity", "state", "where", "count", "last seen (UTC)", "summary"):
        table.add_column(name, justify="right" if name == "count" else "left", no_wrap=name != "summary")
    for a in alerts:
        s = a.scope
        where = " ".join(x for x in (s.site, s.bin and f"bin {s.bin}", s.sku, s.lot_id and f"lot {s.lot_id}") if x)
        table.add_row(
            a.alert_id, a.kind, a.severity, a.state, where or "engine", str(a.count), stamp(a.last_seen_ms), a.summary
        )
    show_table(_out(), table)


@alerts_app.command("list")
def list_(
    kind: Annotated[list[str] | None, typer.Option("--kind", "-k", help="Only this kind (repeatable).")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", "-s", help="Only this state (repeatable).")] = None,
    site: Annotated[str, typer.Option("--site", help="Only alerts at this site.")] = "",
    min_severity: Annotated[str, typer.Option("--min-severity", help="info, warning or critical.")] = "",
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many (1..1000).")] = 100,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Alerts you may see, newest first: kind, severity, state, where, how often, why."""
    from engine.api.gen.lotwise.v1 import alerts_pb2 as apb

    check_range("--limit", limit, 1, 1_000)
    request = apb.ListAlertsRequest(
        kinds=kind or [], states=state or [], site=site, min_severity=min_severity, limit=limit
    )
    reply = with_client(target, timeout, alerts_call("ListAlerts", request))
    _show(list(reply.alerts), fmt, f"{len(reply.alerts)} alerts")


AlertIdArg = Annotated[str, typer.Argument(help="The alert's id (from `lotwise alerts list`).")]
NoteOpt = Annotated[str, typer.Option("--note", help="What you did or why (kept with the alert).")]


@alerts_app.command("show")
def show(
    alert_id: AlertIdArg,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """One alert with its evidence (the movements, snapshots, tasks or dead letters behind it)."""
    from engine.api.gen.lotwise.v1 import alerts_pb2 as apb

    reply = with_client(target, timeout, alerts_call("GetAlert", apb.GetAlertRequest(alert_id=alert_id)))
    _show([reply.alert], fmt, f"alert {alert_id}")
    if fmt is OutputFormat.TABLE:
        _out().print("evidence: " + (", ".join(reply.alert.evidence) or "—"), soft_wrap=True)


@alerts_app.command("ack")
def ack(
    alert_id: AlertIdArg,
    note: NoteOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Acknowledge an alert: someone is on it (needs `count` at its site)."""
    from engine.api.gen.lotwise.v1 import alerts_pb2 as apb

    req = apb.AlertActionRequest(alert_id=alert_id, note=note)
    reply = with_client(target, timeout, alerts_call("AcknowledgeAlert", req))
    _show([reply.alert], fmt, f"acknowledged by {reply.alert.acknowledged_by or 'you'}")


@alerts_app.command("close")
def close(
    alert_id: AlertIdArg,
    note: NoteOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Close an alert (it opens again, counted, if its condition comes back)."""
    from engine.api.gen.lotwise.v1 import alerts_pb2 as apb

    req = apb.AlertActionRequest(alert_id=alert_id, note=note)
    reply = with_client(target, timeout, alerts_call("CloseAlert", req))
    _show([reply.alert], fmt, f"closed by {reply.alert.closed_by or 'you'}")
