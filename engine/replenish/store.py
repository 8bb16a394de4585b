"""What replenishment keeps: suggestions with their panel and decisions, supplier master
data, outside factors, adoption counters — typed records, versioned JSON (never pickle) —
and the port that stores them (adapters.memory.replenish, adapters.nats.replenish).

Pure: no I/O here. Validation turns a caller's record into a typed one or raises
InvalidArgument naming every bad field, so nothing half-valid is ever stored.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from typing import Any, Protocol

from engine.domain.errors import FieldViolation, InvalidArgument

SCHEMA_VERSION = 1
MAX_LEAD_TIMES = 12  # receipts kept per supplier and pair (the policy reads the last lead_time_receipts: 12)
MAX_FACTORS = 10_000  # per put
MAX_TEXT = 256
MAX_ID = 128
# Outside factors are multipliers on demand; each kind has the band it may move it within
# (issue 14: bounded), so a typo cannot order 100× the stock.
FACTOR_BOUNDS: dict[str, tuple[float, float]] = {
    "promotion": (1.0, 5.0),
    "weather": (0.7, 1.5),
    "footfall": (0.5, 2.0),
    "event": (0.5, 3.0),
}
STATES = ("open", "accepted", "rejected", "overridden", "none")
DECIDED = ("accepted", "rejected", "overridden")


# ---- records ----


@dataclass(frozen=True, slots=True)
class LeadTimeSample:
    days: float
    received_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class SupplierTerms:
    """The designated supplier of one (sku, site) and its terms."""

    sku: str
    site: str
    supplier: str
    moq: int = 0
    multiple: int = 1
    order_weekdays: tuple[int, ...] = ()  # 0 = Monday; () = every day
    lead_times: tuple[LeadTimeSample, ...] = ()  # newest first
    auto_order: bool = False
    keeper: str = ""
    shelf_life_days: int = 0
    service_level: float = 0.0  # 0 = the engine's default
    stated_lead_time_days: float = 0.0  # the supplier's quote (0 = none); records without it read as 0


@dataclass(frozen=True, slots=True)
class Factor:
    factor_id: str
    kind: str
    sku: str  # "" = every sku
    site: str  # "" = every site
    from_day: str  # ISO date, inclusive
    to_day: str
    multiplier: float
    source: str = ""

    def covers(self, sku: str, site: str, day: str) -> bool:
        return (
            (not self.sku or self.sku == sku)
            and (not self.site or self.site == site)
            and (self.from_day <= day <= self.to_day)
        )


@dataclass(frozen=True, slots=True)
class AppliedFactor:
    kind: str
    multiplier: float
    source: str


@dataclass(frozen=True, slots=True)
class RuleLine:
    rule: str
    kind: str
    field: str
    before: str
    after: str
    note: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True, slots=True)
class Panel:
    """Every number a suggestion was made of (issue 14 item 4)."""

    mean_7d: float = 0.0
    mean_14d: float = 0.0
    mean_30d: float = 0.0
    daily_demand: float = 0.0
    method: str = ""
    demand_class: str = ""
    lead_times: tuple[LeadTimeSample, ...] = ()
    lead_time_days: float = 0.0
    lead_time_sigma_days: float = 0.0
    review_days: float = 0.0
    on_hand: int = 0
    held: int = 0
    in_transit_within: int = 0
    in_transit_beyond: int = 0
    open_todos: int = 0
    inventory_position: int = 0
    moq: int = 0
    multiple: int = 1
    service_level: float = 0.0
    z: float = 0.0
    sigma_ltd: float = 0.0
    safety_stock: float = 0.0
    reorder_point: float = 0.0
    order_up_to: float = 0.0
    factors: tuple[AppliedFactor, ...] = ()
    raw_qty: int = 0
    final_qty: int = 0
    coverage_days: float = 0.0
    health_flags: tuple[str, ...] = ()
    censored_days: int = 0
    demand_rate: float = 0.0
    buffer: float = 1.0
    seasonal_index: float = 1.0
    factor_multiplier: float = 1.0
    reason: str = ""
    spikes_stripped: int = 0


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One (sku, site)'s current proposal; a recomputation that changes it is a new version."""

    sku: str
    site: str
    version: int
    state: str  # STATES
    qty: int
    panel: Panel
    trace: tuple[RuleLine, ...] = ()
    supplier: str = ""
    flagged: bool = False
    below_reorder_point: bool = False
    created_at_ms: int = 0
    trigger: str = ""
    decided_qty: int = 0
    reason: str = ""
    decided_by: str = ""
    decided_at_ms: int = 0
    automatic: bool = False

    @property
    def key(self) -> str:
        return pair_key(self.sku, self.site)

    def same_proposal(self, other: Suggestion) -> bool:
        """Whether `other` proposes what this one does (then it is not a new version)."""
        return (
            self.qty == other.qty
            and self.state == other.state
            and self.flagged == other.flagged
            and self.supplier == other.supplier
            and self.below_reorder_point == other.below_reorder_point
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """One planner decision, kept for adoption (per planner and per rule)."""

    sku: str
    site: str
    version: int
    outcome: str  # accepted, rejected, overridden
    planner: str
    rules: tuple[str, ...]  # the rules that shaped the decided suggestion
    at_ms: int


@dataclass(slots=True)
class AdoptionCount:
    decided: int = 0
    accepted: int = 0
    overridden: int = 0
    rejected: int = 0

    def add(self, outcome: str) -> None:
        self.decided += 1
        if outcome == "accepted":
            self.accepted += 1
        elif outcome == "overridden":
            self.overridden += 1
        else:
            self.rejected += 1

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.decided if self.decided else 0.0

    @property
    def override_rate(self) -> float:
        return self.overridden / self.decided if self.decided else 0.0


@dataclass(frozen=True, slots=True)
class Adoption:
    by_planner: dict[str, AdoptionCount] = field(default_factory=dict)
    by_rule: dict[str, AdoptionCount] = field(default_factory=dict)
    total: AdoptionCount = field(default_factory=AdoptionCount)


def adoption_of(decisions: list[Decision]) -> Adoption:
    out = Adoption()
    for d in decisions:
        out.total.add(d.outcome)
        out.by_planner.setdefault(d.planner, AdoptionCount()).add(d.outcome)
        for rule in d.rules:
            out.by_rule.setdefault(rule, AdoptionCount()).add(d.outcome)
    return out


def pair_key(sku: str, site: str) -> str:
    return f"{site}\x1f{sku}"


def site_prefix(site: str) -> str:
    """What every `pair_key` of `site`, and no other's, starts with (keys are site-major)."""
    return f"{site}\x1f"


def entries_after(
    keys: list[str], after: str, limit: int, site: str, entry: Callable[[str], SuggestionEntry]
) -> list[SuggestionEntry]:
    """Up to `limit` entries of the sorted `keys` past `after` (of `site` only, if given)."""
    prefix = site_prefix(site) if site else ""
    out: list[SuggestionEntry] = []
    for i in range(bisect.bisect_right(keys, max(after, prefix)), len(keys)):
        if len(out) == limit or not keys[i].startswith(prefix):
            break
        out.append(entry(keys[i]))
    return out


@dataclass(frozen=True, slots=True)
class SuggestionStamp:
    """What identifies a stored suggestion's value without reading it: a recompute writes a new
    version, a decision writes the same version in another state (and the flag goes with both).
    A reader that holds a suggestion with this stamp holds what is stored."""

    version: int
    state: str
    flagged: bool

    @staticmethod
    def of(s: Suggestion) -> SuggestionStamp:
        return SuggestionStamp(s.version, s.state, s.flagged)


@dataclass(frozen=True, slots=True)
class SuggestionEntry:
    """A stored suggestion as a listing first sees it: its pair and, where the store knows
    them without reading the value, its state and flag (None: read the value to know)."""

    key: str  # pair_key: listings are in this order
    state: str | None = None
    flagged: bool | None = None

    def may_match(self, state: str, flagged_only: bool) -> bool:
        """False only when the entry's known state or flag rules it out of the listing."""
        if state and self.state is not None and self.state != state:
            return False
        return not (flagged_only and self.flagged is False)


def pair_of(key: str) -> tuple[str, str]:
    """(sku, site) of a `pair_key`."""
    site, _, sku = key.partition("\x1f")
    return sku, site


# ---- the port ----


class ReplenishStore(Protocol):
    """Suggestions, suppliers, factors and decisions, durably. Writes of a suggestion name
    the version they replace (0: none), so two writers never lose one another's update."""

    async def get_suggestion(self, sku: str, site: str) -> Suggestion | None: ...

    async def put_suggestion(self, suggestion: Suggestion, expected_version: int) -> None:
        """Store it if the pair's stored version is `expected_version` (0: none stored);
        raises StaleWrite otherwise."""
        ...

    async def list_suggestions(self, site: str = "", sku: str = "") -> list[Suggestion]:
        """Every stored suggestion matching, ordered by (site, sku)."""
        ...

    async def suggestion_keys(self) -> list[str]:
        """The pair keys (`pair_key`) of every stored suggestion, sorted."""
        ...

    async def suggestion_entries(self, after: str = "", limit: int = 256, site: str = "") -> list[SuggestionEntry]:
        """Up to `limit` stored suggestions with a key past `after` (and of `site`, if given),
        in key order: a listing walks these a slice at a time and reads only the values that
        can be on its page, so a page costs what it shows, not what is stored."""
        ...

    async def supplier_keys(self) -> list[str]:
        """The pair keys of every stored supplier terms, sorted."""
        ...

    def suggestion_stamp(self, sku: str, site: str) -> SuggestionStamp | None:
        """The stored suggestion's stamp as the store knows it without a read (the trigger's
        path: a moved pair that stays as it is costs no read), or None when it does not know
        it (nothing stored, or not known yet): then read the suggestion."""
        ...

    def suggestion_absent(self, sku: str, site: str) -> bool:
        """True only when the store knows, without a read, that no suggestion of the pair is
        stored (e.g. its index of the bucket is loaded and holds no such key): a first look
        costs no read. False means "read it". A write that races it still cannot be lost:
        put_suggestion is conditional on the version read (0 here), so it raises StaleWrite."""
        ...

    async def put_supplier(self, terms: SupplierTerms) -> None: ...

    async def get_supplier(self, sku: str, site: str) -> SupplierTerms | None: ...

    async def list_suppliers(self) -> list[SupplierTerms]: ...

    async def put_factors(self, factors: list[Factor]) -> None: ...

    async def list_factors(self) -> list[Factor]: ...

    async def add_decision(self, decision: Decision) -> None:
        """Idempotent per (sku, site, version)."""
        ...

    async def list_decisions(self) -> list[Decision]: ...

    async def close(self) -> None: ...


class StaleWrite(Exception):
    def __init__(self, key: str, expected: int) -> None:
        super().__init__(f"suggestion {key!r} is no longer at version {expected}")
        self.key, self.expected = key, expected


# ---- JSON records (versioned) ----


def to_record(value: Suggestion | SupplierTerms | Factor | Decision) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, **asdict(value)}


