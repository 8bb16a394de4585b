"""Protobuf ↔ domain values, both directions, for the servicer and the client.

proto → domain checks what only the wire can get wrong (enum numbers the schema does not
know, missing sub-messages, NaN floats, unbounded lists) and names the offending field by
its request path (`lines[2].strategy`), collecting every violation before refusing. The
domain's own `validate()` still checks ids, quantities, statuses and owners afterwards,
so there is one source of truth for those rules.

Proto3 has no presence for scalars, so "" / 0 mean "not set"; the defaults applied here
are the ones the .proto documents (status "receiving" on receipt, owner "own", ...).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter, SliceRow
from engine.domain.commands import (
    CONSUME_DESTINATIONS,
    MAX_DEVICE_OPS,
    NO_PREV_SEQ,
    RECEIVE_SOURCES,
    Adjust,
    Adjusted,
    ChangeStatus,
    Consume,
    Consumed,
    Count,
    Counted,
    CountLine,
    CountSource,
    DeviceCommand,
    DeviceOp,
    DeviceOpDone,
    ExpireLots,
    HoldCut,
    LotCount,
    LotOpened,
    LotsExpired,
    Move,
    Moved,
    OpenLot,
    Receive,
    Received,
    ReserveLine,
    ScrapOverAge,
    Scrapped,
    StatusChanged,
    Strategy,
    check_bin,
    check_id,
    check_owner,
    derived_id,
)
from engine.domain.errors import FieldViolation, InvalidArgument
from engine.domain.hold_listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, HoldFilter, ScanHolds, check_page_size
from engine.domain.holds import MAX_LINES
from engine.domain.inventory import MAX_STOCK_PAGE, CommitLine, StockKey, StockQuery, StockRow
from engine.domain.model import Allocation, External, Finance, HoldState, HoldView
from engine.domain.statuses import DEFAULT_DICTIONARY, Role, StatusDictionary
from engine.runtime.types import AggregateState, Availability, HoldLine, HoldSummary

DEFAULT_QUERY_LIMIT = 10_000
MAX_QUERY_KEYS = 10_000  # skus / sites listed in one QueryStock; bounds the request's fan-out
MAX_FILTER_STATUSES = 64

STRATEGY_TO_PB: dict[Strategy, pb.RemovalStrategy] = {
    Strategy.FEFO: pb.REMOVAL_STRATEGY_FEFO,
    Strategy.FIFO: pb.REMOVAL_STRATEGY_FIFO,
    Strategy.LIFO: pb.REMOVAL_STRATEGY_LIFO,
    Strategy.LOT: pb.REMOVAL_STRATEGY_LOT,
}
STRATEGY_FROM_PB: dict[int, Strategy] = {v: k for k, v in STRATEGY_TO_PB.items()}

DIMENSION_TO_PB: dict[Dimension, pb.Dimension] = {
    Dimension.BIN: pb.DIMENSION_BIN,
    Dimension.STATUS: pb.DIMENSION_STATUS,
    Dimension.OWNER: pb.DIMENSION_OWNER,
    Dimension.LOT: pb.DIMENSION_LOT,
    Dimension.EXPIRY_DAY: pb.DIMENSION_EXPIRY_DAY,
    Dimension.RECEIVED_DAY: pb.DIMENSION_RECEIVED_DAY,
}
DIMENSION_FROM_PB: dict[int, Dimension] = {v: k for k, v in DIMENSION_TO_PB.items()}

# HoldState (a part) and AggregateState (a whole hold) share their string values.
_STATE_TO_PB: dict[str, pb.HoldState] = {
    "active": pb.HOLD_STATE_ACTIVE,
    "committed": pb.HOLD_STATE_COMMITTED,
    "released": pb.HOLD_STATE_RELEASED,
    "expired": pb.HOLD_STATE_EXPIRED,
    "partial": pb.HOLD_STATE_PARTIAL,
}
_STATE_FROM_PB: dict[int, str] = {v: k for k, v in _STATE_TO_PB.items()}


class Violations:
    """Collects field violations so one answer lists every problem of a request."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


# =====================================================================================
# Server side: requests (proto → domain)
# =====================================================================================


def sku_from_pb(msg: pb.Sku) -> Sku:
    return Sku(
        sku=msg.sku,
        name=msg.name,
        unit=msg.unit or "ea",
        opened_shelf_life_days=msg.opened_shelf_life_days,
        opened_shelf_life_hours=msg.opened_shelf_life_hours,
        substitutes=tuple(msg.substitutes),
    )


def site_from_pb(msg: pb.Site) -> Site:
    return Site(site=msg.site, org_path=msg.org_path, kind=msg.kind or "warehouse", name=msg.name)


