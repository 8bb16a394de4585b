"""Commands a cell accepts (imperative) and the replies it gives (past tense).

Each command names one (sku, site) cell and carries the caller's request id, which makes
it idempotent. `validate()` is pure and checks everything that needs no state, so a
gateway can refuse bad input before it costs a shard call; the cell validates again.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from engine.domain.errors import FieldViolation, InvalidArgument
from engine.domain.holds import MAX_LINES, check_line_count, check_ttl
from engine.domain.model import Allocation, External, Finance, HoldView, Terms
from engine.domain.statuses import DEFAULT_DICTIONARY, Role, StatusDictionary

MAX_ID_LEN = 128
MAX_DOC_REF_LEN = 256
# The request ids of the engine's own compensating releases (the abort of a multi-line hold
# that failed) end with this suffix; a caller's request id may not, so the two namespaces
# never meet (a caller id equal to an abort id would make the abort a RequestConflict).
UNDO_SUFFIX = "#undo"
MAX_BIN_DEPTH = 8
MAX_QTY = 10**12  # far above any real stock; keeps sums well inside int64
_ID_RE = re.compile(r"^[A-Za-z0-9._:\-@#+]+$")
_BIN_SEG_RE = re.compile(r"^[A-Za-z0-9._\-]+$")
_OWNER_RE = re.compile(r"^(own|consignment:[^\s:]+|custody:[^\s:]+)$")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")  # fullmatch: "$" would let a trailing newline through
_DECIMAL_RE = re.compile(r"([0-9]+)(?:\.([0-9]+))?")  # fullmatch; plain notation: no sign, exponent, NaN
_TERMS_RE = re.compile(  # fullmatch: [pct/discount_days] then n/net_days or net net_days
    r"(?:(?P<pct>[0-9]{1,3}(?:\.[0-9]{1,6})?)/(?P<discount_days>[0-9]{1,4})[\s,]+)?"
    r"(?:n/|net\s*)(?P<net_days>[0-9]{1,4})",
    re.IGNORECASE | re.ASCII,
)
MAX_AMOUNT_DIGITS = 18  # of an amount, before and after the point together
MAX_AMOUNT_PLACES = 6
MAX_TERMS_LEN = 64
# Finance's attributes: tokens the mapping rules match on, and the references that name a
# document, site or company (ids, so _ID_RE and MAX_ID_LEN).
FINANCE_ATTRIBUTES = ("customer_tier", "sales_channel", "tax_attribute")
FINANCE_REFERENCES = ("return_of", "to_site", "to_company")
MAX_ATTRIBUTE_LEN = 64
MAX_RETURN_OF_LEN = 256  # a document reference as its sender wrote it
_ATTRIBUTE_RE = re.compile(r"[a-z0-9][a-z0-9_.\-]*")  # fullmatch: lower-case, as rules.toml writes them
MAX_TERMS_DAYS = 3_650
# The external buckets a receipt may come from and a consumption may go to.
RECEIVE_SOURCES = (External.SUPPLIER, External.CUSTOMER, External.TRANSIT, External.COUNT_VARIANCE)
CONSUME_DESTINATIONS = (External.CUSTOMER, External.TRANSIT, External.SCRAP)


class Strategy(StrEnum):
    """Removal strategy: which quants a reserve or consume takes first."""

    FEFO = "fefo"  # first expiry, first out (default)
    FIFO = "fifo"  # oldest receipt first
    LIFO = "lifo"  # newest receipt first
    LOT = "lot"  # only the named lot


@dataclass(frozen=True, slots=True)
class Receive:
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    bin: str = ""
    status: str = DEFAULT_DICTIONARY.role(Role.RECEIPT)
    owner: str = "own"
    expires_at_ms: int = 0
    received_at_ms: int = 0  # 0 = engine time of arrival
    opened_at_ms: int = 0
    doc_ref: str = ""
    source: External = External.SUPPLIER  # supplier; customer (a return); transit (a transfer in); count variance
    finance: Finance | None = None


def receive_fields(cmd: Receive) -> tuple[Any, ...]:
    """A Receive's fields in declaration order (`Receive(*fields)` rebuilds it): what bulk
    paths carry per lot instead of an object (pickling or building a thousand dataclasses
    costs several times more than their fields)."""
    return (
        cmd.request_id,
        cmd.sku,
        cmd.site,
        cmd.lot_id,
        cmd.qty,
        cmd.bin,
        cmd.status,
        cmd.owner,
        cmd.expires_at_ms,
        cmd.received_at_ms,
        cmd.opened_at_ms,
        cmd.doc_ref,
        cmd.source,
        cmd.finance,
    )


@dataclass(frozen=True, slots=True)
class Move:
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    from_bin: str
    to_bin: str
    status: str = DEFAULT_DICTIONARY.role(Role.READY)
    owner: str = "own"
    doc_ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class ChangeStatus:
    request_id: str
    sku: str
    site: str
    lot_id: str
    qty: int
    from_status: str
    to_status: str
    bin: str = ""
    owner: str = "own"
    doc_ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class ReserveLine:
    """One line of a hold inside one cell, with its constraints."""

    qty: int
    strategy: Strategy = Strategy.FEFO
    lot_id: str = ""  # required with Strategy.LOT; a filter otherwise
    owner: str = ""  # "" any; "own", "consignment", "consignment:acme", ...
    min_shelf_life_days: float = 0.0
    bin_prefix: str = ""


@dataclass(frozen=True, slots=True)
class Reserve:
    request_id: str
    sku: str
    site: str
    hold_id: str
    lines: tuple[ReserveLine, ...]
    ttl_ms: int
    doc_ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    request_id: str
    sku: str
    site: str
    hold_id: str
    qty: int | None = None  # None = all that is held; less = partial, the rest released
    doc_ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """Release what a hold still holds. With `abort`, the release rolls back a reserve that
    failed as a whole (another line of a multi-line hold was refused): the reserve's own
    request id then answers HOLD_ABORTED instead of its cached success, so a retry of the
    failed reserve can never report stock that is no longer held."""

    request_id: str
    sku: str
    site: str
    hold_id: str
    doc_ref: str = ""
    abort: bool = False
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class Consume:
    """A direct issue without a hold (a cabinet scan-take, a shipment, a scrapping): a
    physical fact, never refused for lack of book stock; a shortfall is recorded as a
    discrepancy. It takes from sellable quants, or with `status` only from quants in
    exactly that status (ship from `packed`, scrap from `damaged`), and books the stock
    to `destination`."""

    request_id: str
    sku: str
    site: str
    qty: int
    lot_id: str = ""
    bin_prefix: str = ""
    owner: str = ""
    strategy: Strategy = Strategy.FEFO
    doc_ref: str = ""
    destination: External = External.CUSTOMER  # customer; transit (a transfer out); scrap
    status: str = ""  # "" = sellable statuses; else exactly this on-hand status
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class Adjust:
    """A count: sets the quant to `counted_qty` and records the variance. With `delta_qty`
    (≠ 0) it is a *relative* adjustment instead: the quant changes by `delta_qty` as it
    stands when the cell applies it (`counted_qty` must be 0), so a write booked between a
    person's look at the books and this adjustment is kept, never undone. A relative
    adjustment takes only free units: below zero, or into held units, it is refused
    INSUFFICIENT_STOCK (a person recounts)."""

    request_id: str
    sku: str
    site: str
    lot_id: str
    counted_qty: int
    bin: str = ""
    status: str = DEFAULT_DICTIONARY.role(Role.READY)
    owner: str = "own"
    reason: str = "count"
    doc_ref: str = ""
    finance: Finance | None = None
    delta_qty: int = 0  # since journal v6: ≠ 0 makes it relative (see above)

    @property
    def relative(self) -> bool:
        return self.delta_qty != 0


class CountSource(StrEnum):
    """Who counted: recorded on every movement a count makes."""

    RFID = "rfid"  # a cabinet's or gate's full tag read
    CYCLE = "cycle"  # a person's (WMS) cycle count
    RECOGNISER = "recogniser"  # photo recognition of a shelf


MAX_COUNT_LINES = 1_024  # lots of one count; bounds the work of one cell step


@dataclass(frozen=True, slots=True)
class CountLine:
    """What a count found of one lot: in a quant count, the quant (lot, the count's bin,
    `status` or the ready role, `owner`) holds `qty`; in a bin count, the lot's on-hand
    units anywhere under the bin are `qty` (`status` must be empty; found units land in
    the bin's ready quant of `owner`)."""

    lot_id: str
    qty: int
    status: str = ""
    owner: str = "own"
    expires_at_ms: int = 0  # the lot's expiry, for a lot the books do not know yet


@dataclass(frozen=True, slots=True)
class Count:
    """An absolute count applied in one cell step: nothing can be written between reading
    the books and setting them (DESIGN.md §4). The difference moves to or from the
    count-variance bucket. With `whole_bin`, every on-hand quant under `bin` is counted:
    lots the count does not name were found empty."""

    request_id: str
    sku: str
    site: str
    bin: str
    lines: tuple[CountLine, ...]
    whole_bin: bool = False
    source: CountSource = CountSource.CYCLE
    confidence: float = 1.0  # 0..1, as the counter reports it; recorded, not judged here
    doc_ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class ExpireLots:
    """Move on-hand stock of lots whose expiry has passed (or of `lot_id` only) to the
    dictionary's expired role by journaled status changes. Idempotent by nature: a second
    run finds nothing left to move."""

    request_id: str
    sku: str
    site: str
    lot_id: str = ""
    doc_ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class FreezeStock:
    """Block every on-hand unit under `bin` for QA (a temperature excursion) in one cell
    step: quants move to the dictionary's frozen role. Held units are frozen too — suspect
    goods must not reach a customer — and the holds on them are cut and listed in the
    answer; quants whose status may not become frozen stay where they are (`stuck_qty`)."""

    request_id: str
    sku: str
    site: str
    bin: str = ""
    doc_ref: str = ""
    finance: Finance | None = None


# What a store device may record offline and upload later (ApplyDeviceOps).
DeviceCommand = Receive | Consume | Count | Adjust | Move | ChangeStatus
MAX_DEVICE_OPS = 1_000  # ops of one upload: bounds the request's work
NO_PREV_SEQ = -1  # a DeviceOp that does not say its previous seq on the cell
DEVICE_OPS_MISSING = "DEVICE_OPS_MISSING"  # a gap between uploads: the cell names the missing seq


@dataclass(frozen=True, slots=True)
class DeviceOp:
    """One operation a device recorded offline, `seq` in the device's own numbering and
    `at_ms` when it happened (business time on its movements). The cell applies a device's
    ops exactly once however late or often they come: it keeps the last seq of each device
    it applied (`Cell.devices`, journaled with the op and snapshotted), and answers a seq at
    or below it as already applied — a watermark, not the 15-minute idempotency window."""

    request_id: str
    sku: str
    site: str
    device_id: str
    seq: int
    at_ms: int
    command: DeviceCommand
    doc_ref: str = ""
    finance: Finance | None = None
    # Since journal v6: the seq of the device's previous op on this same (sku, site), 0 for
    # its first one here; NO_PREV_SEQ = not said (older devices, older journal entries). The
    # cell compares it with its watermark, so a gap *between* two uploads — an op the device
    # recorded for this cell but never uploaded — is refused naming the missing seq.
    prev_seq: int = -1


@dataclass(frozen=True, slots=True)
class ScrapOverAge:
    """Book on-hand stock of opened lots past their opened shelf life (or of `lot_id`
    only) to scrap by journaled movements. A second run finds nothing left."""

    request_id: str
    sku: str
    site: str
    lot_id: str = ""
    doc_ref: str = ""
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class OpenLot:
    """A lot was opened (scanned at the station): its opened shelf life starts at
    `opened_at_ms` (0 = engine time now). Opening an opened lot changes nothing."""

    request_id: str
    sku: str
    site: str
    lot_id: str
    opened_at_ms: int = 0
    doc_ref: str = ""
    finance: Finance | None = None


Command = (
    Receive
    | Move
    | ChangeStatus
    | Reserve
    | Commit
    | Release
    | Consume
    | Adjust
    | Count
    | ExpireLots
    | ScrapOverAge
    | OpenLot
    | FreezeStock
    | DeviceOp
)


# ---- the one-call sale (DESIGN.md §7): a Reserve and a Commit of every pair, all or nothing ----

# Ids the engine derives for a sale's parts end with these suffixes, and a caller's ids may
# not (`check_caller_id`, applied where callers come in: the gateway), so a caller's hold or
# request never meets a sale's parts in a cell. Not in `validate`: the cell applies it on
# replay too, and a journal written before the rule may hold such a caller id.
SALE_HOLD_SUFFIX = "#sale"  # the internal hold id, and the request id of the pair's Reserve
SALE_COMMIT_SUFFIX = "#sold"  # the request id of the pair's Commit
SALE_VOID_SUFFIX = "#void"  # the request id of the release that rolls back a refused sale
SALE_SUFFIXES = (SALE_HOLD_SUFFIX, SALE_COMMIT_SUFFIX, SALE_VOID_SUFFIX)
# A sale's hold lives between its Reserve and its Commit, sent one after the other; the TTL
# only bounds how long a line stays held when the gateway dies between the two.
SALE_TTL_MS = 120_000


@dataclass(frozen=True, slots=True)
class SaleLine:
    """One line of a sale: an amount of one sku at one site, with a reserve line's constraints."""

    sku: str
    site: str
    line: ReserveLine


@dataclass(frozen=True, slots=True)
class Sell:
    """Reserve and commit every line in one call, all or nothing (a POS that has taken payment).

    Not a cell command: each pair applies its share as a Reserve of the pair's lines under an
    internal hold and a Commit of all of it (`sale_parts`), so the journal and the business
    events see the movements of a reserve and a commit, and no hold stays open. The request
    id makes the sale exactly-once: the parts' ids derive from it."""

    request_id: str
    lines: tuple[SaleLine, ...]
    doc_ref: str = ""  # the sale's document (receipt, order number)
    finance: Finance | None = None


@dataclass(frozen=True, slots=True)
class SalePart:
    """A sale's share in one (sku, site): its Reserve and the Commit that follows it."""

    reserve: Reserve
    commit: Commit


def derived_id(request_id: str, suffix: str) -> str:
    """An engine id derived from a caller's: distinct per caller id (a long id keeps a
    prefix and a digest of the whole) and at most MAX_ID_LEN characters."""
    if len(request_id) + len(suffix) <= MAX_ID_LEN:
        return request_id + suffix
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).hexdigest()
    keep = MAX_ID_LEN - len(suffix) - len(digest) - 1
    return f"{request_id[:keep]}+{digest}{suffix}"