def _check_version(r: Mapping[str, Any], what: str) -> None:
    if r.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unknown {what} schema version {r.get('schema_version')!r}")


def _samples(raw: Any) -> tuple[LeadTimeSample, ...]:
    return tuple(LeadTimeSample(float(s["days"]), int(s["received_at_ms"])) for s in raw)


def suggestion_from_record(r: Mapping[str, Any]) -> Suggestion:
    _check_version(r, "suggestion")
    p = dict(r["panel"])
    p["lead_times"] = _samples(p["lead_times"])
    p["factors"] = tuple(AppliedFactor(**f) for f in p["factors"])
    p["health_flags"] = tuple(p["health_flags"])
    known = {f.name for f in fields(Panel)}
    panel = Panel(**{k: v for k, v in p.items() if k in known})
    body = {k: v for k, v in r.items() if k not in ("schema_version", "panel", "trace")}
    return Suggestion(**body, panel=panel, trace=tuple(RuleLine(**t) for t in r["trace"]))


def supplier_from_record(r: Mapping[str, Any]) -> SupplierTerms:
    _check_version(r, "supplier")
    body = {k: v for k, v in r.items() if k != "schema_version"}
    body["order_weekdays"] = tuple(body["order_weekdays"])
    body["lead_times"] = _samples(body["lead_times"])
    return SupplierTerms(**body)


