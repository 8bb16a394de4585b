"""The replenishment service: gathers a pair's inputs (demand history, position, supplier
terms, outside factors), has the planner compute its suggestion, keeps each changed
proposal as a new version, records planners' decisions and tells the actions.

It speaks only ports: the history store (daily consumption), a stock reader (the cells'
availability), the replenishment store, an action sink and a clock. engine.bootstrap.replenish
wires the real ones; tests wire in-memory ones. The maths lives in engine.replenish.planning.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import structlog

from engine.domain.cell import Dimension
from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from engine.domain.history import MovementQuery, SeriesQuery
from engine.domain.inventory import StockQuery
from engine.domain.model import Movement
from engine.domain.ports import Clock, HistoryStore
from engine.domain.statuses import DEFAULT_DICTIONARY, Role, StatusDictionary
from engine.replenish.actions import ActionSink, acceptance_events, suggested_event
from engine.replenish.demand import DemandBatch, Pair, ReturnDays, StockoutDays, net_of_returns
from engine.replenish.floor import NEVER_MS, PositionFloors
from engine.replenish.health import (
    HEALTH_DAYS,
    GiftCount,
    HealthCounts,
    HealthThresholds,
    PairHealth,
    finished,
    pair_counts,
)
from engine.replenish.store import (
    DECIDED,
    Decision,
    Factor,
    ReplenishStore,
    StaleWrite,
    Suggestion,
    SuggestionStamp,
    SupplierTerms,
    adoption_of,
    check_factors,
    check_supplier,
    pair_key,
)

log = structlog.get_logger("lotwise.replenish")

DAY_MS = 86_400_000
ENGINE_ACTOR = "engine"
MAX_WRITE_ATTEMPTS = 5  # a suggestion write that loses a race is recomputed at most this often
MAX_HEALTH_MOVEMENTS = 200_000  # a pair's 12 months read for its health, at most
HEALTH_TTL_S = 600.0  # a pair's health is recomputed at most this often
FACTORS_TTL_S = 5.0  # the factors calendar is read at most this often (a put here refreshes it at once)
# A pair's supplier terms on the trigger path: read at most this often (a put here, or a receipt of
# the pair, drops them at once). They change on a supplier edit, not on a scan.
SUPPLIER_TTL_S = 30.0
# A pair's daily inputs from the history (days' consumption, matched returns, stockout days) on
# the trigger path: read at most this often. Today's and yesterday's scans come from the
# follower's live count on top of them (_series), so a scan needs no read; a receipt, a return
# or an adjustment of the pair drops them (forget_days), and so does a new day.
DAY_INPUTS_TTL_S = 60.0
# A trigger batch with at least this many pairs whose terms are not at hand lists the keys of
# the stored terms (names only, one listing) instead of a get per pair: "no terms" is then
# known without a read. Not when the last listing held more than LISTING_PER_PAIR keys per such
# pair (a listing would cost more than the gets).
MIN_TERMS_LISTING = 32
# A trigger batch reads its pairs' positions in one stock query from this many pairs on; the
# query's rows (its skus × its sites, by status) are bounded by MAX_POSITION_ROWS (else per pair).
MIN_POSITION_QUERY = 16
MAX_POSITION_ROWS = 100_000
LISTING_PER_PAIR = 4
HISTORY_LAG_S = 10.0  # the history holds a change within this (its sink's busy window is 2 s)
MAX_CACHED_PAIRS = 100_000  # per-pair caches are bounded: past this, they start again empty
REASON_STALE = "STALE_SUGGESTION"
REASON_DECIDED = "SUGGESTION_DECIDED"
REASON_NOTHING = "NOTHING_TO_ORDER"
MAX_REASON = 512


@dataclass(frozen=True, slots=True)
class ReplenishConfig:
    history_days: int = 90  # daily demand read per pair (the SBC window)
    season_days: int = 0  # > 0: read this many days (≥ 395 gives a same-period-last-year index)
    service_level: float = 0.95
    buffer: float = 1.15  # the 15 % buffer for sudden orders: a demand multiplier
    review_days: float = 1.0
    default_lead_time_days: float = 7.0  # a pair whose supplier has no receipts yet
    weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    recompute_interval_s: float = 3600.0  # the scheduled full recompute (0: off)
    recompute_concurrency: int = 8


# ---- inputs ----


@dataclass(frozen=True, slots=True)
class StockPosition:
    on_hand: int  # sellable, unexpired, not held
    held: int
    in_transit: int  # arriving: in transit in, receiving, QC
    as_of_ms: int
    # Of those, units on a shipped transfer: (units, ETA ms; 0 = none given) per transfer.
    # The planner counts them by their ETA; the rest of `in_transit` counts as arriving now.
    arrivals: tuple[tuple[int, int], ...] = ()
    # The earliest expiry of the sellable units counted in `on_hand` (NEVER_MS: none expires);
    # at or before `as_of_ms` when a lot past its expiry is still in a sellable status.
    fresh_until_ms: int = NEVER_MS


class _Availability(Protocol):
    @property
    def rows(self) -> Sequence[Any]: ...


class TransitReader(Protocol):
    """Units of a sku shipped to a site and not taken in yet, with their ETA (the transfer desk)."""

    async def arriving(self, sku: str, site: str) -> Sequence[tuple[int, int]]: ...


class StockReader(Protocol):
    """The cells' availability of a pair (the gateway's read path). A reader that also has
    `query_stock` (engine.domain.inventory.StockQuery → rows per pair) gives a trigger batch its
    pairs' positions in one query (one scan per shard) instead of a call per pair."""

    async def get_availability(self, sku: str, site: str, group_by: Sequence[Dimension] = ...) -> Any: ...


# Stock on its way to being sellable here: in transit in, just received, in QC (by role).
_ARRIVING = frozenset(DEFAULT_DICTIONARY.role(r) for r in (Role.ARRIVING, Role.RECEIPT, Role.INSPECTION))


async def read_position(stock: StockReader, sku: str, site: str, now_ms: int) -> StockPosition:
    availability = await stock.get_availability(sku, site, (Dimension.STATUS,))
    return position_of_rows(availability.rows, now_ms)


