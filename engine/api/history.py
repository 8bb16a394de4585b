"""The History gRPC servicer: protobuf in, the history store, protobuf out (DESIGN.md §8, §12).

Stateless like the Inventory servicer, with the same conventions: a request is turned
into a domain query (refusing wire-level problems — unknown enum numbers, kinds — with
INVALID_ARGUMENT naming the field), the store checks the rest (from > to, page size,
limits) with the same typed errors, and `_rpc` turns a DomainError into its rich status
and a bug into INTERNAL with an incident id.
"""

from __future__ import annotations

from typing import Any, Protocol

import grpc

from engine.api.convert import Violations
from engine.api.errors import DEFAULT_RETRY_DELAY_MS
from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import history_pb2_grpc as hpb_grpc
from engine.api.registration import add_service
from engine.api.servicer import _rpc
from engine.domain.errors import Unavailable
from engine.domain.history import (
    MAX_ROWS,
    BalanceQuery,
    BalanceRow,
    ExpiryQuery,
    Exposure,
    HistoryDimension,
    HistoryRecord,
    LotTrace,
    MovementQuery,
    SeriesQuery,
    TraceQuery,
    TurnoverQuery,
    TurnoverRow,
)
from engine.domain.model import External, MovementKind, Provenance, QuantKey
from engine.domain.ports import HistoryStore

HISTORY_SERVICE_NAME = hpb.DESCRIPTOR.services_by_name["History"].full_name  # "lotwise.v1.History"
DEFAULT_PAGE_SIZE = 100

DIMENSION_TO_PB: dict[HistoryDimension, hpb.HistoryDimension] = {
    HistoryDimension.SKU: hpb.HISTORY_DIMENSION_SKU,
    HistoryDimension.SITE: hpb.HISTORY_DIMENSION_SITE,
    HistoryDimension.BIN: hpb.HISTORY_DIMENSION_BIN,
    HistoryDimension.STATUS: hpb.HISTORY_DIMENSION_STATUS,
    HistoryDimension.OWNER: hpb.HISTORY_DIMENSION_OWNER,
    HistoryDimension.LOT: hpb.HISTORY_DIMENSION_LOT,
    HistoryDimension.EXPIRY_DAY: hpb.HISTORY_DIMENSION_EXPIRY_DAY,
    HistoryDimension.RECEIVED_DAY: hpb.HISTORY_DIMENSION_RECEIVED_DAY,
}
DIMENSION_FROM_PB: dict[int, HistoryDimension] = {v: k for k, v in DIMENSION_TO_PB.items()}
_DIMENSION_NAMES = ", ".join(d.name for d in HistoryDimension)
_KINDS = {k.value: k for k in MovementKind}


class SinkLagView(Protocol):
    @property
    def stream_position(self) -> int: ...

    @property
    def acked_position(self) -> int: ...

    @property
    def pending_messages(self) -> int: ...

    @property
    def stalled(self) -> bool: ...


class SinkStatus(Protocol):
    """What the servicer reads of the sink (adapters.nats.history.HistorySink)."""

    async def lag(self) -> SinkLagView: ...


# ---- requests ----


def _dimensions(values: list[int] | tuple[int, ...], v: Violations) -> tuple[HistoryDimension, ...]:
    out: list[HistoryDimension] = []
    for i, value in enumerate(values):
        dim = DIMENSION_FROM_PB.get(value)
        if dim is None:
            v.add(f"group_by[{i}]", f"unknown dimension {value}; use one of {_DIMENSION_NAMES}")
        elif dim in out:
            v.add(f"group_by[{i}]", f"dimension {dim.name} is listed twice")
        else:
            out.append(dim)
    return tuple(out)


def _limit(value: int) -> int:
    return value or MAX_ROWS  # 0: the proto's "not set"; out of range is the store's to refuse


def balance_query_from_pb(req: hpb.GetBalanceAsOfRequest) -> BalanceQuery:
    v = Violations()
    group_by = _dimensions(list(req.group_by), v)
    v.raise_if_any()
    return BalanceQuery(
        as_of_ms=req.as_of_ms,
        skus=tuple(req.skus),
        sites=tuple(req.sites),
        bin_prefix=req.bin_prefix,
        statuses=tuple(req.statuses),
        owner=req.owner,
        lot_id=req.lot_id,
        expires_from_ms=req.expires_from_ms,
        expires_to_ms=req.expires_to_ms,
        group_by=group_by,
        bin_depth=req.bin_depth,
        limit=_limit(req.limit),
    )


