"""`lotwise reconcile …`: reconciliation, proposed adjustments, shelf counts and the expiry
sweep of a running engine (lotwise.v1.StockHealth).

    lotwise reconcile submit SNAPSHOT.json          a WMS/ERP snapshot (lotwise.stock_snapshot/1): its report
    lotwise reconcile report SNAPSHOT_ID            the stored report of a snapshot
    lotwise reconcile proposals [--site S] [--state proposed]
    lotwise reconcile approve PROPOSAL_ID [--note]  applies it through Adjust (another person than the proposer)
    lotwise reconcile reject PROPOSAL_ID [--note]
    lotwise reconcile shelf COUNTS.json             recogniser counts: out-of-stock / low-facing lists
    lotwise reconcile sweep                         run the expiry sweep now

Nothing here changes stock except `approve`. Exit codes: 2 bad usage (a file that does not
read), 1 the engine refused, 3 the engine could not be reached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from engine.cli.alerts import call
from engine.cli.common import (
    DEFAULT_TARGET,
    EXIT_CONFIG,
    FormatOpt,
    OutputFormat,
    TargetOpt,
    TimeoutOpt,
    TokenFileOpt,
    _out,
    emit,
    emit_object,
    fail,
    show_table,
    with_client,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from engine.api.client import LotwiseClient
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

reconcile_app = typer.Typer(
    name="reconcile",
    help="Reconciliation with WMS/ERP snapshots, proposed adjustments, shelf counts, the expiry sweep.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def health_call(method: str, request: Any) -> Callable[[LotwiseClient], Awaitable[Any]]:
    from engine.api.gen.lotwise.v1 import health_pb2_grpc

    return lambda c: call(c, health_pb2_grpc.StockHealthStub, method, request)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_CONFIG)
    except ValueError as exc:
        fail(f"{path} is not JSON: {exc}", EXIT_CONFIG)
    if not isinstance(raw, dict):
        fail(f"{path}: a JSON object is expected", EXIT_CONFIG)
    return raw


def _snapshot_request(raw: dict[str, Any], path: Path) -> hpb.SubmitStockSnapshotRequest:
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

    try:
        return hpb.SubmitStockSnapshotRequest(
            snapshot_id=str(raw["snapshot_id"]),
            source=str(raw["source"]),
            as_of_ms=int(raw["as_of_ms"]),
            lines=[hpb.SnapshotLine(**line) for line in raw["lines"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"{path}: not a lotwise.stock_snapshot/1 document ({exc!r})", EXIT_CONFIG)


DIFF_FIELDS = ("site", "sku", "lot_id", "bin", "status", "external_qty", "book_qty", "diff", "classification", "streak")


def _report(r: hpb.ReconciliationReport, fmt: OutputFormat) -> None:
    summary = {
        "snapshot_id": r.snapshot_id,
        "source": r.source,
        "as_of_ms": r.as_of_ms,
        "lines": r.lines,
        "matched": r.matched,
        "timing": r.timing,
        "within_tolerance": r.within_tolerance,
        "real": r.real,
        "record_accuracy": round(r.record_accuracy, 6),
        "value_at_risk": r.value_at_risk,
        "proposal_ids": " ".join(r.proposal_ids),
        "alert_ids": " ".join(r.alert_ids),
    }
    diffs = [{f: getattr(d, f) for f in DIFF_FIELDS} for d in r.differences]
    if fmt is not OutputFormat.TABLE:
        emit_object(fmt, summary, {"differences": diffs})
        return
    out = _out()
    out.print(
        f"snapshot {r.snapshot_id} from {r.source}: {r.lines} lines, {r.matched} match, {r.timing} timing, "
        f"{r.within_tolerance} within tolerance, {r.real} real; record accuracy {r.record_accuracy:.2%}",
        soft_wrap=True,
    )
    if diffs:
        table = Table(title="differences", title_justify="left")
        for name in DIFF_FIELDS:
            table.add_column(
                name, justify="right" if name in ("external_qty", "book_qty", "diff", "streak") else "left"
            )
        for d in diffs:
            table.add_row(*(str(d[f]) for f in DIFF_FIELDS))
        show_table(out, table)
    for pid in r.proposal_ids:
        out.print(f"proposed: {pid} (approve with `lotwise reconcile approve {pid}`)", soft_wrap=True)
    for aid in r.alert_ids:
        out.print(f"alert: {aid}", soft_wrap=True)


@reconcile_app.command("submit")
def submit(
    path: Annotated[Path, typer.Argument(help="A lotwise.stock_snapshot/1 JSON file.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Reconcile a WMS/ERP snapshot against the books as of its own instant."""
    request = _snapshot_request(_read_json(path), path)
    _report(with_client(target, timeout, health_call("SubmitStockSnapshot", request)), fmt)