def sale_hold_id(request_id: str) -> str:
    return derived_id(request_id, SALE_HOLD_SUFFIX)


def sale_lines_by_pair(sale: Sell) -> dict[tuple[str, str], tuple[ReserveLine, ...]]:
    """The sale's lines grouped by pair, pairs in the order of their first line."""
    by_pair: dict[tuple[str, str], list[ReserveLine]] = {}
    for sl in sale.lines:
        by_pair.setdefault((sl.sku, sl.site), []).append(sl.line)
    return {pair: tuple(lines) for pair, lines in by_pair.items()}


def sale_parts(sale: Sell) -> list[SalePart]:
    """The Reserve and Commit each pair applies; the same sale always gives the same parts,
    so a retry is answered by the cells' idempotency windows."""
    hold_id = sale_hold_id(sale.request_id)
    commit_id = derived_id(sale.request_id, SALE_COMMIT_SUFFIX)
    return [
        SalePart(
            Reserve(hold_id, sku, site, hold_id, lines, SALE_TTL_MS, sale.doc_ref, sale.finance),
            Commit(commit_id, sku, site, hold_id, None, sale.doc_ref, sale.finance),
        )
        for (sku, site), lines in sale_lines_by_pair(sale).items()
    ]


def validate_sale(sale: Sell) -> None:
    """Raise InvalidArgument listing every field a sale got wrong (pure: no state read)."""
    out: list[FieldViolation] = []
    check_id(sale.request_id, "request_id", out)
    check_caller_id(sale.request_id, "request_id", out)
    check_doc_ref(sale.doc_ref, out)
    check_finance(sale.finance, "finance", out)
    check_line_count(len(sale.lines), out)
    for i, sl in enumerate(sale.lines[:MAX_LINES]):
        check_id(sl.sku, f"lines[{i}].sku", out)
        check_id(sl.site, f"lines[{i}].site", out)
        validate_reserve_line(sl.line, f"lines[{i}]", out)
    if out:
        raise InvalidArgument(out)