def factor_from_record(r: Mapping[str, Any]) -> Factor:
    _check_version(r, "factor")
    return Factor(**{k: v for k, v in r.items() if k != "schema_version"})


def decision_from_record(r: Mapping[str, Any]) -> Decision:
    _check_version(r, "decision")
    body = {k: v for k, v in r.items() if k != "schema_version"}
    body["rules"] = tuple(body["rules"])
    return Decision(**body)


# ---- validation of what callers send ----


def _id_ok(text: str, *, empty: bool = False) -> bool:
    if not text:
        return empty
    return len(text) <= MAX_ID and text.isprintable() and not any(c.isspace() for c in text)


def check_supplier(terms: SupplierTerms) -> SupplierTerms:
    """The terms as stored (lead times newest first, at most MAX_LEAD_TIMES), or
    InvalidArgument naming every bad field."""
    out: list[FieldViolation] = []
    for name in ("sku", "site", "supplier"):
        if not _id_ok(getattr(terms, name)):
            out.append(FieldViolation(f"supplier.{name}", "required: 1..128 printable characters, no spaces"))
    if terms.moq < 0:
        out.append(FieldViolation("supplier.moq", "must be ≥ 0"))
    if terms.multiple < 0:
        out.append(FieldViolation("supplier.multiple", "must be ≥ 0 (0 or 1: any quantity)"))
    if any(d < 0 or d > 6 for d in terms.order_weekdays) or len(set(terms.order_weekdays)) != len(terms.order_weekdays):
        out.append(FieldViolation("supplier.order_weekdays", "distinct weekdays 0 (Monday) .. 6 (Sunday)"))
    for i, s in enumerate(terms.lead_times):
        if not math.isfinite(s.days) or s.days < 0 or s.days > 365:
            out.append(FieldViolation(f"supplier.lead_times[{i}].days", "must be within 0..365 days"))
        if s.received_at_ms < 0:
            out.append(FieldViolation(f"supplier.lead_times[{i}].received_at_ms", "must be ≥ 0"))
    if len(terms.keeper) > MAX_TEXT:
        out.append(FieldViolation("supplier.keeper", f"at most {MAX_TEXT} characters"))
    if terms.shelf_life_days < 0:
        out.append(FieldViolation("supplier.shelf_life_days", "must be ≥ 0"))
    if not math.isfinite(terms.stated_lead_time_days) or not 0 <= terms.stated_lead_time_days <= 365:
        out.append(FieldViolation("supplier.stated_lead_time_days", "0 (none) or within 0..365 days"))
    if not (terms.service_level == 0 or 0.5 <= terms.service_level < 1):
        out.append(FieldViolation("supplier.service_level", "0 (default) or within 0.5..0.9999"))
    if out:
        raise InvalidArgument(out)
    samples = sorted(terms.lead_times, key=lambda s: -s.received_at_ms)[:MAX_LEAD_TIMES]
    return replace(terms, multiple=max(terms.multiple, 1), lead_times=tuple(samples))


