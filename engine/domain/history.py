"""History: what the history store keeps and how it answers (DESIGN.md §2, §4, §8).

A movement is the unit of history: the store keeps every journaled movement once, with
the shard batch that carried it, and answers every question by summing movements — a
balance as of T is the sum of the movements up to T (§4), consumption is the qty that
went to the customer, a lot's trace is the movements that name it.

This module holds the port's values (queries, answers), the argument checks every store
shares (so a bad query gets the same INVALID_ARGUMENT from any backend), and the
in-memory store that unit tests and the contract suite use as the reference. The
`HistoryStore` Protocol itself is in engine.domain.ports.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from engine.domain.catalog import Sku
from engine.domain.commands import MAX_BIN_DEPTH, check_bin, check_id, check_owner
from engine.domain.errors import FieldViolation, InvalidArgument
from engine.domain.model import MS_PER_DAY, NO_EXPIRY_MS, External, Lot, Movement, MovementKind, QuantKey

MAX_PAGE_SIZE = 1_000  # movements per page
MAX_ROWS = 10_000  # rows of one balance / exposure / trace / turnover answer
MAX_FILTER_VALUES = 1_000  # skus or sites listed in one query
MAX_SERIES_DAYS = 3_660  # ten years of days in one series
MAX_HORIZON_DAYS = 3_650
MAX_DOC_REF = 256

MovementKey = tuple[str, str, int]  # (sku, site, seq): seq is per cell and gap-free, so this names a movement


class HistoryDimension(StrEnum):
    """What a balance can be grouped by: the four dimensions (§2) plus the pair itself."""

    SKU = "sku"
    SITE = "site"
    BIN = "bin"  # location below the site, cut at `bin_depth` levels when > 0
    STATUS = "status"
    OWNER = "owner"
    LOT = "lot"
    EXPIRY_DAY = "expiry_day"  # the lot's effective expiry, ISO day (UTC); "" never expires
    RECEIVED_DAY = "received_day"


_LOT_DIMENSIONS = frozenset({HistoryDimension.EXPIRY_DAY, HistoryDimension.RECEIVED_DAY})


# ---- what goes in ----


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One movement, with the journal batch that carried it (for traceability)."""

    shard: str
    batch_seq: int
    position: int  # the journal message's stream position
    movement: Movement

    @property
    def key(self) -> MovementKey:
        m = self.movement
        return (m.sku, m.site, m.seq)


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    """What a sink inserts at once: whole journal batches (all the movements of a
    (shard, batch_seq) go in the same HistoryBatch). Inserting is idempotent: movements
    stored already are not stored again. `token` names the content, so a store can also
    recognise a retry of the very same batch whose first outcome was unknown."""

    records: tuple[HistoryRecord, ...]
    skus: tuple[Sku, ...] = ()  # catalog entries seen: their opened shelf life gives effective expiry
    token: str = ""
    skus_at_ms: int = 0  # engine time of the newest catalog entry (newest wins)
    # Some of its journal batches were delivered before (a retry, a redelivery): a store
    # that skips the check for positions newer than it holds must check these anyway.
    redelivered: bool = False


# ---- queries ----


@dataclass(frozen=True, slots=True)
class BalanceQuery:
    """Balances as of `as_of_ms` (movements with at_ms ≤ it), sliced and grouped. Empty
    filters do not filter. Effective expiry is in [expires_from_ms, expires_to_ms) when
    either bound is set (0 = unbounded); lots that never expire then do not match."""

    as_of_ms: int
    skus: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    bin_prefix: str = ""
    statuses: tuple[str, ...] = ()
    owner: str = ""  # "" any; "own"; "consignment" any supplier; "consignment:acme"
    lot_id: str = ""
    expires_from_ms: int = 0
    expires_to_ms: int = 0
    group_by: tuple[HistoryDimension, ...] = ()
    bin_depth: int = 0
    limit: int = MAX_ROWS


@dataclass(frozen=True, slots=True)
class BalanceRow:
    group: tuple[tuple[str, str], ...]  # (dimension, value) in group-by order
    qty: int
    held: int


@dataclass(frozen=True, slots=True)
class MovementQuery:
    """Movements in [from_ms, to_ms) (to 0: no end), ordered by (at_ms, sku, site, seq)."""

    sku: str = ""
    site: str = ""
    lot_id: str = ""
    doc_ref: str = ""
    hold_id: str = ""
    request_id: str = ""
    kinds: tuple[MovementKind, ...] = ()
    from_ms: int = 0
    to_ms: int = 0
    page_size: int = 100
    cursor: str = ""  # from the previous page's next_cursor