def check_caller_id(value: str, field: str, out: list[FieldViolation]) -> None:
    """A caller's id may not end like the ids the engine derives (a sale's parts, an abort).

    Checked where callers come in (the gateway), not in `validate`: the cell validates again on
    replay, and a journal written before these rules may hold such an id."""
    reserved = (*SALE_SUFFIXES, UNDO_SUFFIX)
    if value.endswith(reserved):
        out.append(FieldViolation(field, f"must not end with {' or '.join(reserved)} (reserved for the engine)"))


# ---- replies (past tense). The movements a command produced go to the cell's outbox. ----


@dataclass(frozen=True, slots=True)
class Received:
    lot_id: str
    qty: int


@dataclass(frozen=True, slots=True)
class Moved:
    qty: int


@dataclass(frozen=True, slots=True)
class StatusChanged:
    qty: int


@dataclass(frozen=True, slots=True)
class Reserved:
    hold: HoldView


@dataclass(frozen=True, slots=True)
class Committed:
    hold: HoldView
    committed_qty: int
    released_qty: int


@dataclass(frozen=True, slots=True)
class Released:
    hold: HoldView
    released_qty: int


@dataclass(frozen=True, slots=True)
class Consumed:
    consumed_qty: int
    shortfall_qty: int  # > 0: the books showed less than was taken (a discrepancy)
    allocations: tuple[Allocation, ...]