def check_factors(factors: list[Factor]) -> list[Factor]:
    out: list[FieldViolation] = []
    if not factors:
        out.append(FieldViolation("factors", "at least one factor"))
    if len(factors) > MAX_FACTORS:
        out.append(FieldViolation("factors", f"at most {MAX_FACTORS} per call"))
    for i, f in enumerate(factors[:MAX_FACTORS]):
        out.extend(_factor_violations(f, f"factors[{i}]"))
    if out:
        raise InvalidArgument(out)
    return factors


def _factor_violations(f: Factor, at: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not _id_ok(f.factor_id):
        out.append(FieldViolation(f"{at}.factor_id", "required: 1..128 printable characters, no spaces"))
    bounds = FACTOR_BOUNDS.get(f.kind)
    if bounds is None:
        out.append(FieldViolation(f"{at}.kind", f"one of {', '.join(FACTOR_BOUNDS)}"))
    elif not (math.isfinite(f.multiplier) and bounds[0] <= f.multiplier <= bounds[1]):
        out.append(FieldViolation(f"{at}.multiplier", f"a {f.kind} multiplier lies within {bounds[0]}..{bounds[1]}"))
    for name in ("sku", "site"):
        if not _id_ok(getattr(f, name), empty=True):
            out.append(FieldViolation(f"{at}.{name}", "1..128 printable characters, no spaces, or empty (all)"))
    days = []
    for name in ("from_day", "to_day"):
        try:
            days.append(date.fromisoformat(getattr(f, name)))
        except ValueError:
            out.append(FieldViolation(f"{at}.{name}", "an ISO date (YYYY-MM-DD)"))
    if len(days) == 2 and days[0] > days[1]:
        out.append(FieldViolation(f"{at}.to_day", "must not be before from_day"))
    if len(f.source) > MAX_TEXT:
        out.append(FieldViolation(f"{at}.source", f"at most {MAX_TEXT} characters"))
    return out
