"""`lotwise replenish …`: suggestions, decisions, suppliers and data health of a running
engine (lotwise.v1.Replenishment; docs/replenishment.md).

    lotwise replenish list [--site S] [--sku S] [--flagged] [--open]    suggestions, newest version each
    lotwise replenish explain SKU SITE                                  the key-parameter panel and rule trace
    lotwise replenish accept SKU SITE --version N                       order what is proposed
    lotwise replenish reject SKU SITE --version N --reason TEXT         order nothing
    lotwise replenish override SKU SITE --version N --qty Q --reason T  order another quantity
    lotwise replenish adoption                                          acceptance / override rates
    lotwise replenish suppliers [--site S]                              designated suppliers and terms
    lotwise replenish set-supplier SKU SITE SUPPLIER [--moq …]          put one pair's supplier terms
    lotwise replenish factors FILE.json                                 put outside factors
    lotwise replenish health [--site S] [--sku S]                       data health over 12 months
    lotwise replenish recompute                                         recompute every pair now

Exit codes as for every client command: 2 bad usage, 1 the engine refused, 3 unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

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
    emit_object,
    fail,
    show_table,
    with_client,
)

if TYPE_CHECKING:
    from engine.api.client import LotwiseClient
    from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb

replenish_app = typer.Typer(
    name="replenish",
    help="Replenishment suggestions with their panel, planners' decisions, suppliers, data health.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_T = TypeVar("_T")
MAX_PAGE = 500
MAX_SUPPLIER_PAGES = 200  # `suppliers` follows at most this many pages (100,000 assignments)


def _call(target: str, timeout_s: float, work: Callable[[Any, Sequence[tuple[str, str]]], Awaitable[_T]]) -> _T:
    """Run `work(stub, metadata)` on a client's channel; refusals typed as everywhere."""

    async def go(client: LotwiseClient) -> _T:
        import grpc

        from engine.api.errors import RemoteError, from_rpc_error
        from engine.api.gen.lotwise.v1 import replenishment_pb2_grpc as rpb_grpc

        stub = rpb_grpc.ReplenishmentStub(client.channel)
        try:
            return await work(stub, tuple(client.metadata))
        except grpc.aio.AioRpcError as err:
            if err.code() is grpc.StatusCode.UNIMPLEMENTED:
                raise RemoteError(err.code(), "this engine does not serve lotwise.v1.Replenishment") from err
            raise from_rpc_error(err) from err

    return with_client(target, timeout_s, go)


def _pb() -> Any:
    from engine.api.gen.lotwise.v1 import replenishment_pb2

    return replenishment_pb2


def suggestion_record(s: rpb.Suggestion) -> dict[str, Any]:
    p = s.panel
    return {
        "sku": s.sku,
        "site": s.site,
        "version": s.version,
        "state": s.state,
        "qty": s.qty,
        "decided_qty": s.decided_qty,
        "flagged": s.flagged,
        "below_reorder_point": s.below_reorder_point,
        "supplier": s.supplier,
        "daily_demand": round(p.daily_demand, 3),
        "safety_stock": round(p.safety_stock, 2),
        "reorder_point": round(p.reorder_point, 2),
        "order_up_to": round(p.order_up_to, 2),
        "inventory_position": p.inventory_position,
        "decided_by": s.decided_by,
        "reason": s.reason,
        "trigger": s.trigger,
    }


def _check_pair(sku: str, site: str) -> None:
    check_id("SKU", sku)
    check_id("SITE", site)


# ---- list / explain -------------------------------------------------------------------