def put_sku_from_pb(req: pb.PutSkuRequest) -> Sku:
    v = Violations()
    _optional_id(req.request_id, "request_id", v)
    if not req.HasField("sku"):
        v.add("sku", "is required")
    v.raise_if_any()
    return sku_from_pb(req.sku)


def put_site_from_pb(req: pb.PutSiteRequest) -> Site:
    v = Violations()
    _optional_id(req.request_id, "request_id", v)
    if not req.HasField("site"):
        v.add("site", "is required")
    v.raise_if_any()
    return site_from_pb(req.site)


class _WithFinance(Protocol):
    """A request message with a `finance` field (every stock and hold command)."""

    @property
    def finance(self) -> pb.Finance: ...

    def HasField(self, field_name: str) -> bool: ...


def finance_from_pb(req: _WithFinance) -> Finance | None:
    """The request's financial context, as written; None when absent or empty, so both
    mean the same command (a retry that drops an empty message still matches)."""
    if not req.HasField("finance"):
        return None
    msg = req.finance
    finance = Finance(
        msg.currency,
        msg.unit_cost,
        msg.unit_price,
        msg.tax_rate,
        msg.terms,
        customer_tier=msg.customer_tier,
        sales_channel=msg.sales_channel,
        tax_attribute=msg.tax_attribute,
        gift=msg.gift,
        return_of=msg.return_of,
        to_site=msg.to_site,
        to_company=msg.to_company,
    )
    return None if finance == Finance() else finance


def _external(value: str, field: str, allowed: tuple[External, ...], v: Violations) -> External:
    """An external bucket by its name ("@customer"); "" is the first of `allowed` (the
    default). Whether the bucket fits the command is the domain's check."""
    if not value:
        return allowed[0]
    try:
        return External(value)
    except ValueError:
        v.add(field, f"must be one of {', '.join(e.value for e in allowed)}")
        return allowed[0]


def receive_from_pb(req: pb.ReceiveRequest) -> Receive:
    v = Violations()
    source = _external(req.source, "source", RECEIVE_SOURCES, v)
    v.raise_if_any()
    return Receive(
        request_id=req.request_id,
        sku=req.sku,
        site=req.site,
        lot_id=req.lot_id,
        qty=req.qty,
        bin=req.bin,
        status=req.status or DEFAULT_DICTIONARY.role(Role.RECEIPT),
        owner=req.owner or "own",
        expires_at_ms=req.expires_at_ms,
        received_at_ms=req.received_at_ms,
        opened_at_ms=req.opened_at_ms,
        doc_ref=req.doc_ref,
        source=source,
        finance=finance_from_pb(req),
    )


def move_from_pb(req: pb.MoveRequest) -> Move:
    return Move(
        request_id=req.request_id,
        sku=req.sku,
        site=req.site,
        lot_id=req.lot_id,
        qty=req.qty,
        from_bin=req.from_bin,
        to_bin=req.to_bin,
        status=req.status or DEFAULT_DICTIONARY.role(Role.READY),
        owner=req.owner or "own",
        doc_ref=req.doc_ref,
        finance=finance_from_pb(req),
    )


def change_status_from_pb(req: pb.ChangeStatusRequest) -> ChangeStatus:
    return ChangeStatus(
        request_id=req.request_id,
        sku=req.sku,
        site=req.site,
        lot_id=req.lot_id,
        qty=req.qty,
        from_status=req.from_status,
        to_status=req.to_status,
        bin=req.bin,
        owner=req.owner or "own",
        doc_ref=req.doc_ref,
        finance=finance_from_pb(req),
    )


def consume_from_pb(req: pb.ConsumeRequest) -> Consume:
    v = Violations()
    strategy = _strategy(req.strategy, "strategy", v)
    destination = _external(req.destination, "destination", CONSUME_DESTINATIONS, v)
    v.raise_if_any()
    return Consume(
        request_id=req.request_id,
        sku=req.sku,
        site=req.site,
        qty=req.qty,
        lot_id=req.lot_id,
        bin_prefix=req.bin_prefix,
        owner=req.owner,
        strategy=strategy,
        doc_ref=req.doc_ref,
        destination=destination,
        status=req.status,
        finance=finance_from_pb(req),
    )


def adjust_from_pb(req: pb.AdjustRequest) -> Adjust:
    return Adjust(
        request_id=req.request_id,
        sku=req.sku,
        site=req.site,
        lot_id=req.lot_id,
        counted_qty=req.counted_qty,
        bin=req.bin,
        status=req.status or DEFAULT_DICTIONARY.role(Role.READY),
        owner=req.owner or "own",
        reason=req.reason or "count",
        doc_ref=req.doc_ref,
        finance=finance_from_pb(req),
        delta_qty=req.delta_qty,
    )