@dataclass(frozen=True, slots=True)
class Adjusted:
    previous_qty: int
    counted_qty: int
    variance: int


@dataclass(frozen=True, slots=True)
class HoldCut:
    """Part of a hold shortened because the units under it are gone (counted missing,
    expired, scrapped): said in the answer and journaled, never silent."""

    hold_id: str
    lot_id: str
    bin: str
    status: str
    qty: int


@dataclass(frozen=True, slots=True)
class LotCount:
    lot_id: str
    previous_qty: int
    counted_qty: int


@dataclass(frozen=True, slots=True)
class Counted:
    lots: tuple[LotCount, ...]
    holds_cut: tuple[HoldCut, ...]

    @property
    def variance(self) -> int:
        return sum(c.counted_qty - c.previous_qty for c in self.lots)


@dataclass(frozen=True, slots=True)
class LotsExpired:
    qty: int  # units moved to the expired status
    lot_ids: tuple[str, ...]
    holds_cut: tuple[HoldCut, ...]
    stuck_qty: int = 0  # expired units in a status that may not become expired (e.g. packed)


@dataclass(frozen=True, slots=True)
class StockFrozen:
    qty: int  # units moved to the frozen status
    lot_ids: tuple[str, ...]
    holds_cut: tuple[HoldCut, ...]
    stuck_qty: int = 0  # on-hand units in a status that may not become frozen


@dataclass(frozen=True, slots=True)
class DeviceOpDone:
    """A device op's outcome: applied now (`reply`, or refused: `refusal_reason` and
    `refusal_message`, which the device is told once and for all), or applied before
    (`already_applied`: nothing changed)."""

    seq: int
    already_applied: bool
    reply: Received | Consumed | Counted | Adjusted | Moved | StatusChanged | None = None
    refusal_reason: str = ""
    refusal_message: str = ""