@dataclass(frozen=True, slots=True)
class MovementPage:
    records: tuple[HistoryRecord, ...]
    next_cursor: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """Daily consumption (qty issued to customers) over the UTC days that [from_ms, to_ms)
    touches; "" sku or site sums over all of them."""

    from_ms: int
    to_ms: int
    sku: str = ""
    site: str = ""


@dataclass(frozen=True, slots=True)
class DayQty:
    day: str  # ISO date, UTC
    qty: int


@dataclass(frozen=True, slots=True)
class TurnoverQuery:
    """Turnover over the UTC days that [from_ms, to_ms) touches, per (sku, site)."""

    from_ms: int
    to_ms: int
    skus: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    limit: int = MAX_ROWS


@dataclass(frozen=True, slots=True)
class TurnoverRow:
    """avg_on_hand is the mean of the end-of-day balances; turnover_days = avg_on_hand /
    average daily consumption (None without consumption: stock that does not turn)."""

    sku: str
    site: str
    days: int
    avg_on_hand: float
    consumed: int
    turnover_days: float | None


@dataclass(frozen=True, slots=True)
class ExpiryQuery:
    """Stock as of `as_of_ms` whose lot expires within `horizon_days` (expired included)."""

    as_of_ms: int
    horizon_days: int
    skus: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    limit: int = MAX_ROWS


@dataclass(frozen=True, slots=True)
class ExposureRow:
    sku: str
    site: str
    lot_id: str
    expires_at_ms: int  # effective expiry
    days_left: int  # floor((expiry − as_of) / day); negative: expired
    qty: int
    held: int


@dataclass(frozen=True, slots=True)
class DaysLeftTotal:
    days_left: int  # −1 stands for every expired lot
    qty: int
    lots: int


@dataclass(frozen=True, slots=True)
class Exposure:
    rows: tuple[ExposureRow, ...]  # by expiry, then sku, site, lot; at most `limit`
    totals: tuple[DaysLeftTotal, ...]  # over every matching lot, by days_left


@dataclass(frozen=True, slots=True)
class TraceQuery:
    lot_id: str
    sku: str = ""
    limit: int = MAX_ROWS


@dataclass(frozen=True, slots=True)
class LotStop:
    """A (sku, site) the lot passed through."""

    sku: str
    site: str
    received_at_ms: int  # the lot's dates in that cell (0: unknown)
    expires_at_ms: int
    first_at_ms: int
    last_at_ms: int
    qty_in: int  # into the site's quants from outside (receipts, positive counts)
    qty_out: int  # out of them (commits, consumption, negative counts)
    balance: int  # what is there now
    movements: int


@dataclass(frozen=True, slots=True)
class LotDocument:
    doc_ref: str
    sku: str
    site: str
    first_at_ms: int
    last_at_ms: int
    kinds: tuple[str, ...]  # sorted
    qty: int
    movements: int


@dataclass(frozen=True, slots=True)
class LotTrace:
    lot_id: str
    stops: tuple[LotStop, ...]  # by first_at_ms, sku, site
    documents: tuple[LotDocument, ...]  # by first_at_ms, doc_ref, sku, site


@dataclass(frozen=True, slots=True)
class PairTotal:
    """All-time totals of one (sku, site): what reconciliation compares with the live cell."""

    sku: str
    site: str
    movements: int
    max_seq: int
    qty: int
    held: int


# ---- shared rules: argument checks ----


