"""Values of the ledger: lots, quants, buckets, movements, holds (DESIGN.md §1, §4, §5)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
NO_EXPIRY_MS = 0  # a lot without an expiry date (`expires_at_ms == 0`) never expires


class External(StrEnum):
    """Buckets outside the site. Their balances go negative: they are the other leg."""

    SUPPLIER = "@supplier"
    CUSTOMER = "@customer"
    SCRAP = "@scrap"
    COUNT_VARIANCE = "@count_variance"
    TRANSIT = "@transit"


@dataclass(frozen=True, slots=True)
class Terms:
    """Settlement terms, parsed: "2/10 n/30" is 2 % off when paid within 10 days, else
    the net amount is due within 30 (commands.parse_terms reads the written forms)."""

    discount_pct: Decimal  # 2 in "2/10 n/30"; 0 when none
    discount_days: int  # 10 in "2/10 n/30"; 0 when none
    net_days: int  # 30 in "2/10 n/30"


@dataclass(frozen=True, slots=True)
class Finance:
    """The financial context a caller attaches to a command, carried to the business events.

    The engine books quantities, not money: it validates this context (commands.check_finance),
    journals it with the command, and never computes with it. Amounts stay decimal strings
    as the caller wrote them ("12.50"): exact, with no binary floating point on the way,
    and finance systems parse them with Decimal. "" means "not given".
    """

    currency: str = ""  # ISO 4217, three upper-case letters; required when any amount is given
    unit_cost: str = ""  # decimal string, e.g. "12.50" ("" = not given)
    unit_price: str = ""  # decimal string
    tax_rate: str = ""  # decimal fraction, "0.20" = 20 %
    terms: str = ""  # settlement terms as written: "2/10 n/30", "n/30", "net 30", "2/10 net 30", ""
    # The attributes the account-mapping rules and vouchers match on (journal v7; before,
    # they rode on the doc_ref after "?"). Tokens (commands.FINANCE_ATTRIBUTES); "" = not said.
    customer_tier: str = ""  # the buyer's tier: "key", "retail", ...
    sales_channel: str = ""  # where it was sold: "web", "pos", ...
    tax_attribute: str = ""  # the line's tax treatment: "deemed_sale", "promotion", "exempt", ...
    gift: bool = False  # the goods leave without a charge (a gift, booked by its tax attribute)
    return_of: str = ""  # a return's or cancellation's: the doc_ref of the sale it refers to
    to_site: str = ""  # a transfer's destination site
    to_company: str = ""  # a transfer's destination company (else the destination site's)


@dataclass(frozen=True, slots=True, order=True)
class QuantKey:
    """Where a balance row lives inside a cell: (lot, bin, status, owner)."""

    lot_id: str
    bin: str
    status: str
    owner: str


Bucket = QuantKey | External


@dataclass(slots=True)
class Quant:
    qty: int = 0
    held: int = 0


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    received_at_ms: int
    expires_at_ms: int = NO_EXPIRY_MS
    opened_at_ms: int = 0

    def effective_expiry_ms(self, opened_shelf_life_ms: int) -> int:
        """min(expires_at, opened_at + opened shelf life); 0 when the lot never expires."""
        candidates = []
        if self.expires_at_ms:
            candidates.append(self.expires_at_ms)
        if self.opened_at_ms and opened_shelf_life_ms:
            candidates.append(self.opened_at_ms + opened_shelf_life_ms)
        return min(candidates) if candidates else NO_EXPIRY_MS


def opened_over_age(lot: Lot, opened_shelf_life_ms: int, now_ms: int) -> bool:
    """An opened lot past its opened shelf life (DESIGN.md §2: opened goods expire early)."""
    return bool(lot.opened_at_ms and opened_shelf_life_ms and lot.opened_at_ms + opened_shelf_life_ms <= now_ms)


def shelf_life_left_days(expiry_ms: int, now_ms: int) -> float:
    """Days of shelf life left; infinite for a lot without expiry."""
    if expiry_ms == NO_EXPIRY_MS:
        return float("inf")
    return (expiry_ms - now_ms) / MS_PER_DAY


class MovementKind(StrEnum):
    RECEIVE = "receive"
    MOVE = "move"
    CHANGE_STATUS = "change_status"
    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"
    EXPIRE = "expire"
    CONSUME = "consume"
    DISCREPANCY = "discrepancy"
    ADJUST = "adjust"
    COUNT = "count"  # an absolute count's difference, to or from the count-variance bucket
    CUT_HOLD = "cut_hold"  # a hold shortened because the units under it are gone
    OPEN = "open"  # a lot was opened: `lot` carries its dates with opened_at set


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a movement's facts came from: who counted and how sure (counts), and when it
    happened if not when the engine applied it (a device's offline op)."""

    source: str = ""
    confidence: float = 0.0
    business_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Movement:
    """One journaled change: `qty` leaves `src` and enters `dst`; `held_delta` changes the
    held amount of the quant named by `held_key` (reserve +, commit/release/expire −).

    Reserve and release move no qty between buckets (src == dst), only held; so replaying
    the movements from zero rebuilds both qty and held exactly (DESIGN.md §4).
    """

    seq: int  # per-cell, gap-free, from 1
    kind: MovementKind
    sku: str
    site: str
    lot_id: str
    qty: int
    src: Bucket
    dst: Bucket
    held_key: QuantKey | None = None
    held_delta: int = 0
    hold_id: str = ""
    request_id: str = ""
    doc_ref: str = ""
    at_ms: int = 0
    lot: Lot | None = None  # on receipts: the lot's dates, so replay rebuilds lots too
    expires_at_ms: int = 0  # on reserves: the hold's expiry, so replay rebuilds holds too
    # Where the facts came from, on the few movements that say (a count, a device's op); one
    # optional field, so the order path's movements cost no more to build than before.
    provenance: Provenance | None = None

    @property
    def source(self) -> str:
        """Who counted (rfid, cycle, recogniser); "" when not a count."""
        return self.provenance.source if self.provenance else ""

    @property
    def confidence(self) -> float:
        return self.provenance.confidence if self.provenance else 0.0

    @property
    def business_at_ms(self) -> int:
        """When it happened, if not at `at_ms` (a device's offline op); 0 = at `at_ms`."""
        return self.provenance.business_at_ms if self.provenance else 0


class HoldState(StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(slots=True)
class HoldPart:
    """The share of one hold that lives in one cell. Allocations are in removal order."""

    hold_id: str
    request_id: str
    allocations: dict[QuantKey, int]
    created_at_ms: int
    expires_at_ms: int
    state: HoldState = HoldState.ACTIVE
    committed_qty: int = 0
    released_qty: int = 0
    resolved_at_ms: int = 0

    @property
    def held_qty(self) -> int:
        return sum(self.allocations.values()) if self.state is HoldState.ACTIVE else 0


@dataclass(frozen=True, slots=True)
class Allocation:
    lot_id: str
    bin: str
    status: str
    owner: str
    qty: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class HoldView:
    """What a reader sees of a hold part, with expiry already applied (checked on read)."""

    hold_id: str
    sku: str
    site: str
    state: HoldState
    allocations: tuple[Allocation, ...]
    held_qty: int
    committed_qty: int
    released_qty: int
    created_at_ms: int
    expires_at_ms: int