def position_of_rows(rows: Iterable[Any], now_ms: int) -> StockPosition:
    """A pair's position from its cells' rows by status (SliceRow)."""
    on_hand = held = arriving = 0
    fresh_until = NEVER_MS
    for row in rows:
        status = dict(row.group).get("status", "")
        on_hand += row.available
        held += row.held
        if status in _ARRIVING:
            arriving += row.qty
        if row.available > 0 and row.earliest_expiry_ms:
            fresh_until = min(fresh_until, row.earliest_expiry_ms)
    return StockPosition(on_hand, held, arriving, now_ms, fresh_until_ms=fresh_until)


@dataclass(frozen=True, slots=True)
class PairInputs:
    """Everything the planner needs for one pair, read once."""

    sku: str
    site: str
    today: date
    demand: tuple[float, ...]  # daily net demand, oldest first: the last is today so far
    censored: tuple[bool, ...]  # stockout days (left out of the windows)
    position: StockPosition
    supplier: SupplierTerms | None
    factors: tuple[Factor, ...]  # the pair's outside factors that have not ended
    open_todos: int  # accepted, not received yet: counted in the position
    config: ReplenishConfig


@dataclass(frozen=True, slots=True)
class Planned:
    qty: int
    below_reorder_point: bool
    panel: Any  # engine.replenish.store.Panel
    trace: tuple[Any, ...]  # engine.replenish.store.RuleLine


Planner = Callable[[Sequence[PairInputs]], list[Planned]]


@dataclass(frozen=True, slots=True)
class RecomputeResult:
    pairs: int
    changed: int
    below_reorder_point: int
    duration_ms: float