COUNT_SOURCE_FROM_PB: dict[int, CountSource] = {
    pb.COUNT_SOURCE_CYCLE: CountSource.CYCLE,
    pb.COUNT_SOURCE_RFID: CountSource.RFID,
    pb.COUNT_SOURCE_RECOGNISER: CountSource.RECOGNISER,
}
COUNT_SOURCE_TO_PB: dict[CountSource, pb.CountSource] = {
    CountSource.CYCLE: pb.COUNT_SOURCE_CYCLE,
    CountSource.RFID: pb.COUNT_SOURCE_RFID,
    CountSource.RECOGNISER: pb.COUNT_SOURCE_RECOGNISER,
}


def count_from_pb(req: pb.CountRequest) -> Count:
    source = COUNT_SOURCE_FROM_PB.get(req.source)
    if source is None:
        raise InvalidArgument([FieldViolation("source", f"unknown count source {req.source}")])
    return Count(
        request_id=req.request_id,
        sku=req.sku,
        site=req.site,
        bin=req.bin,
        lines=tuple(
            CountLine(line.lot_id, line.qty, line.status, line.owner or "own", line.expires_at_ms) for line in req.lines
        ),
        whole_bin=req.whole_bin,
        source=source,
        confidence=req.confidence if req.HasField("confidence") else 1.0,
        doc_ref=req.doc_ref,
        finance=finance_from_pb(req),
    )


def device_ops_from_pb(req: pb.ApplyDeviceOpsRequest) -> list[DeviceOp]:
    """An upload's ops as cell commands, in seq order; INVALID_ARGUMENT when it is empty,
    too long, or its seqs are not consecutive (naming the missing seq)."""
    v = Violations()
    check_id(req.device_id, "device_id", v.items)
    if not 0 < len(req.ops) <= MAX_DEVICE_OPS:
        v.add("ops", f"must hold 1..{MAX_DEVICE_OPS} ops")
    out: list[DeviceOp] = []
    for i, op in enumerate(req.ops[:MAX_DEVICE_OPS]):
        if i and op.seq != req.ops[i - 1].seq + 1:
            missing = req.ops[i - 1].seq + 1
            v.add(f"ops[{i}].seq", f"seq {missing} is missing: upload the device's ops without gaps (got {op.seq})")
        kind = op.WhichOneof("op")
        if kind is None:
            v.add(f"ops[{i}].op", "is required")
            continue
        inner: DeviceCommand = _DEVICE_OPS[kind](getattr(op, kind))
        rid = derived_id(f"{req.device_id}:{op.seq}", "#dev")
        prev_seq = op.prev_seq if op.HasField("prev_seq") else NO_PREV_SEQ
        out.append(DeviceOp(rid, inner.sku, inner.site, req.device_id, op.seq, op.at_ms, inner, prev_seq=prev_seq))
    v.raise_if_any()
    return out


def device_op_done_to_pb(done: DeviceOpDone) -> pb.DeviceOpResult:
    return pb.DeviceOpResult(
        seq=done.seq,
        already_applied=done.already_applied,
        refusal_reason=done.refusal_reason,
        refusal_message=done.refusal_message,
    )


def expire_lots_from_pb(req: pb.ExpireLotsRequest) -> ExpireLots:
    return ExpireLots(req.request_id, req.sku, req.site, req.lot_id, req.doc_ref, finance_from_pb(req))


def scrap_over_age_from_pb(req: pb.ScrapOverAgeRequest) -> ScrapOverAge:
    return ScrapOverAge(req.request_id, req.sku, req.site, req.lot_id, req.doc_ref, finance_from_pb(req))


def open_lot_from_pb(req: pb.OpenLotRequest) -> OpenLot:
    return OpenLot(req.request_id, req.sku, req.site, req.lot_id, req.opened_at_ms, req.doc_ref, finance_from_pb(req))


_DEVICE_OPS: dict[str, Callable[[Any], DeviceCommand]] = {
    "receive": receive_from_pb,
    "consume": consume_from_pb,
    "count": count_from_pb,
    "adjust": adjust_from_pb,
    "move": move_from_pb,
    "change_status": change_status_from_pb,
}


def hold_lines_from_pb(lines: Sequence[pb.ReserveLine]) -> list[HoldLine]:
    """The lines of a Reserve; the count is bounded before anything is converted."""
    v = Violations()
    if len(lines) > MAX_LINES:
        v.add("lines", f"must have at most {MAX_LINES} lines")
        v.raise_if_any()
    out: list[HoldLine] = []
    for i, line in enumerate(lines):
        prefix = f"lines[{i}]"
        strategy = _strategy(line.strategy, f"{prefix}.strategy", v)
        _finite(line.min_shelf_life_days, f"{prefix}.min_shelf_life_days", v)
        out.append(
            HoldLine(
                sku=line.sku,
                site=line.site,
                line=ReserveLine(
                    qty=line.qty,
                    strategy=strategy,
                    lot_id=line.lot_id,
                    owner=line.owner,
                    min_shelf_life_days=line.min_shelf_life_days,
                    bin_prefix=line.bin_prefix,
                ),
            )
        )
    v.raise_if_any()
    return out