@replenish_app.command("list")
def list_(
    site: Annotated[str, typer.Option("--site", help="Only this site.")] = "",
    sku: Annotated[str, typer.Option("--sku", help="Only this sku.")] = "",
    org: Annotated[str, typer.Option("--org", help="Only sites under this org node.")] = "",
    flagged: Annotated[bool, typer.Option("--flagged", help="Only suggestions flagged by data health.")] = False,
    open_only: Annotated[bool, typer.Option("--open", help="Only suggestions waiting for a decision.")] = False,
    limit: Annotated[int, typer.Option("--limit", help=f"At most this many (1..{MAX_PAGE}).")] = 100,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Suggestions the caller may read, by site then sku: what to order and why in one line."""
    if site:
        check_id("--site", site)
    if sku:
        check_id("--sku", sku)
    check_range("--limit", limit, 1, MAX_PAGE)
    pb = _pb()
    request = pb.ListSuggestionsRequest(
        site=site, sku=sku, org_prefix=org, flagged_only=flagged, open_only=open_only, page_size=limit
    )
    reply = _call(target, timeout, lambda stub, md: stub.ListSuggestions(request, metadata=md, timeout=timeout))
    records = [suggestion_record(s) for s in reply.suggestions]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    table = Table(title=f"{len(records)} suggestion(s)")
    for name in ("site", "sku", "ver", "state", "qty", "ROP", "SS", "IP", "d/day", "supplier", "flags"):
        table.add_column(name, justify="right" if name in ("ver", "qty", "ROP", "SS", "IP", "d/day") else "left")
    for s in reply.suggestions:
        p = s.panel
        table.add_row(
            s.site,
            s.sku,
            str(s.version),
            s.state,
            f"[bold]{s.qty}[/]" if s.state == "open" else str(s.decided_qty or s.qty),
            f"{p.reorder_point:.1f}",
            f"{p.safety_stock:.1f}",
            str(p.inventory_position),
            f"{p.daily_demand:.2f}",
            s.supplier or "—",
            "[yellow]flagged[/]" if s.flagged else "",
        )
    show_table(_out(), table)


def _panel_lines(s: rpb.Suggestion) -> list[tuple[str, str]]:
    p = s.panel
    leads = ", ".join(f"{lt.days:g} d" for lt in p.lead_times) or "none (default)"
    factors = ", ".join(f"{f.kind} ×{f.multiplier:g} ({f.source})" for f in p.factors) or "none"
    return [
        ("demand 7 / 14 / 30 d", f"{p.mean_7d:.2f} / {p.mean_14d:.2f} / {p.mean_30d:.2f} per day"),
        ("daily demand", f"{p.daily_demand:.3f} ({p.method}, {p.demand_class or 'n/a'})"),
        ("× factors × buffer", f"× {p.factor_multiplier:.3f} × {p.buffer:g} = {p.demand_rate:.3f} per day"),
        ("censored days", str(p.censored_days)),
        ("last lead times", leads),
        ("lead time", f"{p.lead_time_days:.2f} d ± {p.lead_time_sigma_days:.2f}, review {p.review_days:g} d"),
        ("factors", factors),
        ("service level", f"{p.service_level:.1%} (z {p.z:.3f})"),
        ("σ lead-time demand", f"{p.sigma_ltd:.2f}"),
        ("safety stock", f"{p.safety_stock:.2f}"),
        ("reorder point", f"{p.reorder_point:.2f}"),
        ("order up to", f"{p.order_up_to:.2f}"),
        ("on hand / held", f"{p.on_hand} / {p.held}"),
        ("in transit (counted / beyond)", f"{p.in_transit_within} / {p.in_transit_beyond}"),
        ("open purchase to-dos", str(p.open_todos)),
        ("inventory position", str(p.inventory_position)),
        ("MOQ / multiple", f"{p.moq} / {p.multiple}"),
        ("raw → final qty", f"{p.raw_qty} → {p.final_qty}"),
        ("coverage", f"{p.coverage_days:.1f} days"),
        ("data health", "; ".join(p.health_flags) or "ok"),
        *([("why nothing", p.reason)] if p.reason else []),
    ]


@replenish_app.command("explain")
def explain(
    sku: Annotated[str, typer.Argument(help="The sku.")],
    site: Annotated[str, typer.Argument(help="The site.")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """The suggestion's whole key-parameter panel and the rules that shaped it."""
    _check_pair(sku, site)
    request = _pb().SuggestionRef(sku=sku, site=site)
    s = _call(
        target, timeout, lambda stub, md: stub.ExplainSuggestion(request, metadata=md, timeout=timeout)
    ).suggestion
    trace = [
        {"rule": t.rule, "kind": t.kind, "field": t.field, "before": t.before, "after": t.after, "note": t.note}
        for t in s.trace
    ]
    if fmt is not OutputFormat.TABLE:
        panel = {k: v for k, v in _panel_lines(s)}
        emit_object(fmt, {**suggestion_record(s), "panel": panel}, {"trace": trace})
        return
    out = _out()
    state = f"[bold]{s.state}[/]" + (" [yellow](flagged: nothing is sent automatically)[/]" if s.flagged else "")
    out.print(f"[bold]{s.sku} @ {s.site}[/] version {s.version}: {state}, order [bold green]{s.qty}[/]")
    block = Table(show_header=False, box=None, pad_edge=False)
    block.add_column("parameter", style="cyan", no_wrap=True)
    block.add_column("value")
    for name, value in _panel_lines(s):
        block.add_row(name, value)
    out.print(block)
    if trace:
        table = Table(title="rule trace")
        for name in ("rule", "kind", "field", "before", "after", "note"):
            table.add_column(name, justify="right" if name in ("before", "after") else "left")
        for t in trace:
            table.add_row(*(str(t[k]) for k in ("rule", "kind", "field", "before", "after", "note")))
        show_table(out, table)


# ---- decisions ------------------------------------------------------------------------

VersionOpt = Annotated[int, typer.Option("--version", "-v", help="The version being decided (see `list`).")]


def _decided(fmt: OutputFormat, reply: Any) -> None:
    s = reply.suggestion
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [suggestion_record(s)])
        return
    _out().print(f"{s.sku} @ {s.site} version {s.version}: [bold]{s.state}[/] by {s.decided_by}, qty {s.decided_qty}")