def movement_query_from_pb(req: hpb.SearchMovementsRequest) -> MovementQuery:
    v = Violations()
    kinds: list[MovementKind] = []
    for i, name in enumerate(req.kinds):
        kind = _KINDS.get(name)
        if kind is None:
            v.add(f"kinds[{i}]", f"unknown movement kind {name!r}; use one of {', '.join(_KINDS)}")
        else:
            kinds.append(kind)
    v.raise_if_any()
    return MovementQuery(
        sku=req.sku,
        site=req.site,
        lot_id=req.lot_id,
        doc_ref=req.doc_ref,
        hold_id=req.hold_id,
        request_id=req.request_id,
        kinds=tuple(kinds),
        from_ms=req.from_ms,
        to_ms=req.to_ms,
        page_size=req.page_size or DEFAULT_PAGE_SIZE,
        cursor=req.cursor,
    )


# ---- answers ----


def balance_row_to_pb(row: BalanceRow) -> hpb.BalanceRow:
    return hpb.BalanceRow(
        group=[
            hpb.HistoryGroupValue(dimension=DIMENSION_TO_PB[HistoryDimension(d)], value=value) for d, value in row.group
        ],
        qty=row.qty,
        held=row.held,
    )


def _bucket_to_pb(bucket: QuantKey | External | None) -> hpb.HistoryBucket | None:
    if bucket is None:
        return None
    if isinstance(bucket, External):
        return hpb.HistoryBucket(external=bucket.value)
    return hpb.HistoryBucket(bin=bucket.bin, status=bucket.status, owner=bucket.owner)


def movement_to_pb(record: HistoryRecord) -> hpb.HistoryMovement:
    m = record.movement
    lot = m.lot
    return hpb.HistoryMovement(
        sku=m.sku,
        site=m.site,
        seq=m.seq,
        kind=m.kind.value,
        lot_id=m.lot_id,
        qty=m.qty,
        src=_bucket_to_pb(m.src),
        dst=_bucket_to_pb(m.dst),
        held=_bucket_to_pb(m.held_key),
        held_delta=m.held_delta,
        hold_id=m.hold_id,
        request_id=m.request_id,
        doc_ref=m.doc_ref,
        at_ms=m.at_ms,
        hold_expires_at_ms=m.expires_at_ms,
        lot=None
        if lot is None
        else hpb.HistoryLotDates(
            received_at_ms=lot.received_at_ms, expires_at_ms=lot.expires_at_ms, opened_at_ms=lot.opened_at_ms
        ),
        shard=record.shard,
        batch_seq=record.batch_seq,
        journal_position=record.position,
        **_provenance_to_pb(m.provenance),
    )


def _provenance_to_pb(provenance: Provenance | None) -> dict[str, Any]:
    """The optional provenance fields: set only when the movement says where it came from,
    so a client tells "not said" (absent) from a confidence of 0 (HasField)."""
    if provenance is None:
        return {}
    return {
        "source": provenance.source,
        "confidence": provenance.confidence,
        "business_at_ms": provenance.business_at_ms,
    }


def turnover_row_to_pb(row: TurnoverRow) -> hpb.TurnoverRow:
    out = hpb.TurnoverRow(sku=row.sku, site=row.site, days=row.days, avg_on_hand=row.avg_on_hand, consumed=row.consumed)
    if row.turnover_days is not None:
        out.turnover_days = row.turnover_days
    return out


def exposure_to_pb(exposure: Exposure) -> hpb.GetExpiryExposureResponse:
    return hpb.GetExpiryExposureResponse(
        rows=[
            hpb.ExposureRow(
                sku=r.sku,
                site=r.site,
                lot_id=r.lot_id,
                expires_at_ms=r.expires_at_ms,
                days_left=r.days_left,
                qty=r.qty,
                held=r.held,
            )
            for r in exposure.rows
        ],
        totals=[hpb.DaysLeftTotal(days_left=t.days_left, qty=t.qty, lots=t.lots) for t in exposure.totals],
    )


def trace_to_pb(trace: LotTrace) -> hpb.TraceLotResponse:
    return hpb.TraceLotResponse(
        lot_id=trace.lot_id,
        stops=[
            hpb.LotStop(
                sku=s.sku,
                site=s.site,
                received_at_ms=s.received_at_ms,
                expires_at_ms=s.expires_at_ms,
                first_at_ms=s.first_at_ms,
                last_at_ms=s.last_at_ms,
                qty_in=s.qty_in,
                qty_out=s.qty_out,
                balance=s.balance,
                movements=s.movements,
            )
            for s in trace.stops
        ],
        documents=[
            hpb.LotDocument(
                doc_ref=d.doc_ref,
                sku=d.sku,
                site=d.site,
                first_at_ms=d.first_at_ms,
                last_at_ms=d.last_at_ms,
                kinds=list(d.kinds),
                qty=d.qty,
                movements=d.movements,
            )
            for d in trace.documents
        ],
    )