def commit_lines_from_pb(lines: Sequence[pb.CommitLine]) -> list[CommitLine] | None:
    """None (commit all that is held) when the request lists no lines."""
    if not lines:
        return None
    if len(lines) > MAX_LINES:
        raise InvalidArgument([FieldViolation("lines", f"must have at most {MAX_LINES} lines")])
    return [CommitLine(sku=line.sku, site=line.site, qty=line.qty) for line in lines]


def filter_from_pb(msg: pb.SliceFilter, field: str, v: Violations, statuses: StatusDictionary | None) -> SliceFilter:
    if len(msg.statuses) > MAX_FILTER_STATUSES:
        v.add(f"{field}.statuses", f"must list at most {MAX_FILTER_STATUSES} statuses")
    elif statuses is not None:
        for i, name in enumerate(msg.statuses):
            if name not in statuses:
                # A typo would silently match nothing; say so instead.
                v.add(f"{field}.statuses[{i}]", f"unknown status {name!r}")
    check_owner(msg.owner, f"{field}.owner", v.items, filter_=True)
    check_bin(msg.bin_prefix, f"{field}.bin_prefix", v.items)
    check_id(msg.lot_id, f"{field}.lot_id", v.items, required=False)
    min_days = msg.min_shelf_life_days if msg.HasField("min_shelf_life_days") else None
    max_days = msg.max_shelf_life_days if msg.HasField("max_shelf_life_days") else None
    if min_days is not None:
        _finite(min_days, f"{field}.min_shelf_life_days", v)
    if max_days is not None:
        _finite(max_days, f"{field}.max_shelf_life_days", v)
    return SliceFilter(
        statuses=frozenset(msg.statuses),
        owner=msg.owner,
        bin_prefix=msg.bin_prefix,
        lot_id=msg.lot_id,
        sellable_only=msg.sellable_only,
        min_shelf_life_days=min_days,
        max_shelf_life_days=max_days,
        out_of_stock_only=msg.out_of_stock_only,
    )


def dimensions_from_pb(values: Iterable[int], field: str, v: Violations) -> tuple[Dimension, ...]:
    out: list[Dimension] = []
    for i, value in enumerate(values):
        dim = DIMENSION_FROM_PB.get(value)
        if dim is None:
            v.add(
                f"{field}[{i}]",
                f"unknown dimension {value}; use one of BIN, STATUS, OWNER, LOT, EXPIRY_DAY, RECEIVED_DAY",
            )
        elif dim in out:
            v.add(f"{field}[{i}]", f"dimension {dim.name} is listed twice")
        else:
            out.append(dim)
    return tuple(out)


def availability_query_from_pb(
    req: pb.GetAvailabilityRequest, statuses: StatusDictionary | None
) -> tuple[tuple[Dimension, ...], SliceFilter]:
    v = Violations()
    group_by = dimensions_from_pb(req.group_by, "group_by", v)
    filt = filter_from_pb(req.filter, "filter", v, statuses)
    v.raise_if_any()
    return group_by, filt


def stock_query_from_pb(req: pb.QueryStockRequest, statuses: StatusDictionary | None) -> StockQuery:
    v = Violations()
    for name, keys in (("skus", req.skus), ("sites", req.sites)):
        if len(keys) > MAX_QUERY_KEYS:
            v.add(name, f"must list at most {MAX_QUERY_KEYS} ids")
            continue
        for i, key in enumerate(keys):
            check_id(key, f"{name}[{i}]", v.items)
    if req.org_prefix and len(req.org_prefix) > 1024:
        v.add("org_prefix", "must be at most 1024 characters")
    group_by = dimensions_from_pb(req.group_by, "group_by", v)
    filt = filter_from_pb(req.filter, "filter", v, statuses)
    if not 0 <= req.page_size <= MAX_STOCK_PAGE:
        v.add("page_size", f"must be in 0..{MAX_STOCK_PAGE} (0: the whole answer, up to limit)")
    after = stock_key_of(req.page_token, v)
    if after is not None and not req.page_size:
        v.add("page_token", "needs page_size > 0")
    v.raise_if_any()
    return StockQuery(
        skus=tuple(req.skus),
        sites=tuple(req.sites),
        org_prefix=req.org_prefix,
        filter=filt,
        group_by=group_by,
        by_sku=req.by_sku if req.HasField("by_sku") else True,
        by_site=req.by_site if req.HasField("by_site") else True,
        bin_depth=req.bin_depth,
        limit=req.limit or DEFAULT_QUERY_LIMIT,
        page_size=req.page_size,
        after=after,
    )