@dataclass(frozen=True, slots=True)
class Scrapped:
    qty: int
    lot_ids: tuple[str, ...]
    holds_cut: tuple[HoldCut, ...]


@dataclass(frozen=True, slots=True)
class LotOpened:
    lot_id: str
    opened_at_ms: int
    already_open: bool  # an earlier scan opened it; nothing changed
    fresh_until_ms: int  # opened_at + the sku's opened shelf life (0: opening does not limit it)


Reply = (
    Received
    | Moved
    | StatusChanged
    | Reserved
    | Committed
    | Released
    | Consumed
    | Adjusted
    | Counted
    | LotsExpired
    | Scrapped
    | LotOpened
    | StockFrozen
    | DeviceOpDone
)


# The commands a caller sends to one cell on their own (not as part of a hold or a sale), and
# their replies: what the gateway's `execute` takes and gives.
CellMutation = (
    Receive
    | Move
    | ChangeStatus
    | Consume
    | Adjust
    | Count
    | ExpireLots
    | ScrapOverAge
    | OpenLot
    | FreezeStock
    | DeviceOp
)
CellMutationReply = (
    Received
    | Moved
    | StatusChanged
    | Consumed
    | Adjusted
    | Counted
    | LotsExpired
    | Scrapped
    | LotOpened
    | StockFrozen
    | DeviceOpDone
)


# ---- validation (pure) ----

_SHOWN_VALUE_CHARS = 40  # a refusal quotes the value it refused, cut to this many characters


def _got(value: object) -> str:
    """ " (got 'GLU 50')": every violation names the value it refuses, not only the field."""
    shown = (
        value if not isinstance(value, str) or len(value) <= _SHOWN_VALUE_CHARS else value[:_SHOWN_VALUE_CHARS] + "…"
    )
    return f" (got {shown!r})"


def check_id(value: str, field: str, out: list[FieldViolation], *, required: bool = True) -> None:
    if not value:
        if required:
            out.append(FieldViolation(field, "must not be empty"))
        return
    if len(value) > MAX_ID_LEN:
        out.append(FieldViolation(field, f"must be at most {MAX_ID_LEN} characters{_got(value)}"))
    elif not _ID_RE.fullmatch(value):
        out.append(FieldViolation(field, f"may contain only letters, digits and ._:-@#+{_got(value)}"))


def check_doc_ref(value: str, out: list[FieldViolation]) -> None:
    if len(value) > MAX_DOC_REF_LEN:
        out.append(FieldViolation("doc_ref", f"must be at most {MAX_DOC_REF_LEN} characters"))


def check_bin(value: str, field: str, out: list[FieldViolation]) -> None:
    """A bin is a path `zone/shelf/pallet`; "" is the site itself."""
    if not value:
        return
    if len(value) > MAX_ID_LEN:
        out.append(FieldViolation(field, f"must be at most {MAX_ID_LEN} characters{_got(value)}"))
        return
    segments = value.split("/")
    if len(segments) > MAX_BIN_DEPTH:
        out.append(FieldViolation(field, f"must have at most {MAX_BIN_DEPTH} levels{_got(value)}"))
    elif not all(_BIN_SEG_RE.fullmatch(s) for s in segments):
        out.append(FieldViolation(field, f"must be a path like A/03/P12 of letters, digits, ._-{_got(value)}"))