class HistoryServicer(hpb_grpc.HistoryServicer):
    """lotwise.v1.History over a HistoryStore (and, for GetSinkStatus, the sink if any)."""

    def __init__(
        self, store: HistoryStore, sink: SinkStatus | None = None, *, retry_delay_ms: int = DEFAULT_RETRY_DELAY_MS
    ) -> None:
        self.store = store
        self.sink = sink
        self.retry_delay_ms = retry_delay_ms  # read by _rpc when it answers a DomainError

    @_rpc
    async def GetBalanceAsOf(
        self, request: hpb.GetBalanceAsOfRequest, context: grpc.aio.ServicerContext
    ) -> hpb.GetBalanceAsOfResponse:
        rows = await self.store.balance_as_of(balance_query_from_pb(request))
        return hpb.GetBalanceAsOfResponse(rows=[balance_row_to_pb(r) for r in rows], as_of_ms=request.as_of_ms)

    @_rpc
    async def SearchMovements(
        self, request: hpb.SearchMovementsRequest, context: grpc.aio.ServicerContext
    ) -> hpb.SearchMovementsResponse:
        page = await self.store.movements(movement_query_from_pb(request))
        return hpb.SearchMovementsResponse(
            movements=[movement_to_pb(r) for r in page.records], next_cursor=page.next_cursor
        )

    @_rpc
    async def GetConsumptionSeries(
        self, request: hpb.GetConsumptionSeriesRequest, context: grpc.aio.ServicerContext
    ) -> hpb.GetConsumptionSeriesResponse:
        query = SeriesQuery(from_ms=request.from_ms, to_ms=request.to_ms, sku=request.sku, site=request.site)
        points = await self.store.consumption(query)
        return hpb.GetConsumptionSeriesResponse(points=[hpb.DayQty(day=p.day, qty=p.qty) for p in points])

    @_rpc
    async def GetTurnover(
        self, request: hpb.GetTurnoverRequest, context: grpc.aio.ServicerContext
    ) -> hpb.GetTurnoverResponse:
        query = TurnoverQuery(
            from_ms=request.from_ms,
            to_ms=request.to_ms,
            skus=tuple(request.skus),
            sites=tuple(request.sites),
            limit=_limit(request.limit),
        )
        return hpb.GetTurnoverResponse(rows=[turnover_row_to_pb(r) for r in await self.store.turnover(query)])

    @_rpc
    async def GetExpiryExposure(
        self, request: hpb.GetExpiryExposureRequest, context: grpc.aio.ServicerContext
    ) -> hpb.GetExpiryExposureResponse:
        query = ExpiryQuery(
            as_of_ms=request.as_of_ms,
            horizon_days=request.horizon_days,
            skus=tuple(request.skus),
            sites=tuple(request.sites),
            limit=_limit(request.limit),
        )
        return exposure_to_pb(await self.store.near_expiry(query))

    @_rpc
    async def TraceLot(self, request: hpb.TraceLotRequest, context: grpc.aio.ServicerContext) -> hpb.TraceLotResponse:
        query = TraceQuery(lot_id=request.lot_id, sku=request.sku, limit=_limit(request.limit))
        return trace_to_pb(await self.store.lot_trace(query))

    @_rpc
    async def GetSinkStatus(
        self, request: hpb.GetSinkStatusRequest, context: grpc.aio.ServicerContext
    ) -> hpb.GetSinkStatusResponse:
        if self.sink is None:
            return hpb.GetSinkStatusResponse(running=False)
        try:
            lag = await self.sink.lag()
        except Exception as exc:  # the journal is out of reach: a retryable condition, not a bug
            raise Unavailable(f"cannot read the history sink's position: {type(exc).__name__}: {exc}") from exc
        return hpb.GetSinkStatusResponse(
            stream_position=lag.stream_position,
            acked_position=lag.acked_position,
            pending_messages=lag.pending_messages,
            stalled=lag.stalled,
            running=True,
        )


def add_history_service(server: grpc.aio.Server, servicer: HistoryServicer) -> str:
    """Register lotwise.v1.History on a server; returns its name (for health and reflection)."""
    return add_service(hpb, "History", servicer, server)
