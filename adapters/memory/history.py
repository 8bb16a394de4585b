"""The in-memory history store: the reference every real HistoryStore is held to (DESIGN.md §8)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from engine.domain.catalog import Sku
from engine.domain.commands import owner_matches
from engine.domain.history import (
    BalanceQuery,
    BalanceRow,
    DayQty,
    ExpiryQuery,
    Exposure,
    ExposureRow,
    HistoryBatch,
    HistoryDimension,
    HistoryRecord,
    LotDocument,
    LotStop,
    LotTrace,
    MovementKey,
    MovementPage,
    MovementQuery,
    PairTotal,
    SeriesQuery,
    TraceQuery,
    TurnoverQuery,
    TurnoverRow,
    bin_cut,
    consumed_qty,
    day_of,
    day_span,
    days_left,
    decode_cursor,
    effective_expiry_ms,
    exposure_totals,
    iso_day,
    iso_day_of_ms,
    page_of,
    quant_delta,
    quant_legs,
    turnover_row,
    validate_balance,
    validate_expiry,
    validate_movements,
    validate_series,
    validate_trace,
    validate_turnover,
)
from engine.domain.model import NO_EXPIRY_MS, Lot, Movement, QuantKey


class InMemoryHistoryStore:
    """The HistoryStore port in memory: the reference the contract suite holds every real
    store to. Movements are keyed by (sku, site, seq), so re-inserting one changes nothing."""

    def __init__(self, max_records: int = 2_000_000) -> None:
        self._records: dict[MovementKey, HistoryRecord] = {}
        self._lots: dict[tuple[str, str, str], Lot] = {}
        self._skus: dict[str, tuple[int, Sku]] = {}
        self._max = max_records  # bounded: a dev store must not eat the machine
        self.inserts = 0

    async def insert(self, batch: HistoryBatch) -> int:
        if len(self._records) + len(batch.records) > self._max:
            raise OverflowError(f"in-memory history is full ({self._max} movements)")
        stored = 0
        for sku in batch.skus:
            known = self._skus.get(sku.sku)
            if known is None or known[0] <= batch.skus_at_ms:
                self._skus[sku.sku] = (batch.skus_at_ms, sku)
        for record in batch.records:
            if record.key in self._records:
                continue
            self._records[record.key] = record
            stored += 1
            m = record.movement
            if m.lot is not None:
                self._lots.setdefault((m.sku, m.site, m.lot.lot_id), m.lot)
        self.inserts += 1
        return stored

    async def close(self) -> None:
        return None

    # ---- queries ----

    async def balance_as_of(self, q: BalanceQuery) -> list[BalanceRow]:
        validate_balance(q)
        quants: dict[tuple[str, str, QuantKey], list[int]] = {}
        for m in self._movements(q.skus, q.sites, q.lot_id):
            if m.at_ms > q.as_of_ms:
                continue
            for key, dq, dh in quant_legs(m):
                acc = quants.setdefault((m.sku, m.site, key), [0, 0])
                acc[0] += dq
                acc[1] += dh
        groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for (sku, site, key), (qty, held) in quants.items():
            lot = self._lots.get((sku, site, key.lot_id))
            expiry = effective_expiry_ms(lot, self._sku(sku))
            if not self._passes(q, key, expiry):
                continue
            group = tuple((d.value, self._dim_value(d, sku, site, key, lot, expiry, q.bin_depth)) for d in q.group_by)
            acc = groups.setdefault(group, [0, 0])
            acc[0] += qty
            acc[1] += held
        rows = [BalanceRow(g, qty, held) for g, (qty, held) in sorted(groups.items()) if qty or held]
        return rows[: q.limit]

    async def movements(self, q: MovementQuery) -> MovementPage:
        validate_movements(q)
        after = decode_cursor(q.cursor) if q.cursor else None
        kinds = set(q.kinds)
        matched = []
        for record in self._records.values():
            m = record.movement
            if (q.sku and m.sku != q.sku) or (q.site and m.site != q.site) or (q.lot_id and m.lot_id != q.lot_id):
                continue
            if (q.doc_ref and m.doc_ref != q.doc_ref) or (q.hold_id and m.hold_id != q.hold_id):
                continue
            if (q.request_id and m.request_id != q.request_id) or (kinds and m.kind not in kinds):
                continue
            if m.at_ms < q.from_ms or (q.to_ms and m.at_ms >= q.to_ms):
                continue
            order = (m.at_ms, m.sku, m.site, m.seq)
            if after is not None and order <= after:
                continue
            matched.append((order, record))
        matched.sort(key=lambda t: t[0])
        page = [r for _, r in matched[: q.page_size + 1]]
        return page_of(page, q.page_size)

    async def consumption(self, q: SeriesQuery) -> list[DayQty]:
        validate_series(q)
        span = day_span(q.from_ms, q.to_ms)
        by_day = dict.fromkeys(span, 0)
        for m in self._movements((q.sku,) if q.sku else (), (q.site,) if q.site else (), ""):
            day = day_of(m.at_ms)
            if day in by_day:
                by_day[day] += consumed_qty(m)
        return [DayQty(iso_day(day), qty) for day, qty in by_day.items()]

    async def turnover(self, q: TurnoverQuery) -> list[TurnoverRow]:
        validate_turnover(q)
        span = day_span(q.from_ms, q.to_ms)
        first, last, days = span.start, span.stop - 1, len(span)
        acc: dict[tuple[str, str], list[int]] = {}  # [numerator, consumed]
        for m in self._movements(q.skus, q.sites, ""):
            day = day_of(m.at_ms)
            if day > last:
                continue
            row = acc.setdefault((m.sku, m.site), [0, 0])
            delta = quant_delta(m)
            # A delta on day d counts in every end-of-day balance from d to the last day.
            row[0] += delta * days if day < first else delta * (last - day + 1)
            if day >= first:
                row[1] += consumed_qty(m)
        rows = [turnover_row(sku, site, days, n, c) for (sku, site), (n, c) in sorted(acc.items()) if n or c]
        return rows[: q.limit]

    async def near_expiry(self, q: ExpiryQuery) -> Exposure:
        validate_expiry(q)
        lots: dict[tuple[str, str, str], list[int]] = {}
        for m in self._movements(q.skus, q.sites, ""):
            if m.at_ms > q.as_of_ms:
                continue
            for key, dq, dh in quant_legs(m):
                acc = lots.setdefault((m.sku, m.site, key.lot_id), [0, 0])
                acc[0] += dq
                acc[1] += dh
        rows: list[ExposureRow] = []
        for (sku, site, lot_id), (qty, held) in lots.items():
            expiry = effective_expiry_ms(self._lots.get((sku, site, lot_id)), self._sku(sku))
            if expiry == NO_EXPIRY_MS or qty == 0:
                continue
            left = days_left(expiry, q.as_of_ms)
            if left < q.horizon_days:
                rows.append(ExposureRow(sku, site, lot_id, expiry, left, qty, held))
        rows.sort(key=lambda r: (r.expires_at_ms, r.sku, r.site, r.lot_id))
        return Exposure(tuple(rows[: q.limit]), exposure_totals(rows))

    async def lot_trace(self, q: TraceQuery) -> LotTrace:
        validate_trace(q)
        stops: dict[tuple[str, str], list[int]] = {}
        docs: dict[tuple[str, str, str], tuple[list[int], set[str]]] = {}
        for m in self._movements((q.sku,) if q.sku else (), (), q.lot_id):
            s = stops.setdefault((m.sku, m.site), [m.at_ms, m.at_ms, 0, 0, 0, 0])
            s[0], s[1] = min(s[0], m.at_ms), max(s[1], m.at_ms)
            inside_src, inside_dst = isinstance(m.src, QuantKey), isinstance(m.dst, QuantKey)
            s[2] += m.qty if inside_dst and not inside_src else 0
            s[3] += m.qty if inside_src and not inside_dst else 0
            s[4] += quant_delta(m)
            s[5] += 1
            if m.doc_ref:
                d, kinds = docs.setdefault((m.doc_ref, m.sku, m.site), ([m.at_ms, m.at_ms, 0, 0], set()))
                d[0], d[1] = min(d[0], m.at_ms), max(d[1], m.at_ms)
                d[2] += m.qty
                d[3] += 1
                kinds.add(m.kind.value)
        out_stops = []
        for (sku, site), (first, last, qty_in, qty_out, balance, n) in stops.items():
            lot = self._lots.get((sku, site, q.lot_id))
            received = lot.received_at_ms if lot else 0
            expires = lot.expires_at_ms if lot else 0
            out_stops.append(LotStop(sku, site, received, expires, first, last, qty_in, qty_out, balance, n))
        out_stops.sort(key=lambda s: (s.first_at_ms, s.sku, s.site))
        out_docs = [
            LotDocument(doc, sku, site, d[0], d[1], tuple(sorted(kinds)), d[2], d[3])
            for (doc, sku, site), (d, kinds) in docs.items()
        ]
        out_docs.sort(key=lambda d: (d.first_at_ms, d.doc_ref, d.sku, d.site))
        return LotTrace(q.lot_id, tuple(out_stops[: q.limit]), tuple(out_docs[: q.limit]))

    async def totals(self, limit: int = 1_000_000) -> list[PairTotal]:
        acc: dict[tuple[str, str], list[int]] = {}
        for m in (r.movement for r in self._records.values()):
            row = acc.setdefault((m.sku, m.site), [0, 0, 0, 0])
            row[0] += 1
            row[1] = max(row[1], m.seq)
            row[2] += quant_delta(m)
            row[3] += m.held_delta if m.held_key is not None else 0
        return [PairTotal(sku, site, *row) for (sku, site), row in sorted(acc.items())][:limit]

    # ---- helpers ----

    def _movements(self, skus: Iterable[str], sites: Iterable[str], lot_id: str) -> Iterator[Movement]:
        sku_set, site_set = set(skus), set(sites)
        for record in self._records.values():
            m = record.movement
            if (sku_set and m.sku not in sku_set) or (site_set and m.site not in site_set):
                continue
            if lot_id and m.lot_id != lot_id:
                continue
            yield m

    def _sku(self, sku: str) -> Sku | None:
        known = self._skus.get(sku)
        return known[1] if known else None

    @staticmethod
    def _passes(q: BalanceQuery, key: QuantKey, expiry: int) -> bool:
        if q.statuses and key.status not in q.statuses:
            return False
        if q.lot_id and key.lot_id != q.lot_id:
            return False
        if not owner_matches(key.owner, q.owner):
            return False
        if q.bin_prefix and not (key.bin == q.bin_prefix or key.bin.startswith(q.bin_prefix + "/")):
            return False
        if q.expires_from_ms or q.expires_to_ms:
            if expiry == NO_EXPIRY_MS or expiry < q.expires_from_ms:
                return False
            if q.expires_to_ms and expiry >= q.expires_to_ms:
                return False
        return True

    @staticmethod
    def _dim_value(
        d: HistoryDimension, sku: str, site: str, key: QuantKey, lot: Lot | None, expiry: int, depth: int
    ) -> str:
        match d:
            case HistoryDimension.SKU:
                return sku
            case HistoryDimension.SITE:
                return site
            case HistoryDimension.BIN:
                return bin_cut(key.bin, depth)
            case HistoryDimension.STATUS:
                return key.status
            case HistoryDimension.OWNER:
                return key.owner
            case HistoryDimension.LOT:
                return key.lot_id
            case HistoryDimension.EXPIRY_DAY:
                return iso_day_of_ms(expiry)
            case HistoryDimension.RECEIVED_DAY:
                return iso_day_of_ms(lot.received_at_ms if lot else 0)
        raise ValueError(f"unknown dimension {d!r}")