def check_qty(value: int, field: str, out: list[FieldViolation], *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        out.append(FieldViolation(field, f"must be an integer{_got(value)}"))
    elif value < 0 or (value == 0 and not allow_zero):
        out.append(FieldViolation(field, ("must be ≥ 0" if allow_zero else "must be > 0") + _got(value)))
    elif value > MAX_QTY:
        out.append(FieldViolation(field, f"must be at most {MAX_QTY}{_got(value)}"))


def check_owner(value: str, field: str, out: list[FieldViolation], *, filter_: bool = False) -> None:
    if filter_:
        if value and value not in ("own", "consignment", "custody") and not _OWNER_RE.fullmatch(value):
            out.append(FieldViolation(field, f"must be own, consignment[:supplier] or custody[:party]{_got(value)}"))
        return
    if not _OWNER_RE.fullmatch(value):
        out.append(FieldViolation(field, f"must be own, consignment:<supplier> or custody:<party>{_got(value)}"))


def check_status(value: str, field: str, out: list[FieldViolation], statuses: StatusDictionary) -> None:
    if value not in statuses:
        out.append(FieldViolation(field, f"unknown status {value!r}"))


def check_time(value: int, field: str, out: list[FieldViolation]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        out.append(FieldViolation(field, f"must be a non-negative epoch time in ms{_got(value)}"))


def check_external(value: External, field: str, out: list[FieldViolation], allowed: tuple[External, ...]) -> None:
    if not isinstance(value, External) or value not in allowed:
        names = ", ".join(e.value for e in allowed)
        out.append(FieldViolation(field, f"must be one of {names}"))


def check_finance(finance: Finance | None, field: str, out: list[FieldViolation]) -> None:
    """The financial context is optional; when given, every part of it must be well formed,
    because the business events hand it on to finance systems as it is."""
    if finance is None:
        return
    if not isinstance(finance, Finance):
        out.append(FieldViolation(field, "must be a Finance"))
        return
    for name in ("currency", "unit_cost", "unit_price", "tax_rate", "terms", *FINANCE_ATTRIBUTES, *FINANCE_REFERENCES):
        if not isinstance(getattr(finance, name), str):
            out.append(FieldViolation(f"{field}.{name}", "must be a string"))
            return
    if not isinstance(finance.gift, bool):
        out.append(FieldViolation(f"{field}.gift", "must be true or false"))
    _check_finance_attributes(finance, field, out)
    if finance.currency and not _CURRENCY_RE.fullmatch(finance.currency):
        out.append(FieldViolation(f"{field}.currency", "must be an ISO 4217 code of three upper-case letters"))
    elif not finance.currency and (finance.unit_cost or finance.unit_price):
        out.append(FieldViolation(f"{field}.currency", "is required when an amount is given"))
    for name in ("unit_cost", "unit_price"):
        _check_decimal(getattr(finance, name), f"{field}.{name}", out)
    rate = _check_decimal(finance.tax_rate, f"{field}.tax_rate", out)
    if rate is not None and rate > 1:
        out.append(FieldViolation(f"{field}.tax_rate", "must be a fraction in 0..1 (0.20 = 20 %)"))
    if finance.terms:
        try:
            parse_terms(finance.terms)
        except ValueError as exc:
            out.append(FieldViolation(f"{field}.terms", str(exc)))


def _check_finance_attributes(finance: Finance, field: str, out: list[FieldViolation]) -> None:
    """Tier, channel and tax attribute are tokens a rule names; the references are ids."""
    for name in FINANCE_ATTRIBUTES:
        value = getattr(finance, name)
        if value and (len(value) > MAX_ATTRIBUTE_LEN or not _ATTRIBUTE_RE.fullmatch(value)):
            out.append(
                FieldViolation(
                    f"{field}.{name}",
                    f"must be at most {MAX_ATTRIBUTE_LEN} lower-case letters, digits, '_', '.' or '-'{_got(value)}",
                )
            )
    ref = finance.return_of
    if ref and (len(ref) > MAX_RETURN_OF_LEN or "?" in ref or not ref.isprintable() or ref != ref.strip()):
        # "?" would split it as the old doc_ref attributes do (engine.finance.ledger.doc_attrs)
        out.append(
            FieldViolation(
                f"{field}.return_of",
                f"must be a document reference of at most {MAX_RETURN_OF_LEN} printable characters without '?'"
                f"{_got(ref)}",
            )
        )
    for name in ("to_site", "to_company"):
        value = getattr(finance, name)
        if value and (len(value) > MAX_ID_LEN or not _ID_RE.fullmatch(value)):
            out.append(
                FieldViolation(f"{field}.{name}", f"must be an id of at most {MAX_ID_LEN} characters{_got(value)}")
            )


def _check_decimal(value: str, field: str, out: list[FieldViolation]) -> Decimal | None:
    """A non-negative decimal in plain notation ("12.50"), or "" (not given: None)."""
    if not value:
        return None
    match = _DECIMAL_RE.fullmatch(value) if len(value) <= 2 * MAX_AMOUNT_DIGITS else None
    if match is None:
        out.append(FieldViolation(field, 'must be a non-negative decimal number such as "12.50"'))
        return None
    whole, places = match.group(1).lstrip("0"), match.group(2) or ""
    if len(places) > MAX_AMOUNT_PLACES:
        out.append(FieldViolation(field, f"must have at most {MAX_AMOUNT_PLACES} decimal places"))
        return None
    if len(whole) + len(places) > MAX_AMOUNT_DIGITS:
        out.append(FieldViolation(field, f"must have at most {MAX_AMOUNT_DIGITS} digits"))
        return None
    return Decimal(value)


def parse_terms(text: str) -> Terms:
    """Settlement terms as written ("2/10 n/30", "2/10 net 30", "n/30", "net 30", any case)
    → Terms. Raise ValueError saying what is wrong."""
    if len(text) > MAX_TERMS_LEN:
        raise ValueError(f"terms must be at most {MAX_TERMS_LEN} characters")
    match = _TERMS_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f'cannot read terms {text!r}; write them like "2/10 n/30", "2/10 net 30", "n/30" or "net 30"')
    net_days = int(match["net_days"])
    if not 0 < net_days <= MAX_TERMS_DAYS:
        raise ValueError(f"net days must be in 1..{MAX_TERMS_DAYS}")
    if match["pct"] is None:
        return Terms(Decimal(0), 0, net_days)
    pct = Decimal(match["pct"])  # digits and one point, by the pattern: always a number
    discount_days = int(match["discount_days"])
    if not 0 < pct < 100:
        raise ValueError("the discount must be more than 0 and less than 100 percent")
    if not 0 < discount_days < net_days:
        raise ValueError(f"discount days must be more than 0 and fewer than the net days ({net_days})")
    return Terms(pct, discount_days, net_days)


def owner_matches(owner: str, owner_filter: str) -> bool:
    """ "" matches all; "consignment" matches every supplier; a full owner matches itself."""
    return not owner_filter or owner == owner_filter or owner.startswith(owner_filter + ":")


def undo_request_id(request_id: str) -> str:
    """The request id of the abort that rolls back the hold placed under `request_id` (two
    long ids sharing their first characters never share an abort id: see derived_id)."""
    return derived_id(request_id, UNDO_SUFFIX)


def validate(cmd: Command, statuses: StatusDictionary) -> None:
    """Raise InvalidArgument listing every field violation; return when the command is sane."""
    out: list[FieldViolation] = []
    check_id(cmd.request_id, "request_id", out)
    check_id(cmd.sku, "sku", out)
    check_id(cmd.site, "site", out)
    check_doc_ref(cmd.doc_ref, out)
    check_finance(cmd.finance, "finance", out)
    match cmd:
        case Receive():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.qty, "qty", out)
            check_bin(cmd.bin, "bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.status, "status", out, statuses)
            status = statuses.get(cmd.status)
            if status is not None and not status.receivable:
                out.append(FieldViolation("status", f"stock cannot be received into {cmd.status!r}"))
            for name in ("expires_at_ms", "received_at_ms", "opened_at_ms"):
                check_time(getattr(cmd, name), name, out)
            check_external(cmd.source, "source", out, RECEIVE_SOURCES)
        case Move():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.qty, "qty", out)
            check_bin(cmd.from_bin, "from_bin", out)
            check_bin(cmd.to_bin, "to_bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.status, "status", out, statuses)
            if cmd.from_bin == cmd.to_bin:
                out.append(FieldViolation("to_bin", "must differ from from_bin"))
        case ChangeStatus():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.qty, "qty", out)
            check_bin(cmd.bin, "bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.from_status, "from_status", out, statuses)
            check_status(cmd.to_status, "to_status", out, statuses)
        case Reserve():
            check_id(cmd.hold_id, "hold_id", out)
            check_ttl(cmd.ttl_ms, out)
            check_line_count(len(cmd.lines), out)
            for i, line in enumerate(cmd.lines[:MAX_LINES]):
                validate_reserve_line(line, f"lines[{i}]", out)
        case Commit():
            check_id(cmd.hold_id, "hold_id", out)
            if cmd.qty is not None:
                check_qty(cmd.qty, "qty", out, allow_zero=True)
        case Release():
            check_id(cmd.hold_id, "hold_id", out)
        case Consume():
            check_qty(cmd.qty, "qty", out)
            check_id(cmd.lot_id, "lot_id", out, required=cmd.strategy is Strategy.LOT)
            check_bin(cmd.bin_prefix, "bin_prefix", out)
            check_owner(cmd.owner, "owner", out, filter_=True)
            check_external(cmd.destination, "destination", out, CONSUME_DESTINATIONS)
            if cmd.status:
                check_status(cmd.status, "status", out, statuses)
                status = statuses.get(cmd.status)
                if status is not None and not status.on_hand:
                    out.append(FieldViolation("status", f"stock in {cmd.status!r} is not on hand to consume"))
        case Adjust():
            check_id(cmd.lot_id, "lot_id", out)
            check_qty(cmd.counted_qty, "counted_qty", out, allow_zero=True)
            _check_delta(cmd, out)
            check_bin(cmd.bin, "bin", out)
            check_owner(cmd.owner, "owner", out)
            check_status(cmd.status, "status", out, statuses)
            if not cmd.reason or len(cmd.reason) > 64:
                out.append(FieldViolation("reason", "must be 1..64 characters"))
        case Count():
            _validate_count(cmd, statuses, out)
        case ExpireLots() | ScrapOverAge():
            check_id(cmd.lot_id, "lot_id", out, required=False)
        case FreezeStock():
            check_bin(cmd.bin, "bin", out)
        case DeviceOp():
            check_id(cmd.device_id, "device_id", out)
            if isinstance(cmd.seq, bool) or not isinstance(cmd.seq, int) or not 0 < cmd.seq < 2**62:
                out.append(FieldViolation("seq", f"must be a positive integer{_got(cmd.seq)}"))
            check_time(cmd.at_ms, "at_ms", out)
            prev = cmd.prev_seq
            if isinstance(prev, bool) or not isinstance(prev, int) or not NO_PREV_SEQ <= prev < 2**62:
                out.append(FieldViolation("prev_seq", f"must be -1 (not said) or a seq ≥ 0{_got(prev)}"))
            elif isinstance(cmd.seq, int) and prev >= cmd.seq:
                out.append(FieldViolation("prev_seq", f"must be below seq {cmd.seq}{_got(prev)}"))
            if not isinstance(cmd.command, Receive | Consume | Count | Adjust | Move | ChangeStatus):
                out.append(
                    FieldViolation("command", "must be a receive, consume, count, adjust, move or change_status")
                )
            elif (cmd.command.sku, cmd.command.site) != (cmd.sku, cmd.site):
                out.append(FieldViolation("command", "must name the op's own sku and site"))
            else:
                try:  # the inner command travels under the op's request id (Cell._device_op)
                    validate(replace(cmd.command, request_id=cmd.request_id), statuses)
                except InvalidArgument as bad:
                    out.extend(FieldViolation(f"command.{v.field}", v.description) for v in bad.violations)
        case OpenLot():
            check_id(cmd.lot_id, "lot_id", out)
            check_time(cmd.opened_at_ms, "opened_at_ms", out)
    if out:
        raise InvalidArgument(out)


def _check_delta(cmd: Adjust, out: list[FieldViolation]) -> None:
    delta = cmd.delta_qty
    if isinstance(delta, bool) or not isinstance(delta, int) or abs(delta) > MAX_QTY:
        out.append(FieldViolation("delta_qty", f"must be an integer within ±{MAX_QTY}{_got(delta)}"))
    elif delta and cmd.counted_qty:
        out.append(FieldViolation("counted_qty", f"must be 0 in a relative adjustment (delta_qty {delta})"))


def _validate_count(cmd: Count, statuses: StatusDictionary, out: list[FieldViolation]) -> None:
    check_bin(cmd.bin, "bin", out)
    if not isinstance(cmd.source, CountSource):
        out.append(FieldViolation("source", "must be rfid, cycle or recogniser"))
    conf = cmd.confidence
    if isinstance(conf, bool) or not isinstance(conf, int | float) or math.isnan(conf) or not 0 <= conf <= 1:
        out.append(FieldViolation("confidence", f"must be in 0..1{_got(conf)}"))
    if not cmd.lines and not cmd.whole_bin:
        out.append(FieldViolation("lines", "must not be empty (a bin count with no lines needs whole_bin)"))
    if len(cmd.lines) > MAX_COUNT_LINES:
        out.append(FieldViolation("lines", f"must have at most {MAX_COUNT_LINES} lines"))
    seen: set[tuple[str, str, str]] = set()
    for i, line in enumerate(cmd.lines[:MAX_COUNT_LINES]):
        check_id(line.lot_id, f"lines[{i}].lot_id", out)
        check_qty(line.qty, f"lines[{i}].qty", out, allow_zero=True)
        check_owner(line.owner, f"lines[{i}].owner", out)
        check_time(line.expires_at_ms, f"lines[{i}].expires_at_ms", out)
        if cmd.whole_bin and line.status:
            out.append(
                FieldViolation(f"lines[{i}].status", "must be empty in a whole-bin count (all on-hand statuses)")
            )
        elif line.status:
            check_status(line.status, f"lines[{i}].status", out, statuses)
            status = statuses.get(line.status)
            if status is not None and not status.on_hand:
                out.append(FieldViolation(f"lines[{i}].status", f"stock in {line.status!r} is not on hand to count"))
        key = (line.lot_id, "" if cmd.whole_bin else line.status, line.owner if not cmd.whole_bin else "")
        if key in seen:
            out.append(FieldViolation(f"lines[{i}]", f"lot {line.lot_id!r} is counted twice"))
        seen.add(key)


def validate_reserve_line(line: ReserveLine, prefix: str, out: list[FieldViolation]) -> None:
    check_qty(line.qty, f"{prefix}.qty", out)
    if not isinstance(line.strategy, Strategy):
        out.append(FieldViolation(f"{prefix}.strategy", "must be fefo, fifo, lifo or lot"))
    check_id(line.lot_id, f"{prefix}.lot_id", out, required=line.strategy is Strategy.LOT)
    check_owner(line.owner, f"{prefix}.owner", out, filter_=True)
    check_bin(line.bin_prefix, f"{prefix}.bin_prefix", out)
    days = line.min_shelf_life_days
    if not isinstance(days, int | float) or math.isnan(days) or not 0 <= days <= 36_500:
        out.append(FieldViolation(f"{prefix}.min_shelf_life_days", "must be in 0..36500"))


def payload_difference(a: Command, b: Command) -> str:
    """The fields (request id aside) in which `b` differs from `a`, comma-separated;
    "command" when they are different commands altogether. Names a RequestConflict's cause."""
    if type(a) is not type(b):
        return "command"
    return ",".join(
        f.name
        for f in fields(a)
        if f.name != "request_id" and getattr(a, f.name, f.default) != getattr(b, f.name, f.default)
    )


def same_payload(a: Command, b: Command) -> bool:
    """Idempotency: equal in every field but the request id (which matched already)."""
    if type(a) is not type(b):
        return False
    # getattr with the field's default: a command restored from a snapshot written before a
    # field existed lacks it (slotted dataclasses unpickle positionally) and means the default.
    return all(
        getattr(a, f.name, f.default) == getattr(b, f.name, f.default) for f in fields(a) if f.name != "request_id"
    )