@replenish_app.command("accept")
def accept(
    sku: Annotated[str, typer.Argument(help="The sku.")],
    site: Annotated[str, typer.Argument(help="The site.")],
    version: VersionOpt,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Accept a suggestion: RFQ to the supplier, a purchase to-do, the keeper alerted."""
    _check_pair(sku, site)
    check_range("--version", version, 1, 2**62)
    request = _pb().DecideSuggestionRequest(sku=sku, site=site, version=version)
    _decided(fmt, _call(target, timeout, lambda stub, md: stub.AcceptSuggestion(request, metadata=md, timeout=timeout)))


@replenish_app.command("reject")
def reject(
    sku: Annotated[str, typer.Argument(help="The sku.")],
    site: Annotated[str, typer.Argument(help="The site.")],
    version: VersionOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Reject a suggestion with a reason: nothing is ordered."""
    _check_pair(sku, site)
    check_range("--version", version, 1, 2**62)
    if not reason.strip():
        fail("--reason: say why the suggestion is rejected", EXIT_CONFIG)
    request = _pb().DecideSuggestionRequest(sku=sku, site=site, version=version, reason=reason)
    _decided(fmt, _call(target, timeout, lambda stub, md: stub.RejectSuggestion(request, metadata=md, timeout=timeout)))


@replenish_app.command("override")
def override(
    sku: Annotated[str, typer.Argument(help="The sku.")],
    site: Annotated[str, typer.Argument(help="The site.")],
    version: VersionOpt,
    qty: Annotated[int, typer.Option("--qty", help="The quantity to order instead (> 0).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Order another quantity than suggested, with a reason."""
    _check_pair(sku, site)
    check_range("--version", version, 1, 2**62)
    check_range("--qty", qty, 1, 10**12)
    if not reason.strip():
        fail("--reason: say why the quantity is overridden", EXIT_CONFIG)
    request = _pb().OverrideSuggestionRequest(sku=sku, site=site, version=version, qty=qty, reason=reason)
    _decided(
        fmt, _call(target, timeout, lambda stub, md: stub.OverrideSuggestion(request, metadata=md, timeout=timeout))
    )


@replenish_app.command("adoption")
def adoption(
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """How often suggestions are accepted, overridden or rejected, per planner and per rule."""
    request = _pb().GetAdoptionRequest()
    reply = _call(target, timeout, lambda stub, md: stub.GetAdoption(request, metadata=md, timeout=timeout))
    rows = [("planner", r) for r in reply.by_planner] + [("rule", r) for r in reply.by_rule] + [("total", reply.total)]
    records = [
        {
            "by": by,
            "key": r.key,
            "decided": r.decided,
            "accepted": r.accepted,
            "overridden": r.overridden,
            "rejected": r.rejected,
            "acceptance_rate": round(r.acceptance_rate, 4),
            "override_rate": round(r.override_rate, 4),
        }
        for by, r in rows
    ]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    table = Table(title="adoption")
    for name in records[0]:
        table.add_column(name, justify="left" if name in ("by", "key") else "right")
    for r in records:
        table.add_row(*(f"{v:.1%}" if isinstance(v, float) else str(v) for v in r.values()))
    show_table(_out(), table)


# ---- suppliers and factors ------------------------------------------------------------


def supplier_record(t: rpb.Supplier) -> dict[str, Any]:
    return {
        "sku": t.sku,
        "site": t.site,
        "supplier": t.supplier,
        "moq": t.moq,
        "multiple": t.multiple,
        "order_weekdays": " ".join(str(d) for d in t.order_weekdays),
        "lead_times_days": " ".join(f"{lt.days:g}" for lt in t.lead_times),
        "auto_order": t.auto_order,
        "keeper": t.keeper,
        "shelf_life_days": t.shelf_life_days,
        "stated_lead_time_days": t.stated_lead_time_days,
    }


@replenish_app.command("suppliers")
def suppliers(
    site: Annotated[str, typer.Option("--site", help="Only this site.")] = "",
    supplier: Annotated[str, typer.Option("--supplier", help="Only this supplier.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Designated suppliers per (sku, site): MOQ, multiple, order days, lead-time history."""
    pb = _pb()

    async def every_page(stub: Any, md: Sequence[tuple[str, str]]) -> list[Any]:
        found: list[Any] = []
        token = ""
        for _ in range(MAX_SUPPLIER_PAGES):  # bounded: the listing pages by cursor
            request = pb.ListSuppliersRequest(site=site, supplier=supplier, page_size=MAX_PAGE, page_token=token)
            reply = await stub.ListSuppliers(request, metadata=md, timeout=timeout)
            found.extend(reply.suppliers)
            token = reply.next_page_token
            if not token:
                break
        return found

    records = [supplier_record(t) for t in _call(target, timeout, every_page)]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    table = Table(title=f"{len(records)} supplier assignment(s)")
    names = ("site", "sku", "supplier", "moq", "multiple", "order_weekdays", "lead_times_days", "auto_order", "keeper")
    for name in names:
        table.add_column(name)
    for r in records:
        table.add_row(*(str(r[k]) for k in names))
    show_table(_out(), table)


@replenish_app.command("set-supplier")
def set_supplier(
    sku: Annotated[str, typer.Argument(help="The sku.")],
    site: Annotated[str, typer.Argument(help="The site.")],
    supplier: Annotated[str, typer.Argument(help="The designated supplier's id.")],
    moq: Annotated[int, typer.Option("--moq", help="Minimum order quantity.")] = 0,
    multiple: Annotated[int, typer.Option("--multiple", help="Order multiple (1: any).")] = 1,
    lead_time: Annotated[
        list[float] | None, typer.Option("--lead-time", help="A receipt's lead time in days, newest first (repeat).")
    ] = None,
    weekday: Annotated[list[int] | None, typer.Option("--weekday", help="Order day 0=Mon..6=Sun (repeat).")] = None,
    auto_order: Annotated[
        bool, typer.Option("--auto-order", help="Act without a planner when data is healthy.")
    ] = False,
    keeper: Annotated[str, typer.Option("--keeper", help="The site's warehouse keeper to alert.")] = "",
    shelf_life_days: Annotated[int, typer.Option("--shelf-life-days", help="0: does not expire.")] = 0,
    stated_lead_time: Annotated[
        float, typer.Option("--stated-lead-time", help="Days the supplier quotes (0: none); receipts shrink to it.")
    ] = 0.0,
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Put one pair's designated supplier and terms (admin)."""
    _check_pair(sku, site)
    check_id("SUPPLIER", supplier)
    pb = _pb()
    terms = pb.Supplier(
        sku=sku,
        site=site,
        supplier=supplier,
        moq=moq,
        multiple=multiple,
        order_weekdays=list(weekday or ()),
        lead_times=[pb.LeadTime(days=d, received_at_ms=0) for d in lead_time or ()],
        auto_order=auto_order,
        keeper=keeper,
        shelf_life_days=shelf_life_days,
        stated_lead_time_days=stated_lead_time,
    )
    request = pb.PutSupplierRequest(supplier=terms)
    reply = _call(target, timeout, lambda stub, md: stub.PutSupplier(request, metadata=md, timeout=timeout))
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [supplier_record(reply.supplier)])
        return
    _out().print(f"{sku} @ {site}: supplier [bold]{reply.supplier.supplier}[/] stored")


@replenish_app.command("factors")
def factors(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON array of factors (factor_id, kind, sku, site, from_day, to_day, multiplier, source)."
        ),
    ],
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Put outside factors (promotion, weather, footfall, event) from a JSON file (admin)."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{file}: cannot read it as JSON: {exc}", EXIT_CONFIG)
    if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
        fail(f"{file}: must hold a JSON array of factor objects", EXIT_CONFIG)
    pb = _pb()
    try:
        request = pb.PutFactorsRequest(factors=[pb.Factor(**f) for f in raw])
    except (TypeError, ValueError) as exc:
        fail(f"{file}: {exc}", EXIT_CONFIG)
    reply = _call(target, timeout, lambda stub, md: stub.PutFactors(request, metadata=md, timeout=timeout))
    _out().print(f"{reply.stored} factor(s) stored")


# ---- health and recompute -------------------------------------------------------------


@replenish_app.command("health")
def health(
    site: Annotated[str, typer.Option("--site", help="Only this site.")] = "",
    sku: Annotated[str, typer.Option("--sku", help="Only this sku.")] = "",
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Data health per (site, sku) over 12 months; below a threshold suggestions are flagged."""
    if site:
        check_id("--site", site)
    if sku:
        check_id("--sku", sku)
    request = _pb().GetDataHealthRequest(site=site, sku=sku)
    reply = _call(target, timeout, lambda stub, md: stub.GetDataHealth(request, metadata=md, timeout=timeout))
    records = [
        {
            "site": h.site,
            "sku": h.sku,
            "completeness": round(h.completeness, 4),
            "returns_matched": round(h.returns_matched_ratio, 4),
            "lots_missing_expiry": h.lots_missing_expiry,
            "gifts_without_tax": h.gifts_without_tax,
            "ok": h.ok,
            "problems": "; ".join(h.problems),
        }
        for h in reply.pairs
    ]
    if fmt is not OutputFormat.TABLE:
        emit(fmt, records)
        return
    table = Table(
        title=f"data health (completeness ≥ {reply.min_completeness:.1%}, "
        f"returns matched ≥ {reply.min_returns_matched:.1%})"
    )
    for name in ("site", "sku", "completeness", "returns matched", "no expiry", "gifts w/o tax", "health"):
        table.add_column(name)
    for r in records:
        table.add_row(
            str(r["site"]),
            str(r["sku"]),
            f"{r['completeness']:.1%}",
            f"{r['returns_matched']:.1%}",
            str(r["lots_missing_expiry"]),
            str(r["gifts_without_tax"]),
            "[green]ok[/]" if r["ok"] else f"[yellow]{r['problems']}[/]",
        )
    show_table(_out(), table)


@replenish_app.command("recompute")
def recompute(
    fmt: FormatOpt = OutputFormat.TABLE,
    target: TargetOpt = DEFAULT_TARGET,
    token_file: TokenFileOpt = None,
    timeout: TimeoutOpt = 120.0,
) -> None:
    """Recompute every pair now (admin); the schedule does this on its own too."""
    request = _pb().RecomputeAllRequest()
    r = _call(target, timeout, lambda stub, md: stub.RecomputeAll(request, metadata=md, timeout=timeout))
    record = {
        "pairs": r.pairs,
        "suggestions_changed": r.suggestions_changed,
        "below_reorder_point": r.below_reorder_point,
        "duration_ms": r.duration_ms,
    }
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [record])
        return
    _out().print(
        f"{r.pairs} pair(s) recomputed in {r.duration_ms:.0f} ms: {r.suggestions_changed} changed, "
        f"{r.below_reorder_point} below their reorder point"
    )