@reconcile_app.command("report")
def report(
    snapshot_id: Annotated[str, typer.Argument(help="The snapshot's id.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """The stored report of a snapshot."""
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

    req = hpb.GetReconciliationReportRequest(snapshot_id=snapshot_id)
    _report(with_client(target, timeout, health_call("GetReconciliationReport", req)), fmt)


PROPOSAL_FIELDS = (
    "proposal_id",
    "state",
    "site",
    "sku",
    "lot_id",
    "bin",
    "status",
    "variance",
    "external_qty",
    "book_qty",
    "origin",
    "proposed_by",
    "decided_by",
)


def _proposals(items: list[hpb.Proposal], fmt: OutputFormat, title: str) -> None:
    records = [{f: getattr(p, f) for f in PROPOSAL_FIELDS} for p in items]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records, PROPOSAL_FIELDS)
        return
    table = Table(title=title, title_justify="left")
    for name in PROPOSAL_FIELDS:
        table.add_column(name, justify="right" if name in ("variance", "external_qty", "book_qty") else "left")
    for r in records:
        table.add_row(*(str(r[f]) for f in PROPOSAL_FIELDS))
    show_table(_out(), table)


@reconcile_app.command("proposals")
def proposals(
    site: Annotated[str, typer.Option("--site", help="Only proposals at this site.")] = "",
    state: Annotated[str, typer.Option("--state", help="proposed, approved or rejected.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Proposed adjustments you may see, newest first."""
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

    if state and state not in ("proposed", "approved", "rejected"):
        fail("--state must be proposed, approved or rejected", EXIT_CONFIG)
    reply = with_client(target, timeout, health_call("ListProposals", hpb.ListProposalsRequest(site=site, state=state)))
    _proposals(list(reply.proposals), fmt, f"{len(reply.proposals)} proposals")


ProposalArg = Annotated[str, typer.Argument(help="The proposal's id.")]
NoteOpt = Annotated[str, typer.Option("--note", help="Why (kept with the proposal).")]


@reconcile_app.command("approve")
def approve(
    proposal_id: ProposalArg,
    note: NoteOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Approve a proposed adjustment: it is applied through Adjust (needs `adjust`; not by its proposer)."""
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

    req = hpb.ProposalActionRequest(proposal_id=proposal_id, note=note)
    reply = with_client(target, timeout, health_call("ApproveAdjustment", req))
    _proposals([reply.proposal], fmt, "approved and applied")


@reconcile_app.command("reject")
def reject(
    proposal_id: ProposalArg,
    note: NoteOpt = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Reject a proposed adjustment: stock stays as it is."""
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

    req = hpb.ProposalActionRequest(proposal_id=proposal_id, note=note)
    reply = with_client(target, timeout, health_call("RejectAdjustment", req))
    _proposals([reply.proposal], fmt, "rejected")


SHELF_FIELDS = ("list", "site", "bin", "sku", "counted", "book_qty", "confidence")


@reconcile_app.command("shelf")
def shelf(
    path: Annotated[
        Path, typer.Argument(help='JSON: {"count_id", "source", "counts": [{site, bin, sku, counted, confidence}]}')
    ],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Shelf counts from a recogniser: out-of-stock and low-facing lists; never a stock change."""
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

    raw = _read_json(path)
    try:
        req = hpb.SubmitShelfCountsRequest(
            count_id=str(raw["count_id"]),
            source=str(raw["source"]),
            counts=[hpb.ShelfCount(**c) for c in raw["counts"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        fail(f"{path}: not a shelf-count document ({exc!r})", EXIT_CONFIG)
    reply = with_client(target, timeout, health_call("SubmitShelfCounts", req))
    rows = [
        {
            "list": name,
            "site": x.site,
            "bin": x.bin,
            "sku": x.sku,
            "counted": x.counted,
            "book_qty": x.book_qty,
            "confidence": x.confidence,
        }
        for name, items in (
            ("out_of_stock", reply.out_of_stock),
            ("low_facing", reply.low_facing),
            ("unconfirmed", reply.unconfirmed),
        )
        for x in items
    ]
    if fmt is not OutputFormat.TABLE:
        emit_object(fmt, {"proposal_ids": " ".join(reply.proposal_ids)}, {"lines": rows})
        return
    table = Table(title=f"{len(rows)} lines; {len(reply.proposal_ids)} proposals", title_justify="left")
    for name in SHELF_FIELDS:
        table.add_column(name)
    for r in rows:
        table.add_row(*(str(r[f]) for f in SHELF_FIELDS))
    show_table(_out(), table)


@reconcile_app.command("sweep")
def sweep(
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 60.0,
) -> None:
    """Run the expiry sweep now (idempotent): promotion tasks and status moves the rules call for."""
    from engine.api.gen.lotwise.v1 import health_pb2 as hpb

    r = with_client(target, timeout, health_call("RunExpirySweep", hpb.RunExpirySweepRequest()))
    record = {
        "rows": r.rows,
        "promotion_tasks": r.promotion_tasks,
        "status_moves": r.status_moves,
        "refused": r.refused,
        "timers": r.timers,
    }
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [record])
        return
    _out().print(
        f"looked at {r.rows} rows: {r.promotion_tasks} promotion tasks, {r.status_moves} status moves, "
        f"{r.refused} refused (retried next time); {r.timers} timers scheduled",
        soft_wrap=True,
    )