@dataclass(slots=True)
class _Live:
    """What the journal follower counted per pair and day (the last two days), so a
    history that lags behind the journal does not read as a day without demand."""

    days: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _HealthCache:
    """Per pair, when its counts were read and the counts (health.pair_counts)."""

    entries: dict[str, tuple[float, PairHealth]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DayInputs:
    """A pair's daily inputs as read from the history (before today's live count)."""

    consumed: dict[str, float]  # ISO day → units issued to customers
    returned: dict[date, int]  # sale day → units of that day's sales returned
    stockouts: set[date]


def day_of(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


class ReplenishService:
    def __init__(
        self,
        store: ReplenishStore,
        stock: StockReader,
        planner: Planner,
        clock: Clock,
        *,
        history: HistoryStore | None = None,
        actions: ActionSink | None = None,
        config: ReplenishConfig = ReplenishConfig(),
        stockouts: StockoutDays | None = None,
        returns: ReturnDays | None = None,
        batch: DemandBatch | None = None,
        health_counts: HealthCounts | None = None,
        transit: TransitReader | None = None,
    ) -> None:
        self.store = store
        self.stock = stock
        self.planner = planner
        self.clock = clock
        self.history = history
        self.actions = actions
        self.config = config
        self.stockouts = stockouts
        self.returns = returns
        self.batch = batch  # the trigger's reads for many pairs at once (else one pair at a time)
        self.health_counts = health_counts  # health aggregated in the store (else from the movements)
        self.transit = transit
        self._live: dict[str, _Live] = {}
        self._received: dict[str, int] = {}  # supplier receipts not yet taken off the to-dos
        self._gifts: dict[str, GiftCount] = {}
        self._health = _HealthCache()
        # pair → ((counts read at, perishable, gifts, gifts without tax), health ok): _health_ok
        self._health_ok_memo: dict[str, tuple[tuple[float, bool, int, int], bool]] = {}
        self._terms: dict[str, tuple[float, SupplierTerms | None]] = {}  # pair → (read at, terms)
        self._terms_listing: tuple[float, frozenset[str]] | None = None  # (listed at, pairs with terms)
        self._days: dict[Pair, tuple[float, date, DayInputs]] = {}  # pair → (kept until, today then, inputs)
        self._changed: dict[Pair, float] = {}  # pair → when its history last changed otherwise than by a scan
        self._locks: dict[str, asyncio.Lock] = {}
        self._factors_cache: tuple[float, list[Factor]] | None = None
        # The trigger's path without reads: each pair's stored suggestion as last read or
        # written here (used while the store's stamp says it is still what is stored), and,
        # once a journal follower feeds them (follow_positions), floors under the positions.
        self._suggestions: dict[str, Suggestion] = {}
        self.floors: PositionFloors | None = None
        # The window's series from the history's inputs, per pair (before the live count).
        self._base: dict[Pair, tuple[DayInputs, date, list[float], tuple[bool, ...]]] = {}

    # ---- what the follower tells ----

    def note_consumed(self, sku: str, site: str, qty: int, at_ms: int) -> None:
        live = self._live.setdefault(pair_key(sku, site), _Live())
        day = day_of(at_ms).isoformat()
        live.days[day] = live.days.get(day, 0) + qty
        while len(live.days) > 2:  # bounded: today and yesterday
            live.days.pop(min(live.days))

    def note_received(self, sku: str, site: str, qty: int) -> None:
        key = pair_key(sku, site)
        self._received[key] = self._received.get(key, 0) + qty
        self._terms.pop(key, None)  # a receipt may come with new lead-time samples: read them again
        self.forget_days(sku, site)

    def forget_days(self, sku: str, site: str) -> None:
        """The pair's history changed otherwise than by a scan (a receipt, a return, an
        adjustment): its daily inputs are read again at its next recompute."""
        self._days.pop((sku, site), None)
        if len(self._changed) >= MAX_CACHED_PAIRS:
            self._changed.clear()
        self._changed[(sku, site)] = time.monotonic()

    def follow_positions(self, statuses: StatusDictionary = DEFAULT_DICTIONARY) -> None:
        """A journal follower will tell every movement (note_movement): keep floors under the
        moved pairs' positions so the trigger screens them without reading the cells.
        `statuses`: the cells' own dictionary (which statuses are sellable, which arriving)."""
        if self.floors is None:
            self.floors = PositionFloors(statuses)

    def note_movement(self, m: Movement, fresh: bool) -> None:
        """One journal movement, in journal order (`fresh`: not delivered before)."""
        if self.floors is not None:
            self.floors.note(m, fresh)

    def note_gift(self, sku: str, site: str, with_tax: bool) -> None:
        count = self._gifts.setdefault(pair_key(sku, site), GiftCount())
        count.gifts += 1
        count.without_tax += not with_tax

    # ---- inputs ----

    def _window(self, today: date) -> tuple[date, int]:
        days = max(self.config.history_days, self.config.season_days)
        # Today so far is the last day: a scan moves the short window at once (issue 14: the
        # roll-ups plus today's live consumption).
        return today - timedelta(days=days - 1), days

    async def _demand(self, sku: str, site: str, today: date) -> tuple[tuple[float, ...], tuple[bool, ...]]:
        return self._series(sku, site, today, await self._day_inputs(sku, site, today))

    async def _day_inputs(self, sku: str, site: str, today: date) -> DayInputs:
        first, _ = self._window(today)
        # The three reads are independent: one round trip's wait instead of three on a trigger.
        consumed, returned, stockouts = await asyncio.gather(
            self._consumed(sku, site, first, today),
            self._returned(sku, site, first, today),
            self._stockouts(sku, site, first, today),
        )
        return DayInputs(consumed, returned, stockouts)

    async def _day_inputs_many(self, pairs: Sequence[Pair], today: date) -> dict[Pair, DayInputs]:
        """The pairs' daily inputs in one aggregated read per kind (the batch port), the same
        answers as _day_inputs pair by pair; without a batch port, pair by pair."""
        if self.batch is None or self.history is None:
            found = await asyncio.gather(*(self._day_inputs(sku, site, today) for sku, site in pairs))
            return dict(zip(pairs, found, strict=True))
        first, _ = self._window(today)
        consumed, returned, stockouts = await asyncio.gather(
            self.batch.consumed_many(pairs, first, today),
            self.batch.returned_many(pairs, first, today) if self.returns is not None else _no_days(),
            self.batch.stockout_days_many(pairs, first, today - timedelta(days=1))
            if self.stockouts is not None and today != first
            else _no_stockouts(),
        )
        return {
            pair: DayInputs(
                {day.isoformat(): float(qty) for day, qty in consumed.get(pair, {}).items()},
                returned.get(pair, {}),
                stockouts.get(pair, set()),
            )
            for pair in pairs
        }

    async def _cached_day_inputs(self, pairs: Sequence[Pair], today: date) -> dict[Pair, DayInputs]:
        """The pairs' daily inputs as read within DAY_INPUTS_TTL_S today; the others read in
        one batch (_day_inputs_many) and kept."""
        now = time.monotonic()
        found: dict[Pair, DayInputs] = {}
        for pair in pairs:
            hit = self._days.get(pair)
            if hit is not None and hit[1] == today and now < hit[0]:
                found[pair] = hit[2]
        stale = [pair for pair in pairs if pair not in found]
        if stale:
            read = await self._day_inputs_many(stale, today)
            if len(self._days) + len(read) > MAX_CACHED_PAIRS:
                self._days.clear()
            for pair, got in read.items():
                # The history lags the journal by a batch window: inputs read just after a
                # change may not show it yet, so they are kept only until it surely does.
                settled_at = self._changed.get(pair, now - HISTORY_LAG_S) + HISTORY_LAG_S
                until = now + DAY_INPUTS_TTL_S if settled_at <= now else min(now + DAY_INPUTS_TTL_S, settled_at)
                self._days[pair] = (until, today, got)
            found.update(read)
        return found

    def _series(self, sku: str, site: str, today: date, got: DayInputs) -> tuple[tuple[float, ...], tuple[bool, ...]]:
        """The daily net demand and stockout days of the window from the history's inputs and
        the follower's live count (newer than the history for the last two days)."""
        first, days = self._window(today)
        base, censored = self._base_series(sku, site, today, got)
        series = list(base)
        live = self._live.get(pair_key(sku, site))
        for day, live_qty in (live.days if live is not None else {}).items():
            i = (date.fromisoformat(day) - first).days
            if 0 <= i < days:  # the history may not have the last scans yet: the follower's count is newer
                series[i] = max(series[i], float(live_qty))
        # net demand: customers' returns against its sales come off the sales' days
        values = tuple(net_of_returns(series, first, got.returned) if got.returned else series)
        return values, censored

    def _base_series(self, sku: str, site: str, today: date, got: DayInputs) -> tuple[list[float], tuple[bool, ...]]:
        """The window's consumption and stockout days from the history's inputs alone: the same
        for every recompute of the pair until its inputs are read again (kept per pair)."""
        hit = self._base.get((sku, site))
        if hit is not None and hit[0] is got and hit[1] == today:
            return hit[2], hit[3]
        first, days = self._window(today)
        # By day index (no per-day key of the window): a first look at many pairs builds one
        # window per pair, most of them without a day of demand.
        base = [0.0] * days
        for iso, qty in got.consumed.items():
            i = (date.fromisoformat(iso) - first).days
            if 0 <= i < days:
                base[i] = qty
        # Today is not over: never censored (its scans are the live signal).
        marks = [False] * days
        for out in got.stockouts:
            i = (out - first).days
            if 0 <= i < days:
                marks[i] = True
        censored = tuple(marks)
        if len(self._base) >= MAX_CACHED_PAIRS:
            self._base.clear()
        self._base[(sku, site)] = (got, today, base, censored)
        return base, censored

    async def _consumed(self, sku: str, site: str, first: date, today: date) -> dict[str, float]:
        if self.history is None:
            return {}
        q = SeriesQuery(day_start_ms(first), day_start_ms(today) + DAY_MS, sku, site)
        return {row.day: float(row.qty) for row in await self.history.consumption(q)}

    async def _returned(self, sku: str, site: str, first: date, today: date) -> dict[date, int]:
        return {} if self.returns is None else await self.returns.returned(sku, site, first, today)

    async def _stockouts(self, sku: str, site: str, first: date, today: date) -> set[date]:
        if self.stockouts is None or today == first:
            return set()
        return await self.stockouts.stockout_days(sku, site, first, today - timedelta(days=1))

    def _factors(self, factors: Sequence[Factor], sku: str, site: str, today: date) -> tuple[Factor, ...]:
        day = today.isoformat()
        return tuple(
            f for f in factors if (not f.sku or f.sku == sku) and (not f.site or f.site == site) and f.to_day >= day
        )

    async def _all_factors(self) -> list[Factor]:
        """The calendar, read once per FACTORS_TTL_S: a trigger recomputes many pairs a second."""
        cached = self._factors_cache
        if cached is not None and time.monotonic() - cached[0] < FACTORS_TTL_S:
            return cached[1]
        factors = await self.store.list_factors()
        self._factors_cache = (time.monotonic(), factors)
        return factors

    def live_today(self, sku: str, site: str) -> int:
        """Units the follower saw issued today (not yet a complete day of the history)."""
        live = self._live.get(pair_key(sku, site))
        return 0 if live is None else live.days.get(day_of(self.clock.now_ms()).isoformat(), 0)

    async def _position(
        self, sku: str, site: str, now_ms: int, known: tuple[int, StockPosition] | None = None
    ) -> StockPosition:
        """The cells' position of the pair (and the transfer desk's arrivals); it seeds the
        pair's floor when a journal follower keeps them (engine.replenish.floor). `known`: its
        floor token and the cells' position as read for a batch (_positions_many)."""
        if known is None:
            token = self.floors.begin((sku, site), now_ms) if self.floors is not None else 0
            cells = read_position(self.stock, sku, site, now_ms)
        else:
            token, cells = known[0], _ready(known[1])
        if self.transit is None:
            position = await cells
        else:
            position, arrivals = await asyncio.gather(cells, self.transit.arriving(sku, site))
            position = replace(position, arrivals=tuple(arrivals))
        if self.floors is not None:
            if position.arrivals:  # an ETA may move without a movement: read such a pair each time
                self.floors.drop((sku, site))
            else:
                self.floors.seed((sku, site), token, position.on_hand, position.in_transit, position.fresh_until_ms)
        return position

    async def _positions_many(self, pairs: Sequence[Pair], now_ms: int) -> dict[Pair, tuple[int, StockPosition]]:
        """The pairs' floor tokens and cells' positions from one stock query (each shard scans
        its cells once), as read_position gives them pair by pair. A pair the query has no row
        of (e.g. not in the catalog) is left out: it is read alone, with its own answer."""
        query = getattr(self.stock, "query_stock", None)
        skus = tuple(sorted({sku for sku, _ in pairs}))
        sites = tuple(sorted({site for _, site in pairs}))
        if query is None or len(pairs) < MIN_POSITION_QUERY or len(skus) * len(sites) > MAX_POSITION_ROWS // 8:
            return {}
        floors = self.floors
        tokens = {pair: floors.begin(pair, now_ms) if floors is not None else 0 for pair in pairs}
        try:
            rows = await query(StockQuery(skus, sites, group_by=(Dimension.STATUS,), limit=MAX_POSITION_ROWS))
        except Exception as exc:  # a shortcut: each pair is read alone instead
            log.warning("trigger batch positions not queried; read pair by pair", error=f"{type(exc).__name__}: {exc}")
            return {}
        by_pair: dict[Pair, list[Any]] = {pair: [] for pair in pairs}
        for r in rows:
            got = by_pair.get((r.sku, r.site))
            if got is not None:
                got.append(r.row)
        return {pair: (tokens[pair], position_of_rows(got, now_ms)) for pair, got in by_pair.items() if got}

    async def inputs(
        self, sku: str, site: str, factors: Sequence[Factor] | None = None, days: DayInputs | None = None
    ) -> PairInputs:
        """`days`: the pair's daily inputs read already (a batch), else read here."""
        return (await self._read(sku, site, factors, days))[0]

    async def _supplier(self, sku: str, site: str, cached: bool) -> SupplierTerms | None:
        """The pair's supplier terms; `cached`: as read within SUPPLIER_TTL_S (the trigger path)."""
        key = pair_key(sku, site)
        hit = self._terms.get(key)
        if cached and hit is not None and time.monotonic() - hit[0] < SUPPLIER_TTL_S:
            return hit[1]
        terms = await self.store.get_supplier(sku, site)
        if len(self._terms) >= MAX_CACHED_PAIRS:
            self._terms.clear()
        self._terms[key] = (time.monotonic(), terms)
        return terms

    async def _list_terms(self, pairs: Sequence[Pair]) -> None:
        """Before a trigger batch reads its pairs: when many lack cached terms, one listing of
        the stored terms' keys (kept SUPPLIER_TTL_S, taken again once a pair of the batch was
        received after it) tells which have none; those are cached as such, the others read."""
        now = time.monotonic()
        missing = [
            (sku, site)
            for sku, site in pairs
            if (hit := self._terms.get(pair_key(sku, site))) is None or now - hit[0] >= SUPPLIER_TTL_S
        ]
        listing = self._terms_listing
        if len(missing) < MIN_TERMS_LISTING or (listing and len(listing[1]) > LISTING_PER_PAIR * len(missing)):
            return
        if (
            listing is None
            or now - listing[0] >= SUPPLIER_TTL_S
            or any(self._changed.get(pair, -1.0) >= listing[0] for pair in missing)
        ):
            listed_at = time.monotonic()
            listing = self._terms_listing = (listed_at, frozenset(await self.store.supplier_keys()))
        if len(self._terms) + len(missing) > MAX_CACHED_PAIRS:
            self._terms.clear()
        for sku, site in missing:
            key = pair_key(sku, site)
            if key not in listing[1]:
                self._terms[key] = (listing[0], None)

    async def _read(
        self,
        sku: str,
        site: str,
        factors: Sequence[Factor] | None = None,
        days: DayInputs | None = None,
        *,
        cached_terms: bool = False,
        position: tuple[int, StockPosition] | None = None,
        index: bool = True,
    ) -> tuple[PairInputs, Suggestion | None]:
        """The pair's inputs and its stored suggestion as read with them (one read of each);
        `position`: its floor token and cells' position as read for a batch; `index`: trust
        the store's "none stored" (not after a write lost a race: the index may lag)."""
        now_ms = self.clock.now_ms()
        today = day_of(now_ms)
        if factors is None:
            factors = await self._all_factors()
        (demand, censored), cells, supplier, current = await asyncio.gather(
            self._demand(sku, site, today) if days is None else _ready(self._series(sku, site, today, days)),
            self._position(sku, site, now_ms, position),
            self._supplier(sku, site, cached_terms),
            self._stored(sku, site, index),
        )
        self._remember(sku, site, current)
        open_todos = max(0, (current.panel.open_todos if current else 0) - self._received.get(pair_key(sku, site), 0))
        inputs = PairInputs(
            sku,
            site,
            today,
            demand,
            censored,
            cells,
            supplier,
            self._factors(factors, sku, site, today),
            open_todos,
            self.config,
        )
        return inputs, current

    async def _stored(self, sku: str, site: str, index: bool = True) -> Suggestion | None:
        """The pair's stored suggestion; none without a read when the store knows none is
        stored (a first look: the write that follows is conditional on "none", so a suggestion
        another gateway wrote meanwhile makes it StaleWrite and the pair is read again)."""
        if index and self.store.suggestion_absent(sku, site):
            return None
        return await self.store.get_suggestion(sku, site)

    def _remember(self, sku: str, site: str, s: Suggestion | None) -> None:
        key = pair_key(sku, site)
        if s is None:
            self._suggestions.pop(key, None)
            return
        if key not in self._suggestions and len(self._suggestions) >= MAX_CACHED_PAIRS:
            self._suggestions.clear()
        self._suggestions[key] = s

    def _known_suggestion(self, sku: str, site: str) -> Suggestion | None:
        """The pair's stored suggestion without a read: the one last read or written here, if
        the store's stamp (e.g. its bucket's own stream) says it is still what is stored."""
        kept = self._suggestions.get(pair_key(sku, site))
        if kept is None:
            return None
        stamp = self.store.suggestion_stamp(sku, site)
        return kept if stamp is not None and stamp == SuggestionStamp.of(kept) else None

    def _known_inputs(
        self, sku: str, site: str, factors: Sequence[Factor], days: DayInputs, now_ms: int, today: date
    ) -> tuple[PairInputs, Suggestion] | None:
        """The pair's inputs for the trigger's screen with no read at all — its floored position
        (engine.replenish.floor), its cached terms and its known stored suggestion — or None
        when one of them is not at hand (then it is read). Only for the screen: a pair it
        finds at or below its reorder point is recomputed from fresh reads."""
        if self.floors is None:
            return None
        floored = self.floors.position((sku, site), now_ms)
        if floored is None:
            return None
        key = pair_key(sku, site)
        terms = self._terms.get(key)
        if terms is None or time.monotonic() - terms[0] >= SUPPLIER_TTL_S:
            return None
        current = self._known_suggestion(sku, site)
        if current is None:
            return None
        demand, censored = self._series(sku, site, today, days)
        inputs = PairInputs(
            sku,
            site,
            today,
            demand,
            censored,
            # held 0: the policy's position is on hand + held − held, i.e. the available floor
            StockPosition(floored.available, 0, floored.in_transit, now_ms),
            terms[1],
            self._factors(factors, sku, site, today),
            max(0, current.panel.open_todos - self._received.get(key, 0)),
            self.config,
        )
        return inputs, current

    # ---- recomputing ----

    async def recompute(
        self,
        sku: str,
        site: str,
        trigger: str,
        *,
        factors: Sequence[Factor] | None = None,
        days: DayInputs | None = None,
        read: tuple[PairInputs, Suggestion | None] | None = None,
    ) -> Suggestion:
        """The pair's suggestion now: a new version when the proposal changed. `factors` and
        `days`: read already for a batch; `read`: the pair's inputs and stored suggestion read
        already (the trigger's screen). A retry after a lost race reads everything afresh: the
        write is conditional on the version read, so inputs read a moment ago are safe."""
        async with self._lock(sku, site):
            index = True
            for _ in range(MAX_WRITE_ATTEMPTS):
                inputs, current = read if read is not None else await self._read(sku, site, factors, days, index=index)
                factors = days = read = None
                planned = self.planner([inputs])[0]
                try:
                    return await self._keep(inputs, planned, trigger, current)
                except StaleWrite:
                    index = False  # another gateway wrote meanwhile (the index may not show it yet): read again
            raise FailedPrecondition(REASON_STALE, f"the suggestion of {sku}@{site} kept changing; try again")

    async def recompute_many(
        self, pairs: Sequence[Pair], trigger: str, concurrency: int | None = None
    ) -> list[Suggestion | Exception]:
        """The trigger's batch: the pairs' daily inputs and data health read in one aggregated
        query per kind for all of them, each pair's position, terms and stored suggestion read
        once, then one screen of the whole batch (the planner's batch kernels). A pair the
        screen finds above its reorder point whose stored suggestion a plan ordering nothing
        would not change (_stays) costs no plan and no write: its stored suggestion is already
        what recompute() would leave. The others are recomputed as by recompute() (at most
        recompute_concurrency at a time). Per pair its suggestion or the error that stopped it.

        A pair with a floor under its position (a journal follower feeds them), cached terms and
        a stored suggestion known without a read (_known_inputs) is screened on those with no
        read at all; if the screen does not let it go, it is recomputed from fresh reads."""
        if not pairs:
            return []
        now_ms = self.clock.now_ms()
        today = day_of(now_ms)
        days, factors, _, _ = await asyncio.gather(
            self._cached_day_inputs(pairs, today),
            self._all_factors(),
            self._warm_health(pairs),
            self._list_terms(pairs),
        )
        limit = asyncio.Semaphore(max(1, concurrency or self.config.recompute_concurrency))

        async def read(sku: str, site: str) -> tuple[PairInputs, Suggestion | None]:
            async with limit:
                pair = (sku, site)
                return await self._read(sku, site, factors, days[pair], cached_terms=True, position=cells.get(pair))

        found: list[Any] = [
            self._known_inputs(sku, site, factors, days[(sku, site)], now_ms, today) for sku, site in pairs
        ]
        await asyncio.sleep(0)  # a batch's work in pieces: the orders' calls wait for none of it long
        known = {n for n, got in enumerate(found) if got is not None}  # screened without a read
        unread = [n for n in range(len(pairs)) if n not in known]
        cells = await self._positions_many([pairs[n] for n in unread], now_ms)
        read_now = await asyncio.gather(*(read(*pairs[n]) for n in unread), return_exceptions=True)
        _reraise_cancelled(list(read_now))
        for n, got in zip(unread, read_now, strict=True):
            found[n] = got
        ok = [n for n, got in enumerate(found) if not isinstance(got, BaseException)]
        reread: set[int] = set()
        for n, stays in zip(ok, await self._unchanged([found[n] for n in ok]), strict=True):
            if stays:
                found[n] = found[n][1]
            elif n in known:
                reread.add(n)

        async def one(n: int) -> Suggestion:
            async with limit:
                if n in reread:  # screened on a floor: planned from fresh reads (the cells' position)
                    sku, site = pairs[n]
                    return await self.recompute(sku, site, trigger, factors=factors, days=days[(sku, site)])
                inputs, current = found[n]
                return await self.recompute(inputs.sku, inputs.site, trigger, read=(inputs, current))

        planned = [n for n in ok if isinstance(found[n], tuple)]
        results = await asyncio.gather(*(one(n) for n in planned), return_exceptions=True)
        _reraise_cancelled(list(results))
        for n, result in zip(planned, results, strict=True):
            found[n] = result
        return found

    async def _unchanged(self, reads: Sequence[tuple[PairInputs, Suggestion | None]]) -> list[bool]:
        """Per read pair, whether a recompute now would store nothing: the planner's batch
        screen finds it above its reorder point (so its plan orders nothing) and _stays."""
        screen: Callable[[Sequence[PairInputs]], list[bool]] | None = getattr(self.planner, "screen", None)
        # A first look (nothing stored) is planned in full whatever the screen says (_stays):
        # only the pairs with a stored suggestion are screened.
        stored = [n for n, (_, current) in enumerate(reads) if current is not None]
        out = [False] * len(reads)
        if screen is None or not stored:
            return out
        try:
            hits = screen([reads[n][0] for n in stored])
        except Exception as exc:  # the screen is a shortcut: without it, every pair is planned in full
            log.warning("trigger screen failed; planning the batch in full", error=f"{type(exc).__name__}: {exc}")
            return out
        await asyncio.sleep(0)  # the screen was one piece of the batch's work, the checks below another
        for n, hit in zip(stored, hits, strict=True):
            out[n] = not hit and await self._stays(*reads[n])
        return out

    async def _stays(self, inputs: PairInputs, current: Suggestion | None) -> bool:
        """Whether `current` stays as it is when the pair's plan orders nothing (qty 0, not below
        its reorder point): the same test as _keep's, for that plan. A first look at a pair is
        planned in full (its panel says why nothing is ordered)."""
        if current is None:
            return False
        if self._received.get(pair_key(inputs.sku, inputs.site)) and current.panel.open_todos:
            return False  # the to-dos go down: a new version
        if current.state in DECIDED:
            return True  # a decided one stays until a new need shows
        if current.state != "none" or current.qty or current.below_reorder_point:
            return False  # an open one must now say "none"
        supplier = inputs.supplier.supplier if inputs.supplier else ""
        return current.supplier == supplier and current.flagged == (not await self._health_ok(inputs))

    async def _health_ok(self, inputs: PairInputs) -> bool:
        """_health_with(…).ok, kept per pair for as long as what it is finished from stays: the
        cached counts (the same read), perishable or not, the gifts so far (the trigger asks it
        of every moved pair that stays above its reorder point)."""
        key = pair_key(inputs.sku, inputs.site)
        cached = self._health.entries.get(key)
        if cached is None or time.monotonic() - cached[0] >= HEALTH_TTL_S:
            return (await self._health_with(inputs.sku, inputs.site, inputs.supplier)).ok
        gifts = self._gifts.get(key)
        perishable = bool(inputs.supplier and inputs.supplier.shelf_life_days > 0)
        memo = (cached[0], perishable, gifts.gifts if gifts else 0, gifts.without_tax if gifts else 0)
        hit = self._health_ok_memo.get(key)
        if hit is not None and hit[0] == memo:
            return hit[1]
        ok = self._finished(cached[1], inputs.supplier).ok
        if key not in self._health_ok_memo and len(self._health_ok_memo) >= MAX_CACHED_PAIRS:
            self._health_ok_memo.clear()
        self._health_ok_memo[key] = (memo, ok)
        return ok

    async def recompute_all(self, trigger: str = "schedule") -> RecomputeResult:
        """Every pair with a supplier or a suggestion, planned in batches (the batch kernels)."""
        started = time.perf_counter()
        pairs = sorted(
            {(t.sku, t.site) for t in await self.store.list_suppliers()}
            | {(s.sku, s.site) for s in await self.store.list_suggestions()}
        )
        factors = await self.store.list_factors()
        changed = below = 0
        chunk = max(1, self.config.recompute_concurrency) * 32
        for i in range(0, len(pairs), chunk):
            part = pairs[i : i + chunk]
            days, _ = await asyncio.gather(
                self._day_inputs_many(part, day_of(self.clock.now_ms())), self._warm_health(part)
            )
            found = await asyncio.gather(
                *(self.inputs(sku, site, factors, days[(sku, site)]) for sku, site in part), return_exceptions=True
            )
            inputs = [i for i in found if isinstance(i, PairInputs)]
            for (sku, site), failed in zip(part, found, strict=True):
                if isinstance(failed, BaseException) and not isinstance(failed, Exception):
                    raise failed  # cancelled: stop here
                if isinstance(failed, Exception):  # e.g. a pair gone from the catalog: the rest goes on
                    log.warning("pair not recomputed", sku=sku, site=site, error=f"{type(failed).__name__}: {failed}")
            inputs = await self._screened(inputs)
            for got, planned in zip(inputs, self.planner(inputs), strict=True):
                before = await self.store.get_suggestion(got.sku, got.site)
                try:
                    kept = await self._keep(got, planned, trigger, before)
                except StaleWrite:
                    kept = await self.recompute(got.sku, got.site, trigger)
                changed += before is None or kept.version != before.version
                below += kept.below_reorder_point
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        log.info("replenishment recomputed", pairs=len(pairs), changed=changed, below=below, duration_ms=duration_ms)
        return RecomputeResult(len(pairs), changed, below, duration_ms)

    async def _screened(self, inputs: list[PairInputs]) -> list[PairInputs]:
        """The pairs worth planning in full: all but those a recompute now would store nothing
        for — the trigger's own test (_unchanged), so a supplier or data-health flag that
        changed since the stored suggestion gets a new version on the schedule too."""
        currents = await asyncio.gather(*(self.store.get_suggestion(got.sku, got.site) for got in inputs))
        stays = await self._unchanged(list(zip(inputs, currents, strict=True)))
        return [got for got, unchanged in zip(inputs, stays, strict=True) if not unchanged]

    def _lock(self, sku: str, site: str) -> asyncio.Lock:
        key = pair_key(sku, site)
        lock = self._locks.get(key)
        if lock is None:
            if len(self._locks) > 100_000:  # bounded: idle locks go (none is held between awaits here)
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _keep(self, inputs: PairInputs, planned: Planned, trigger: str, current: Suggestion | None) -> Suggestion:
        """Store `planned` as a new version when it changes `current` (the stored suggestion as
        read with the inputs; the write is conditional on its version: StaleWrite otherwise)."""
        sku, site = inputs.sku, inputs.site
        health = await self._health_with(sku, site, inputs.supplier)
        panel = replace(
            planned.panel,
            open_todos=inputs.open_todos,
            health_flags=(*planned.panel.health_flags, *health.problems),
        )
        candidate = Suggestion(
            sku=sku,
            site=site,
            version=(current.version + 1) if current else 1,
            state="open" if planned.qty > 0 else "none",
            qty=planned.qty,
            panel=panel,
            trace=planned.trace,
            supplier=inputs.supplier.supplier if inputs.supplier else "",
            flagged=not health.ok,
            below_reorder_point=planned.below_reorder_point,
            created_at_ms=self.clock.now_ms(),
            trigger=trigger,
        )
        received = self._received.pop(pair_key(sku, site), 0)
        if current is not None and not self._is_new(current, candidate, received):
            if received:
                self._received[pair_key(sku, site)] = self._received.get(pair_key(sku, site), 0) + received
            return current
        try:
            await self.store.put_suggestion(candidate, current.version if current else 0)
        except BaseException:
            if received:
                self._received[pair_key(sku, site)] = self._received.get(pair_key(sku, site), 0) + received
            raise
        self._remember(sku, site, candidate)
        await self._tell_new(candidate, inputs.supplier)
        return candidate

    @staticmethod
    def _is_new(current: Suggestion, candidate: Suggestion, received: int) -> bool:
        if received and current.panel.open_todos:
            return True  # the to-dos went down: the position changed
        if current.state in DECIDED:
            return candidate.qty > 0  # a decided one stays until a new need shows
        return not current.same_proposal(candidate)

    async def _tell_new(self, s: Suggestion, terms: SupplierTerms | None) -> None:
        if s.state != "open":
            return
        log.info("replenishment suggested", sku=s.sku, site=s.site, version=s.version, qty=s.qty, flagged=s.flagged)
        if self.actions is not None:
            await self.actions.publish(suggested_event(s, terms, self.clock.now_ms()))
        if terms is not None and terms.auto_order and not s.flagged:
            await self._decide(s, ENGINE_ACTOR, "accepted", s.qty, "automatic: supplier terms allow it", True)

    # ---- decisions ----

    async def _current(self, sku: str, site: str) -> Suggestion:
        found = await self.store.get_suggestion(sku, site)
        if found is None:
            raise NotFound("suggestion", f"{sku}@{site}")
        return found

    async def decide(
        self, actor: str, sku: str, site: str, version: int, outcome: str, qty: int, reason: str
    ) -> Suggestion:
        """A planner's decision on `version` (accepted, rejected, overridden)."""
        _check_decision(sku, site, version, outcome, qty, reason)
        async with self._lock(sku, site):
            current = await self._current(sku, site)
            if current.version != version:
                raise FailedPrecondition(
                    REASON_STALE,
                    f"version {version} of {sku}@{site} is not the current one ({current.version})",
                    {"current_version": str(current.version)},
                )
            if current.state in DECIDED:
                same = current.state == outcome and current.decided_by == actor
                if same and (outcome != "overridden" or current.decided_qty == qty):
                    return current  # a retry: answered as the first time
                raise FailedPrecondition(
                    REASON_DECIDED, f"version {version} of {sku}@{site} was {current.state} already", {}
                )
            if current.state != "open" and outcome not in {"rejected", "overridden"}:
                raise FailedPrecondition(REASON_NOTHING, f"{sku}@{site} needs no order at version {version}", {})
            decided_qty = current.qty if outcome == "accepted" else (qty if outcome == "overridden" else 0)
            return await self._decide(current, actor, outcome, decided_qty, reason, False)

    async def _decide(
        self, current: Suggestion, actor: str, outcome: str, qty: int, reason: str, automatic: bool
    ) -> Suggestion:
        now = self.clock.now_ms()
        ordered = qty if outcome in ("accepted", "overridden") else 0
        decided = replace(
            current,
            state=outcome,
            decided_qty=ordered,
            reason=reason,
            decided_by=actor,
            decided_at_ms=now,
            automatic=automatic,
            panel=replace(current.panel, open_todos=current.panel.open_todos + ordered),
        )
        await self.store.put_suggestion(decided, current.version)
        self._remember(current.sku, current.site, decided)
        if not automatic:
            rules = tuple(sorted({line.rule for line in current.trace if line.changed}))
            await self.store.add_decision(
                Decision(current.sku, current.site, current.version, outcome, actor, rules, now)
            )
        log.info(
            "suggestion decided",
            sku=current.sku,
            site=current.site,
            version=current.version,
            outcome=outcome,
            actor=actor,
            qty=ordered,
        )
        if ordered and self.actions is not None:
            terms = await self.store.get_supplier(current.sku, current.site)
            for event in acceptance_events(decided, terms, actor, now):
                await self.actions.publish(event)
        return decided

    # ---- reads ----

    async def explain(self, sku: str, site: str) -> Suggestion:
        return await self._current(sku, site)

    async def suggestions(self, site: str = "", sku: str = "") -> list[Suggestion]:
        return await self.store.list_suggestions(site, sku)

    async def adoption(self) -> Any:
        return adoption_of(await self.store.list_decisions())

    # ---- master data ----

    async def put_supplier(self, terms: SupplierTerms) -> SupplierTerms:
        checked = check_supplier(terms)
        await self.stock.get_availability(checked.sku, checked.site)  # NotFound for a pair the catalog lacks
        await self.store.put_supplier(checked)
        self._health.entries.pop(pair_key(checked.sku, checked.site), None)
        self._terms.pop(pair_key(checked.sku, checked.site), None)
        self._terms_listing = None  # it may say "no terms" of this pair
        return checked

    async def get_supplier(self, sku: str, site: str) -> SupplierTerms:
        found = await self.store.get_supplier(sku, site)
        if found is None:
            raise NotFound("supplier", f"{sku}@{site}")
        return found

    async def put_factors(self, factors: list[Factor]) -> int:
        await self.store.put_factors(check_factors(factors))
        self._factors_cache = None
        return len(factors)

    # ---- data health ----

    async def health_of(
        self, sku: str, site: str, terms: SupplierTerms | None = None, fresh: bool = False
    ) -> PairHealth:
        """The pair's data health: its counts (cached HEALTH_TTL_S; `fresh` reads them again)
        finished with its supplier terms, its gifts so far and the thresholds."""
        key = pair_key(sku, site)
        cached = self._health.entries.get(key)
        if cached is not None and not fresh and time.monotonic() - cached[0] < HEALTH_TTL_S:
            counts = cached[1]
        else:
            counts = (await self._read_counts([(sku, site)]))[(sku, site)]
        if terms is None:
            terms = await self.store.get_supplier(sku, site)
        return self._finished(counts, terms)

    def _finished(self, counts: PairHealth, terms: SupplierTerms | None) -> PairHealth:
        return finished(
            counts,
            perishable=bool(terms and terms.shelf_life_days > 0),
            gifts=self._gifts.get(pair_key(counts.sku, counts.site)),
            thresholds=self.config.thresholds,
        )

    async def _health_with(self, sku: str, site: str, terms: SupplierTerms | None) -> PairHealth:
        """The pair's health given its supplier terms as read for its recompute (None: none)."""
        cached = self._health.entries.get(pair_key(sku, site))
        if cached is None or time.monotonic() - cached[0] >= HEALTH_TTL_S:
            return self._finished((await self._read_counts([(sku, site)]))[(sku, site)], terms)
        return self._finished(cached[1], terms)

    async def _warm_health(self, pairs: Sequence[Pair]) -> None:
        """Reads, in one go, the counts of the pairs whose cached counts are missing or old."""
        now = time.monotonic()
        stale = [
            (sku, site)
            for sku, site in pairs
            if (hit := self._health.entries.get(pair_key(sku, site))) is None or now - hit[0] >= HEALTH_TTL_S
        ]
        if stale:
            await self._read_counts(stale)

    async def _read_counts(self, pairs: Sequence[Pair]) -> dict[Pair, PairHealth]:
        """The pairs' health counts over the last HEALTH_DAYS, aggregated by the history when it
        can (one query for all), else from each pair's movements; cached."""
        if self.history is None:
            found = {(sku, site): PairHealth(site, sku) for sku, site in pairs}
        elif self.health_counts is not None:
            counted = await self.health_counts.health_counts(pairs, self.clock.now_ms() - HEALTH_DAYS * DAY_MS)
            found = {(sku, site): counted.get((sku, site)) or PairHealth(site, sku) for sku, site in pairs}
        else:
            found = {(sku, site): pair_counts(sku, site, await self._movements(sku, site)) for sku, site in pairs}
        if len(self._health.entries) + len(found) > 100_000:
            self._health.entries.clear()
        now = time.monotonic()
        for (sku, site), counts in found.items():
            self._health.entries[pair_key(sku, site)] = (now, counts)
        return found

    async def _movements(self, sku: str, site: str) -> list[Movement]:
        if self.history is None:
            return []
        from_ms = self.clock.now_ms() - HEALTH_DAYS * DAY_MS
        out: list[Movement] = []
        cursor = ""
        while len(out) < MAX_HEALTH_MOVEMENTS:
            page = await self.history.movements(
                MovementQuery(sku=sku, site=site, from_ms=from_ms, page_size=1_000, cursor=cursor)
            )
            out.extend(r.movement for r in page.records)
            cursor = page.next_cursor
            if not cursor:
                break
        return out

    async def data_health(self, site: str = "", sku: str = "") -> list[PairHealth]:
        pairs = sorted(
            {(t.site, t.sku) for t in await self.store.list_suppliers()}
            | {(s.site, s.sku) for s in await self.store.list_suggestions()}
        )
        chosen = [
            (p_site, p_sku) for p_site, p_sku in pairs if (not site or p_site == site) and (not sku or p_sku == sku)
        ]
        if site and sku and (site, sku) not in chosen:
            chosen.append((site, sku))
        counts = await self._read_counts([(p_sku, p_site) for p_site, p_sku in chosen])  # the full 12 months, at once
        return [
            self._finished(counts[(p_sku, p_site)], await self.store.get_supplier(p_sku, p_site))
            for p_site, p_sku in chosen
        ]


def _reraise_cancelled(found: list[Any]) -> None:
    for got in found:
        if isinstance(got, BaseException) and not isinstance(got, Exception):
            raise got  # cancelled: stop here


async def _ready(value: Any) -> Any:
    return value


async def _no_days() -> dict[Pair, dict[date, int]]:
    return {}


async def _no_stockouts() -> dict[Pair, set[date]]:
    return {}


def _check_decision(sku: str, site: str, version: int, outcome: str, qty: int, reason: str) -> None:
    out: list[FieldViolation] = []
    if not sku:
        out.append(FieldViolation("sku", "required"))
    if not site:
        out.append(FieldViolation("site", "required"))
    if version <= 0:
        out.append(FieldViolation("version", "required: the version being decided (≥ 1)"))
    if outcome in ("rejected", "overridden") and not reason.strip():
        out.append(FieldViolation("reason", f"required to {'reject' if outcome == 'rejected' else 'override'}"))
    if len(reason) > MAX_REASON:
        out.append(FieldViolation("reason", f"at most {MAX_REASON} characters"))
    if outcome == "overridden" and qty <= 0:
        out.append(FieldViolation("qty", "must be > 0 (reject to order nothing)"))
    if out:
        raise InvalidArgument(out)