_STOCK_TOKEN_PREFIX = "s1:"  # a version tag: a cursor from another format is refused, not misread


def stock_token_of(key: StockKey) -> str:
    """The opaque cursor after a stock row: its (sku, site, group) key."""
    sku, site, group = key
    raw = _STOCK_TOKEN_PREFIX + json.dumps([sku, site, [list(g) for g in group]], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _is_group(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(g, list) and len(g) == 2 and all(isinstance(x, str) for x in g) for g in value
    )


def stock_key_of(token: str, v: Violations) -> StockKey | None:
    """The row key a `next_page_token` points after; a token this server did not give is
    the caller's mistake (INVALID_ARGUMENT), never misread."""
    if not token:
        return None
    if len(token) > 4096:
        v.add("page_token", "is not a next_page_token this server gave")
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        parsed = json.loads(raw[len(_STOCK_TOKEN_PREFIX) :]) if raw.startswith(_STOCK_TOKEN_PREFIX) else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not (
        isinstance(parsed, list)
        and len(parsed) == 3
        and isinstance(parsed[0], str)
        and isinstance(parsed[1], str)
        and _is_group(parsed[2])
    ):
        v.add("page_token", "is not a next_page_token this server gave")
        return None
    return (parsed[0], parsed[1], tuple((d, value) for d, value in parsed[2]))


def stock_page_to_pb(rows: Sequence[StockRow], page_size: int) -> pb.QueryStockResponse:
    """The answer; paged, the gateway sent one row more than the page when there are more."""
    if not page_size or len(rows) <= page_size:
        return pb.QueryStockResponse(rows=[stock_row_to_pb(r) for r in rows])
    shown = rows[:page_size]
    last = shown[-1]
    return pb.QueryStockResponse(
        rows=[stock_row_to_pb(r) for r in shown], next_page_token=stock_token_of((last.sku, last.site, last.row.group))
    )


def _strategy(value: int, field: str, v: Violations) -> Strategy:
    strategy = STRATEGY_FROM_PB.get(value)
    if strategy is None:
        v.add(field, f"unknown removal strategy {value}; use FEFO, FIFO, LIFO or LOT")
        return Strategy.FEFO
    return strategy


def _finite(value: float, field: str, v: Violations) -> None:
    if math.isnan(value) or math.isinf(value):
        v.add(field, "must be a finite number")


def _optional_id(value: str, field: str, v: Violations) -> None:
    check_id(value, field, v.items, required=False)


# =====================================================================================
# Server side: replies (domain → proto)
# =====================================================================================


def hold_cuts_to_pb(cuts: Sequence[HoldCut]) -> list[pb.HoldCut]:
    return [pb.HoldCut(hold_id=c.hold_id, lot_id=c.lot_id, bin=c.bin, status=c.status, qty=c.qty) for c in cuts]


def counted_to_pb(c: Counted) -> pb.CountResponse:
    lots = [pb.LotCount(lot_id=x.lot_id, previous_qty=x.previous_qty, counted_qty=x.counted_qty) for x in c.lots]
    return pb.CountResponse(lots=lots, holds_cut=hold_cuts_to_pb(c.holds_cut), variance=c.variance)


def lots_expired_to_pb(e: LotsExpired) -> pb.ExpireLotsResponse:
    return pb.ExpireLotsResponse(
        qty=e.qty, lot_ids=list(e.lot_ids), holds_cut=hold_cuts_to_pb(e.holds_cut), stuck_qty=e.stuck_qty
    )


def scrapped_to_pb(s: Scrapped) -> pb.ScrapOverAgeResponse:
    return pb.ScrapOverAgeResponse(qty=s.qty, lot_ids=list(s.lot_ids), holds_cut=hold_cuts_to_pb(s.holds_cut))


def lot_opened_to_pb(o: LotOpened) -> pb.OpenLotResponse:
    return pb.OpenLotResponse(
        lot_id=o.lot_id, opened_at_ms=o.opened_at_ms, already_open=o.already_open, fresh_until_ms=o.fresh_until_ms
    )


def sku_to_pb(sku: Sku) -> pb.Sku:
    return pb.Sku(
        sku=sku.sku,
        name=sku.name,
        unit=sku.unit,
        opened_shelf_life_days=sku.opened_shelf_life_days,
        opened_shelf_life_hours=sku.opened_shelf_life_hours,
        substitutes=list(sku.substitutes),
    )


def site_to_pb(site: Site) -> pb.Site:
    return pb.Site(site=site.site, org_path=site.org_path, kind=site.kind, name=site.name)


def allocation_to_pb(a: Allocation) -> pb.Allocation:
    return pb.Allocation(
        lot_id=a.lot_id, bin=a.bin, status=a.status, owner=a.owner, qty=a.qty, expires_at_ms=a.expires_at_ms
    )


def hold_part_to_pb(part: HoldView) -> pb.HoldPart:
    return pb.HoldPart(
        sku=part.sku,
        site=part.site,
        state=_STATE_TO_PB[part.state.value],
        allocations=[allocation_to_pb(a) for a in part.allocations],
        held_qty=part.held_qty,
        committed_qty=part.committed_qty,
        released_qty=part.released_qty,
        created_at_ms=part.created_at_ms,
        expires_at_ms=part.expires_at_ms,
    )


def hold_to_pb(hold: HoldSummary) -> pb.Hold:
    return pb.Hold(
        hold_id=hold.hold_id,
        state=_STATE_TO_PB[hold.state.value],
        parts=[hold_part_to_pb(p) for p in hold.parts],
        expires_at_ms=hold.expires_at_ms,
        held_qty=hold.held_qty,
        committed_qty=hold.committed_qty,
        released_qty=hold.released_qty,
    )


def sale_to_pb(sale: HoldSummary) -> pb.SellResponse:
    """A one-call sale's answer: the sale as a hold named by its request id."""
    return pb.SellResponse(sale=hold_to_pb(sale), sold_qty=sale.committed_qty)


def slice_row_to_pb(row: SliceRow) -> pb.SliceRow:
    return pb.SliceRow(
        group=[pb.GroupValue(dimension=DIMENSION_TO_PB[Dimension(d)], value=value) for d, value in row.group],
        qty=row.qty,
        held=row.held,
        available=row.available,
        on_hand=row.on_hand,
        earliest_expiry_ms=row.earliest_expiry_ms,
        out_of_stock_since_ms=row.out_of_stock_since_ms,
    )


def availability_to_pb(a: Availability) -> pb.GetAvailabilityResponse:
    return pb.GetAvailabilityResponse(
        sku=a.sku,
        site=a.site,
        available=a.available,
        rows=[slice_row_to_pb(r) for r in a.rows],
        as_of_ms=a.as_of_ms,
    )


def stock_row_to_pb(row: StockRow) -> pb.StockRow:
    return pb.StockRow(sku=row.sku, site=row.site, row=slice_row_to_pb(row.row))


def consumed_to_pb(c: Consumed) -> pb.ConsumeResponse:
    return pb.ConsumeResponse(
        consumed_qty=c.consumed_qty,
        shortfall_qty=c.shortfall_qty,
        discrepancy=c.shortfall_qty > 0,
        allocations=[allocation_to_pb(a) for a in c.allocations],
    )


def adjusted_to_pb(a: Adjusted) -> pb.AdjustResponse:
    return pb.AdjustResponse(previous_qty=a.previous_qty, counted_qty=a.counted_qty, variance=a.variance)


# =====================================================================================
# Client side: requests (domain → proto)
# =====================================================================================


def finance_to_pb(finance: Finance | None) -> pb.Finance | None:
    """None (the field stays unset) when there is no financial context."""
    if finance is None:
        return None
    return pb.Finance(
        currency=finance.currency,
        unit_cost=finance.unit_cost,
        unit_price=finance.unit_price,
        tax_rate=finance.tax_rate,
        terms=finance.terms,
        customer_tier=finance.customer_tier,
        sales_channel=finance.sales_channel,
        tax_attribute=finance.tax_attribute,
        gift=finance.gift,
        return_of=finance.return_of,
        to_site=finance.to_site,
        to_company=finance.to_company,
    )


def filter_to_pb(f: SliceFilter) -> pb.SliceFilter:
    msg = pb.SliceFilter(
        statuses=sorted(f.statuses),
        owner=f.owner,
        bin_prefix=f.bin_prefix,
        lot_id=f.lot_id,
        sellable_only=f.sellable_only,
        out_of_stock_only=f.out_of_stock_only,
    )
    if f.min_shelf_life_days is not None:
        msg.min_shelf_life_days = f.min_shelf_life_days
    if f.max_shelf_life_days is not None:
        msg.max_shelf_life_days = f.max_shelf_life_days
    return msg


def dimensions_to_pb(dims: Iterable[Dimension | str]) -> list[pb.Dimension]:
    return [DIMENSION_TO_PB[Dimension(d)] for d in dims]


def hold_line_to_pb(hl: HoldLine) -> pb.ReserveLine:
    line = hl.line
    return pb.ReserveLine(
        sku=hl.sku,
        site=hl.site,
        qty=line.qty,
        strategy=STRATEGY_TO_PB[Strategy(line.strategy)],
        lot_id=line.lot_id,
        owner=line.owner,
        min_shelf_life_days=line.min_shelf_life_days,
        bin_prefix=line.bin_prefix,
    )


def commit_line_to_pb(cl: CommitLine) -> pb.CommitLine:
    return pb.CommitLine(sku=cl.sku, site=cl.site, qty=cl.qty)


def stock_query_to_pb(q: StockQuery) -> pb.QueryStockRequest:
    return pb.QueryStockRequest(
        skus=list(q.skus),
        sites=list(q.sites),
        org_prefix=q.org_prefix,
        filter=filter_to_pb(q.filter),
        group_by=dimensions_to_pb(q.group_by),
        by_sku=q.by_sku,
        by_site=q.by_site,
        bin_depth=q.bin_depth,
        limit=q.limit,
        page_size=q.page_size,
        page_token="" if q.after is None else stock_token_of(q.after),
    )


# =====================================================================================
# Client side: replies (proto → domain)
# =====================================================================================


def allocation_from_pb(msg: pb.Allocation) -> Allocation:
    return Allocation(msg.lot_id, msg.bin, msg.status, msg.owner, msg.qty, msg.expires_at_ms)


def hold_part_from_pb(msg: pb.HoldPart, hold_id: str) -> HoldView:
    return HoldView(
        hold_id=hold_id,  # the wire keeps the id once, on the whole hold
        sku=msg.sku,
        site=msg.site,
        state=HoldState(_state_name(msg.state)),
        allocations=tuple(allocation_from_pb(a) for a in msg.allocations),
        held_qty=msg.held_qty,
        committed_qty=msg.committed_qty,
        released_qty=msg.released_qty,
        created_at_ms=msg.created_at_ms,
        expires_at_ms=msg.expires_at_ms,
    )


def hold_from_pb(msg: pb.Hold) -> HoldSummary:
    parts = tuple(hold_part_from_pb(p, msg.hold_id) for p in msg.parts)
    return HoldSummary(msg.hold_id, AggregateState(_state_name(msg.state)), parts, msg.expires_at_ms)


def slice_row_from_pb(msg: pb.SliceRow) -> SliceRow:
    group = tuple((DIMENSION_FROM_PB[g.dimension].value, g.value) for g in msg.group)
    return SliceRow(
        group, msg.qty, msg.held, msg.available, msg.on_hand, msg.earliest_expiry_ms, msg.out_of_stock_since_ms
    )


def availability_from_pb(msg: pb.GetAvailabilityResponse) -> Availability:
    return Availability(msg.sku, msg.site, msg.available, tuple(slice_row_from_pb(r) for r in msg.rows), msg.as_of_ms)


def stock_row_from_pb(msg: pb.StockRow) -> StockRow:
    return StockRow(msg.sku, msg.site, slice_row_from_pb(msg.row))


def received_from_pb(msg: pb.ReceiveResponse) -> Received:
    return Received(msg.lot_id, msg.qty)


def moved_from_pb(msg: pb.MoveResponse) -> Moved:
    return Moved(msg.qty)


def status_changed_from_pb(msg: pb.ChangeStatusResponse) -> StatusChanged:
    return StatusChanged(msg.qty)


def consumed_from_pb(msg: pb.ConsumeResponse) -> Consumed:
    return Consumed(msg.consumed_qty, msg.shortfall_qty, tuple(allocation_from_pb(a) for a in msg.allocations))


def adjusted_from_pb(msg: pb.AdjustResponse) -> Adjusted:
    return Adjusted(msg.previous_qty, msg.counted_qty, msg.variance)


def _state_name(value: int) -> str:
    name = _STATE_FROM_PB.get(value)
    if name is None:
        # A newer server with a state this client does not know: fail loudly, not silently.
        raise ValueError(f"unknown hold state {value} in server reply")
    return name


# =====================================================================================
# Batches: a command's error as plain fields ↔ the google.rpc.Status a unary call carries
# =====================================================================================


def command_error_from_status(status: status_pb2.Status) -> pb.CommandError:
    """The batch form of a unary call's rich status: the same code, message and details,
    flattened into fields a caller reads without unpacking Any (grpcurl shows them)."""
    out = pb.CommandError(code=status.code, message=status.message)
    for any_ in status.details:
        # Unpack answers whether the Any held that type (Is() is mistyped in the stubs).
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        resource = error_details_pb2.ResourceInfo()
        retry = error_details_pb2.RetryInfo()
        if any_.Unpack(info):
            out.reason, out.domain = info.reason, info.domain
            out.metadata.update(info.metadata)
        elif any_.Unpack(bad):
            out.field_violations.extend(
                pb.FieldViolation(field=v.field, description=v.description) for v in bad.field_violations
            )
        elif any_.Unpack(resource):
            out.resource_type, out.resource_name = resource.resource_type, resource.resource_name
        elif any_.Unpack(retry):
            out.retry_delay_ms = retry.retry_delay.seconds * 1000 + retry.retry_delay.nanos // 1_000_000
    return out


def status_from_command_error(err: pb.CommandError) -> status_pb2.Status:
    """The rich status a unary call would have ended with, so the client raises the very
    same typed exception for a command of a batch as for the unary call."""
    details: list[Message] = []
    if err.field_violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in err.field_violations
                ]
            )
        )
    if err.resource_type or err.resource_name:
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=err.resource_type, resource_name=err.resource_name, description=err.message
            )
        )
    if err.reason:
        details.append(error_details_pb2.ErrorInfo(reason=err.reason, domain=err.domain, metadata=err.metadata))
    if err.retry_delay_ms > 0:
        delay = duration_pb2.Duration(seconds=err.retry_delay_ms // 1000, nanos=(err.retry_delay_ms % 1000) * 1_000_000)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        any_ = any_pb2.Any()
        any_.Pack(detail)
        packed.append(any_)
    return status_pb2.Status(code=err.code, message=err.message, details=packed)


# ---- stock health (client side) ----


def _cuts_from_pb(cuts: Sequence[pb.HoldCut]) -> tuple[HoldCut, ...]:
    return tuple(HoldCut(c.hold_id, c.lot_id, c.bin, c.status, c.qty) for c in cuts)


def counted_from_pb(msg: pb.CountResponse) -> Counted:
    lots = tuple(LotCount(c.lot_id, c.previous_qty, c.counted_qty) for c in msg.lots)
    return Counted(lots, _cuts_from_pb(msg.holds_cut))


def lots_expired_from_pb(msg: pb.ExpireLotsResponse) -> LotsExpired:
    return LotsExpired(msg.qty, tuple(msg.lot_ids), _cuts_from_pb(msg.holds_cut), msg.stuck_qty)


def scrapped_from_pb(msg: pb.ScrapOverAgeResponse) -> Scrapped:
    return Scrapped(msg.qty, tuple(msg.lot_ids), _cuts_from_pb(msg.holds_cut))


def lot_opened_from_pb(msg: pb.OpenLotResponse) -> LotOpened:
    return LotOpened(msg.lot_id, msg.opened_at_ms, msg.already_open, msg.fresh_until_ms)


# =====================================================================================
# ListHolds: the request's filter and its opaque page cursor
# =====================================================================================

_PAGE_TOKEN_PREFIX = "h1:"  # a version tag: a cursor from another format is refused, not misread


def page_token_of(after_hold_id: str) -> str:
    """The opaque cursor of the next page (the last hold id shown); "" on the last page."""
    if not after_hold_id:
        return ""
    return base64.urlsafe_b64encode((_PAGE_TOKEN_PREFIX + after_hold_id).encode()).decode().rstrip("=")


def _after_of(token: str, v: Violations) -> str:
    if not token:
        return ""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    if not raw.startswith(_PAGE_TOKEN_PREFIX) or len(raw) == len(_PAGE_TOKEN_PREFIX):
        v.add("page_token", "is not a next_page_token this server gave")
        return ""
    return raw[len(_PAGE_TOKEN_PREFIX) :]


def list_holds_from_pb(msg: pb.ListHoldsRequest) -> ScanHolds:
    """The shards' scan for one ListHolds page; every malformed field is named at once."""
    v = Violations()
    states: set[HoldState] = set()
    for i, value in enumerate(msg.states):
        name = _STATE_FROM_PB.get(value)
        if name is None or name == "partial":
            v.add(f"states[{i}]", "must be ACTIVE, COMMITTED, RELEASED or EXPIRED (a part's state)")
        else:
            states.add(HoldState(name))
    if msg.page_size < 0 or msg.page_size > MAX_PAGE_SIZE:
        v.add("page_size", f"must be in 0..{MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE})")
    after = _after_of(msg.page_token, v)
    v.raise_if_any()
    filt = HoldFilter(msg.sku, msg.site, frozenset(states), msg.expiring_before_ms)
    return ScanHolds(filt, after, check_page_size(msg.page_size))


def hold_state_to_pb(name: str) -> pb.HoldState:
    """A state by its name (active, committed, ...); an unknown name is the caller's mistake."""
    value = _STATE_TO_PB.get(name.lower())
    if value is None:
        raise ValueError(f"unknown hold state {name!r}; one of {', '.join(_STATE_TO_PB)}")
    return value


def list_holds_to_pb(holds: Sequence[HoldSummary], after: str) -> pb.ListHoldsResponse:
    return pb.ListHoldsResponse(holds=[hold_to_pb(h) for h in holds], next_page_token=page_token_of(after))