def _check_time(value: int, name: str, out: list[FieldViolation]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        out.append(FieldViolation(name, "must be a non-negative epoch time in ms"))


def _check_ids(values: Sequence[str], name: str, out: list[FieldViolation]) -> None:
    if len(values) > MAX_FILTER_VALUES:
        out.append(FieldViolation(name, f"must list at most {MAX_FILTER_VALUES} values"))
        return
    for i, value in enumerate(values):
        check_id(value, f"{name}[{i}]", out)


def _check_range(from_ms: int, to_ms: int, out: list[FieldViolation], *, open_end: bool) -> None:
    _check_time(from_ms, "from_ms", out)
    _check_time(to_ms, "to_ms", out)
    if open_end and to_ms == 0:
        return
    if isinstance(from_ms, int) and isinstance(to_ms, int) and from_ms > to_ms:
        out.append(FieldViolation("from_ms", f"must be ≤ to_ms ({to_ms})"))


def _check_limit(value: int, name: str, top: int, out: list[FieldViolation]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        out.append(FieldViolation(name, f"must be in 1..{top}"))


def _raise(out: list[FieldViolation]) -> None:
    if out:
        raise InvalidArgument(out)


def validate_balance(q: BalanceQuery) -> None:
    out: list[FieldViolation] = []
    _check_time(q.as_of_ms, "as_of_ms", out)
    _check_ids(q.skus, "skus", out)
    _check_ids(q.sites, "sites", out)
    check_bin(q.bin_prefix, "bin_prefix", out)
    if len(q.statuses) > MAX_FILTER_VALUES:
        out.append(FieldViolation("statuses", f"must list at most {MAX_FILTER_VALUES} values"))
    check_owner(q.owner, "owner", out, filter_=True)
    check_id(q.lot_id, "lot_id", out, required=False)
    _check_time(q.expires_from_ms, "expires_from_ms", out)
    _check_time(q.expires_to_ms, "expires_to_ms", out)
    if q.expires_to_ms and q.expires_from_ms > q.expires_to_ms:
        out.append(FieldViolation("expires_from_ms", f"must be ≤ expires_to_ms ({q.expires_to_ms})"))
    seen: set[HistoryDimension] = set()
    for i, d in enumerate(q.group_by):
        if not isinstance(d, HistoryDimension):
            out.append(FieldViolation(f"group_by[{i}]", f"unknown dimension {d!r}"))
        elif d in seen:
            out.append(FieldViolation(f"group_by[{i}]", f"dimension {d.name} is listed twice"))
        seen.add(d)
    if not 0 <= q.bin_depth <= MAX_BIN_DEPTH:
        out.append(FieldViolation("bin_depth", f"must be in 0..{MAX_BIN_DEPTH}"))
    _check_limit(q.limit, "limit", MAX_ROWS, out)
    _raise(out)


def validate_movements(q: MovementQuery) -> None:
    out: list[FieldViolation] = []
    for name in ("sku", "site", "lot_id", "hold_id", "request_id"):
        check_id(getattr(q, name), name, out, required=False)
    if len(q.doc_ref) > MAX_DOC_REF:
        out.append(FieldViolation("doc_ref", f"must be at most {MAX_DOC_REF} characters"))
    for i, kind in enumerate(q.kinds):
        if not isinstance(kind, MovementKind):
            out.append(FieldViolation(f"kinds[{i}]", f"unknown movement kind {kind!r}"))
    _check_range(q.from_ms, q.to_ms, out, open_end=True)
    _check_limit(q.page_size, "page_size", MAX_PAGE_SIZE, out)
    if q.cursor:
        try:
            decode_cursor(q.cursor)
        except InvalidArgument as exc:
            out.extend(exc.violations)
    _raise(out)


def validate_series(q: SeriesQuery) -> None:
    out: list[FieldViolation] = []
    check_id(q.sku, "sku", out, required=False)
    check_id(q.site, "site", out, required=False)
    _check_range(q.from_ms, q.to_ms, out, open_end=False)
    if not out:
        if q.from_ms == q.to_ms:
            out.append(FieldViolation("to_ms", "must be after from_ms"))
        elif len(day_span(q.from_ms, q.to_ms)) > MAX_SERIES_DAYS:
            out.append(FieldViolation("to_ms", f"the range may span at most {MAX_SERIES_DAYS} days"))
    _raise(out)


def validate_turnover(q: TurnoverQuery) -> None:
    out: list[FieldViolation] = []
    _check_ids(q.skus, "skus", out)
    _check_ids(q.sites, "sites", out)
    _check_range(q.from_ms, q.to_ms, out, open_end=False)
    if not out:
        if q.from_ms == q.to_ms:
            out.append(FieldViolation("to_ms", "must be after from_ms"))
        elif len(day_span(q.from_ms, q.to_ms)) > MAX_SERIES_DAYS:
            out.append(FieldViolation("to_ms", f"the range may span at most {MAX_SERIES_DAYS} days"))
    _check_limit(q.limit, "limit", MAX_ROWS, out)
    _raise(out)


def validate_expiry(q: ExpiryQuery) -> None:
    out: list[FieldViolation] = []
    _check_time(q.as_of_ms, "as_of_ms", out)
    _check_limit(q.horizon_days, "horizon_days", MAX_HORIZON_DAYS, out)
    _check_ids(q.skus, "skus", out)
    _check_ids(q.sites, "sites", out)
    _check_limit(q.limit, "limit", MAX_ROWS, out)
    _raise(out)


def validate_trace(q: TraceQuery) -> None:
    out: list[FieldViolation] = []
    check_id(q.lot_id, "lot_id", out)
    check_id(q.sku, "sku", out, required=False)
    _check_limit(q.limit, "limit", MAX_ROWS, out)
    _raise(out)


# ---- shared rules: cursors, days, legs ----

_CURSOR_PREFIX = "m1."  # versioned: a later cursor format can coexist


def encode_cursor(at_ms: int, sku: str, site: str, seq: int) -> str:
    """The position after which the next page starts (opaque to callers)."""
    raw = json.dumps([at_ms, sku, site, seq], separators=(",", ":")).encode()
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str, str, int]:
    bad = InvalidArgument([FieldViolation("cursor", "is not a cursor this service issued")])
    if not cursor.startswith(_CURSOR_PREFIX) or len(cursor) > 1_024:
        raise bad
    body = cursor[len(_CURSOR_PREFIX) :]
    try:
        value = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    match value:
        case [int(at_ms), str(sku), str(site), int(seq)] if at_ms >= 0 and seq >= 0:
            return at_ms, sku, site, seq
    raise bad


def day_of(ms: int) -> int:
    """Days since the epoch (UTC) of an engine time."""
    return ms // MS_PER_DAY


def iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()


def iso_day_of_ms(ms: int) -> str:
    """The UTC day of a time, "" for 0 (not set / never expires)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat() if ms else ""


def day_span(from_ms: int, to_ms: int) -> range:
    """The days that [from_ms, to_ms) touches."""
    return range(day_of(from_ms), day_of(to_ms - 1) + 1)


def quant_legs(m: Movement) -> Iterator[tuple[QuantKey, int, int]]:
    """(quant, qty delta, held delta) for each quant a movement touches: what makes every
    balance a plain sum over movements."""
    if isinstance(m.src, QuantKey):
        yield m.src, -m.qty, 0
    if isinstance(m.dst, QuantKey):
        yield m.dst, m.qty, 0
    if m.held_key is not None and m.held_delta:
        yield m.held_key, 0, m.held_delta


def quant_delta(m: Movement) -> int:
    """How much a movement changes the qty inside its site (0 for internal moves)."""
    return (m.qty if isinstance(m.dst, QuantKey) else 0) - (m.qty if isinstance(m.src, QuantKey) else 0)


def unrepresentable(m: Movement) -> str:
    """Why history cannot keep a movement as one row ("" when it can): a row has one lot,
    so every quant it touches, and the dates it carries, must be of the movement's lot."""
    for key in (m.src, m.dst, m.held_key):
        if isinstance(key, QuantKey) and key.lot_id != m.lot_id:
            return f"movement {m.sku}@{m.site}#{m.seq} touches lot {key.lot_id!r}, not its own {m.lot_id!r}"
    if m.lot is not None and m.lot.lot_id != m.lot_id:
        return f"movement {m.sku}@{m.site}#{m.seq} carries the dates of lot {m.lot.lot_id!r}"
    return ""


def consumed_qty(m: Movement) -> int:
    """Issued to a customer: commits, consumption, and takes the books did not cover."""
    return m.qty if m.dst is External.CUSTOMER else 0


def effective_expiry_ms(lot: Lot | None, sku: Sku | None) -> int:
    if lot is None:
        return NO_EXPIRY_MS
    shelf_ms = sku.opened_shelf_life_days * MS_PER_DAY if sku is not None else 0
    return lot.effective_expiry_ms(shelf_ms)


def days_left(expiry_ms: int, as_of_ms: int) -> int:
    return (expiry_ms - as_of_ms) // MS_PER_DAY


def turnover_row(sku: str, site: str, days: int, numerator: int, consumed: int) -> TurnoverRow:
    """`numerator` = Σ end-of-day balances over the window; exact integers until the one
    division, so every store computes the very same floats."""
    return TurnoverRow(
        sku=sku,
        site=site,
        days=days,
        avg_on_hand=numerator / days,
        consumed=consumed,
        turnover_days=numerator / consumed if consumed else None,
    )


def bin_cut(bin_: str, depth: int) -> str:
    return "/".join(bin_.split("/")[:depth]) if depth > 0 else bin_


def needs_lots(q: BalanceQuery) -> bool:
    return bool(q.expires_from_ms or q.expires_to_ms or _LOT_DIMENSIONS.intersection(q.group_by))


def page_of(records: Sequence[HistoryRecord], page_size: int) -> MovementPage:
    """`records` holds up to page_size + 1 rows: the extra one only says "there is more"."""
    page = tuple(records[:page_size])
    if len(records) <= page_size or not page:
        return MovementPage(page, "")
    last = page[-1].movement
    return MovementPage(page, encode_cursor(last.at_ms, last.sku, last.site, last.seq))


def exposure_totals(rows: Iterable[ExposureRow]) -> tuple[DaysLeftTotal, ...]:
    acc: dict[int, list[int]] = {}
    for r in rows:
        bucket = acc.setdefault(max(r.days_left, -1), [0, 0])
        bucket[0] += r.qty
        bucket[1] += 1
    return tuple(DaysLeftTotal(d, qty, n) for d, (qty, n) in sorted(acc.items()))
