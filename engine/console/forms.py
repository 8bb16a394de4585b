"""The panels' query strings, read into typed forms and then into API requests.

Pure functions: a bad value raises FormProblem naming the field (the page answers 400 and
shows it next to the form), never an exception from deep inside a view. The engine checks
everything again; these checks exist so that a typo gets a plain answer in the reader's
language instead of a gRPC error message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb

# The dimensions a page may group stock by (DESIGN.md §2), by their names in query strings.
STOCK_DIMENSIONS: dict[str, int] = {
    "bin": pb.DIMENSION_BIN,
    "status": pb.DIMENSION_STATUS,
    "owner": pb.DIMENSION_OWNER,
    "lot": pb.DIMENSION_LOT,
    "expiry_day": pb.DIMENSION_EXPIRY_DAY,
    "received_day": pb.DIMENSION_RECEIVED_DAY,
}
DIMENSION_NAMES = {value: name for name, value in STOCK_DIMENSIONS.items()}
PAGE_ROWS = 150  # rows of one stock table page; the rest is a `next page` link away (QueryStock's cursor)
MAX_PAGE_TOKEN = 4_096  # characters of a stock page cursor; QueryStock's own tokens are far shorter
MAX_IDS = 100  # skus or sites named in one filter
MAX_BIN_DEPTH = 8
_ID = re.compile(r"^[A-Za-z0-9._:\-@#+]{1,128}$")
_BIN = re.compile(r"^[^\s]{0,256}$")
_ORG = re.compile(r"^[^\s]{0,512}$")
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class FormProblem(Exception):
    """A query-string value the page cannot use: which field, and why."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


def _one(params: Mapping[str, str], name: str, limit: int = 512) -> str:
    value = (params.get(name) or "").strip()
    if len(value) > limit:
        raise FormProblem(name, f"at most {limit} characters")
    return value


def _ids(params: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _one(params, name, limit=MAX_IDS * 130)
    ids = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    if len(ids) > MAX_IDS:
        raise FormProblem(name, f"at most {MAX_IDS} ids")
    for value in ids:
        if not _ID.match(value):
            raise FormProblem(name, f"{value!r} is not an id (1..128 of A-Z a-z 0-9 . _ : - @ # +)")
    return ids


def _id(params: Mapping[str, str], name: str) -> str:
    value = _one(params, name, limit=128)
    if value and not _ID.match(value):
        raise FormProblem(name, f"{value!r} is not an id (1..128 of A-Z a-z 0-9 . _ : - @ # +)")
    return value


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _one(params, name, limit=20)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FormProblem(name, f"{raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise FormProblem(name, f"must be between {low} and {high}")
    return value


def _float(params: Mapping[str, str], name: str) -> float | None:
    raw = _one(params, name, limit=20)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FormProblem(name, f"{raw!r} is not a number") from None
    if not -36_500 <= value <= 36_500:
        raise FormProblem(name, "must be between -36500 and 36500 days")
    return value


@dataclass(frozen=True, slots=True)
class StockForm:
    """The stock explorer's question: which quants, grouped how."""

    org: str = ""
    sites: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    group: tuple[str, ...] = ()  # names of STOCK_DIMENSIONS, in order
    by_sku: bool = False  # off by default: a catalogue of 10⁵ pairs does not fit a page
    by_site: bool = True
    statuses: tuple[str, ...] = ()
    owner: str = ""
    bin_prefix: str = ""
    bin_depth: int = 0
    lot: str = ""
    sellable_only: bool = False
    min_shelf_life_days: float | None = None
    max_shelf_life_days: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    page: str = ""  # the table page's cursor (QueryStock's page_token); "" the first page

    def request(self) -> pb.QueryStockRequest:
        """The table: one page of PAGE_ROWS rows from the form's cursor."""
        request = self._request(limit=PAGE_ROWS)
        request.page_size = PAGE_ROWS
        request.page_token = self.page
        return request

    def total_request(self) -> pb.QueryStockRequest:
        """The table's grand total over every page: the same filter summed into one row."""
        return replace(self, group=(), by_sku=False, by_site=False)._request(limit=1)

    def _request(self, *, limit: int) -> pb.QueryStockRequest:
        slice_filter = pb.SliceFilter(
            statuses=list(self.statuses),
            owner=self.owner,
            bin_prefix=self.bin_prefix,
            lot_id=self.lot,
            sellable_only=self.sellable_only,
        )
        if self.min_shelf_life_days is not None:
            slice_filter.min_shelf_life_days = self.min_shelf_life_days
        if self.max_shelf_life_days is not None:
            slice_filter.max_shelf_life_days = self.max_shelf_life_days
        return pb.QueryStockRequest(
            skus=list(self.skus),
            sites=list(self.sites),
            org_prefix=self.org,
            filter=slice_filter,
            group_by=[STOCK_DIMENSIONS[name] for name in self.group],  # type: ignore[misc]
            by_sku=self.by_sku,
            by_site=self.by_site,
            bin_depth=self.bin_depth,
            limit=limit,
        )

    def rollup_request(self) -> pb.QueryStockRequest:
        """The same filter summed per site over every site the reader may see (the org tree's
        roll-ups are sums of these rows; the site and org choices only pick the table's rows)."""
        return replace(self, group=(), by_sku=False, by_site=True, sites=(), org="")._request(limit=10_000)

    def covers_every_site(self) -> bool:
        """The table is per site over every site the reader may see: its rows, summed per
        site, are the roll-up's rows (same filter, nothing narrowed to some sites)."""
        return self.by_site and not self.sites and not self.org

    def query(self, **changes: object) -> str:
        """This form's query string, with some fields changed (links to drill down)."""
        form = replace(self, **changes)  # type: ignore[arg-type]
        pairs: list[tuple[str, str]] = [("f", "1")]
        for name, value in (
            ("org", form.org),
            ("site", ",".join(form.sites)),
            ("sku", ",".join(form.skus)),
            ("status", ",".join(form.statuses)),
            ("owner", form.owner),
            ("bin_prefix", form.bin_prefix),
            ("lot", form.lot),
        ):
            if value:
                pairs.append((name, value))
        pairs.extend(("group", name) for name in form.group)
        if form.by_sku:
            pairs.append(("by_sku", "1"))
        if form.by_site:
            pairs.append(("by_site", "1"))
        if form.bin_depth:
            pairs.append(("bin_depth", str(form.bin_depth)))
        if form.sellable_only:
            pairs.append(("sellable_only", "1"))
        if form.min_shelf_life_days is not None:
            pairs.append(("min_shelf_life_days", f"{form.min_shelf_life_days:g}"))
        if form.max_shelf_life_days is not None:
            pairs.append(("max_shelf_life_days", f"{form.max_shelf_life_days:g}"))
        return urlencode(pairs)

    def drill_bin(self, bin_value: str) -> str:
        """The query one level below `bin_value`: only that bin, one more path level."""
        depth = self.bin_depth + 1 if self.bin_depth else 0
        return self.query(bin_prefix=bin_value, bin_depth=depth)


def parse_stock(params: Mapping[str, str], groups: Sequence[str]) -> StockForm:
    """The stock form from a query string; `groups` are the repeated `group` values."""
    submitted = params.get("f") == "1"  # an unticked checkbox is absent: only then does absence mean "off"
    group: list[str] = []
    for name in groups:
        if name not in STOCK_DIMENSIONS:
            raise FormProblem("group", f"{name!r} is not one of {', '.join(STOCK_DIMENSIONS)}")
        if name not in group:
            group.append(name)
    statuses = tuple(s.strip() for s in _one(params, "status").split(",") if s.strip())
    org = _one(params, "org")
    if not _ORG.match(org):
        raise FormProblem("org", "an org path has no spaces")
    bin_prefix = _one(params, "bin_prefix", limit=256)
    if not _BIN.match(bin_prefix):
        raise FormProblem("bin_prefix", "a bin path has no spaces")
    bin_depth = _int(params, "bin_depth", 1 if "bin" in group else 0, 0, MAX_BIN_DEPTH)
    return StockForm(
        org=org,
        sites=_ids(params, "site"),
        skus=_ids(params, "sku"),
        group=tuple(group),
        by_sku=params.get("by_sku") == "1" if submitted else False,
        by_site=params.get("by_site") == "1" if submitted else True,
        statuses=statuses,
        owner=_one(params, "owner", limit=160),
        bin_prefix=bin_prefix,
        bin_depth=bin_depth,
        lot=_id(params, "lot"),
        sellable_only=params.get("sellable_only") == "1",
        min_shelf_life_days=_float(params, "min_shelf_life_days"),
        max_shelf_life_days=_float(params, "max_shelf_life_days"),
        page=_one(params, "page", limit=MAX_PAGE_TOKEN),
    )


@dataclass(frozen=True, slots=True)
class HistoryForm:
    """Movements of a pair or a lot, and the as-of slider's range."""

    sku: str = ""
    site: str = ""
    lot: str = ""
    doc_ref: str = ""
    cursor: str = ""
    as_of_ms: int = 0  # 0: now
    window_days: int = 30  # how far back the slider reaches

    def search_request(self, page_size: int = 50) -> hpb.SearchMovementsRequest:
        return hpb.SearchMovementsRequest(
            sku=self.sku, site=self.site, lot_id=self.lot, doc_ref=self.doc_ref, page_size=page_size, cursor=self.cursor
        )

    def as_of_request(self, as_of_ms: int) -> hpb.GetBalanceAsOfRequest:
        dims = [hpb.HISTORY_DIMENSION_SITE, hpb.HISTORY_DIMENSION_STATUS]
        if self.sku or self.site or self.lot:
            dims = [hpb.HISTORY_DIMENSION_SKU, hpb.HISTORY_DIMENSION_SITE, hpb.HISTORY_DIMENSION_LOT, *dims[1:]]
        return hpb.GetBalanceAsOfRequest(
            as_of_ms=as_of_ms,
            skus=[self.sku] if self.sku else [],
            sites=[self.site] if self.site else [],
            lot_id=self.lot,
            group_by=dims,
            limit=PAGE_ROWS,
        )

    def query(self, **changes: object) -> str:
        form = replace(self, **changes)  # type: ignore[arg-type]
        pairs = [
            (name, value)
            for name, value in (
                ("sku", form.sku),
                ("site", form.site),
                ("lot", form.lot),
                ("doc_ref", form.doc_ref),
                ("cursor", form.cursor),
            )
            if value
        ]
        if form.as_of_ms:
            pairs.append(("as_of_ms", str(form.as_of_ms)))
        return urlencode(pairs)


def parse_history(params: Mapping[str, str]) -> HistoryForm:
    return HistoryForm(
        sku=_id(params, "sku"),
        site=_id(params, "site"),
        lot=_id(params, "lot"),
        doc_ref=_one(params, "doc_ref", limit=256),
        cursor=_one(params, "cursor", limit=1024),
        as_of_ms=_int(params, "as_of_ms", 0, 0, 253_402_300_799_999),
        window_days=_int(params, "window_days", 30, 1, 3650),
    )


@dataclass(frozen=True, slots=True)
class ChartsForm:
    sku: str = ""
    site: str = ""
    days: int = 30  # consumption: the last this many days
    horizon_days: int = 30  # expiry exposure: lots expiring within this many days

    def consumption_request(self, now_ms: int) -> hpb.GetConsumptionSeriesRequest:
        # The series covers the days [from, to) touches: `days` whole days ending today.
        today_start = now_ms - now_ms % _DAY_MS
        return hpb.GetConsumptionSeriesRequest(
            sku=self.sku, site=self.site, from_ms=today_start - (self.days - 1) * _DAY_MS, to_ms=now_ms
        )

    def exposure_request(self, now_ms: int, limit: int = 50) -> hpb.GetExpiryExposureRequest:
        return hpb.GetExpiryExposureRequest(
            as_of_ms=now_ms,
            horizon_days=self.horizon_days,
            skus=[self.sku] if self.sku else [],
            sites=[self.site] if self.site else [],
            limit=limit,
        )


def parse_charts(params: Mapping[str, str]) -> ChartsForm:
    return ChartsForm(
        sku=_id(params, "sku"),
        site=_id(params, "site"),
        days=_int(params, "days", 30, 1, 3660),
        horizon_days=_int(params, "horizon_days", 30, 1, 3650),
    )


@dataclass(frozen=True, slots=True)
class TransfersForm:
    site: str
    state: str
    page_token: str


def parse_transfers(params: Mapping[str, str]) -> TransfersForm:
    state = _one(params, "state", limit=128)
    if state and not _ID.match(state):
        raise FormProblem("state", f"{state!r} is not a state name")
    return TransfersForm(_id(params, "site"), state, _one(params, "page", limit=300))


def parse_decision(form: Mapping[str, str]) -> tuple[str, bool, str]:
    """(transfer id, approve?, note) from an approve/reject form."""
    transfer_id = _id(form, "transfer_id")
    if not transfer_id:
        raise FormProblem("transfer_id", "name the transfer")
    decision = _one(form, "decision", limit=16)
    if decision not in ("approve", "reject"):
        raise FormProblem("decision", "must be approve or reject")
    return transfer_id, decision == "approve", _one(form, "note", limit=1024)


ALERT_STATES = ("", "opened", "acknowledged", "closed")
ALERT_KINDS = ("", "discrepancy", "dead_letter", "temperature", "reconciliation", "near_expiry", "expired", "freshness")


@dataclass(frozen=True, slots=True)
class AlertsForm:
    state: str
    kind: str
    site: str


def parse_alerts(params: Mapping[str, str]) -> AlertsForm:
    state, kind = _one(params, "state", limit=32), _one(params, "kind", limit=32)
    if state not in ALERT_STATES:
        raise FormProblem("state", f"{state!r} is not one of {', '.join(s for s in ALERT_STATES if s)}")
    if kind not in ALERT_KINDS:
        raise FormProblem("kind", f"{kind!r} is not one of {', '.join(k for k in ALERT_KINDS if k)}")
    return AlertsForm(state, kind, _id(params, "site"))


def parse_alert_action(form: Mapping[str, str]) -> tuple[str, bool, str]:
    """(alert id, close?, note) from an acknowledge/close form."""
    alert_id = _one(form, "alert_id", limit=200)
    if not alert_id or not _ID.match(alert_id):
        raise FormProblem("alert_id", "name the alert")
    action = _one(form, "action", limit=16)
    if action not in ("acknowledge", "close"):
        raise FormProblem("action", "must be acknowledge or close")
    return alert_id, action == "close", _one(form, "note", limit=1024)


def parse_seq(raw: str, name: str = "seq") -> int:
    """A dead letter's seq (≥ 1)."""
    try:
        value = int(raw)
    except ValueError:
        raise FormProblem(name, f"{raw!r} is not a whole number") from None
    if value < 1 or value > 2**63 - 1:
        raise FormProblem(name, "must be 1 or more")
    return value


HOLD_STATES = ("", "active", "committed", "released", "expired")


@dataclass(frozen=True, slots=True)
class HoldsForm:
    sku: str
    site: str
    state: str
    expiring_before_ms: int
    expiring_within_h: int
    page_token: str


def parse_holds(params: Mapping[str, str]) -> HoldsForm:
    state = _one(params, "state", limit=16)
    if state not in HOLD_STATES:
        raise FormProblem("state", f"{state!r} is not one of {', '.join(s for s in HOLD_STATES if s)}")
    hours = _int(params, "expiring_within_h", 0, 0, 24 * 366)
    before = time.time_ns() // 1_000_000 + hours * 3_600_000 if hours else 0
    return HoldsForm(_id(params, "sku"), _id(params, "site"), state, before, hours, _one(params, "page", limit=300))


def parse_hold_release(form: Mapping[str, str]) -> str:
    """The hold id of a release form."""
    hold_id = _id(form, "hold_id")
    if not hold_id:
        raise FormProblem("hold_id", "name the hold")
    return hold_id


SUGGESTION_STATES = ("", "open", "accepted", "rejected", "overridden", "none")


@dataclass(frozen=True, slots=True)
class SuggestionsForm:
    site: str
    sku: str
    state: str
    flagged_only: bool
    page_token: str


def parse_suggestions(params: Mapping[str, str]) -> SuggestionsForm:
    state = _one(params, "state", limit=16)
    if state not in SUGGESTION_STATES:
        raise FormProblem("state", f"{state!r} is not one of {', '.join(s for s in SUGGESTION_STATES if s)}")
    flagged = _one(params, "flagged", limit=2)
    if flagged not in ("", "0", "1"):
        raise FormProblem("flagged", "must be 0 or 1")
    return SuggestionsForm(
        _id(params, "site"), _id(params, "sku"), state, flagged == "1", _one(params, "page", limit=300)
    )


@dataclass(frozen=True, slots=True)
class SuggestionDecision:
    sku: str
    site: str
    version: int
    decision: str  # accept, reject, override
    qty: int
    reason: str


def parse_suggestion_decision(form: Mapping[str, str]) -> SuggestionDecision:
    """A planner's accept / reject (reason required) / override (quantity and reason required)."""
    sku, site = _id(form, "sku"), _id(form, "site")
    if not sku or not site:
        raise FormProblem("sku" if not sku else "site", "name the pair")
    version = _int(form, "version", 0, 1, 2**53)
    if not version:
        raise FormProblem("version", "name the version being decided")
    decision = _one(form, "decision", limit=16)
    if decision not in ("accept", "reject", "override"):
        raise FormProblem("decision", "must be accept, reject or override")
    reason = _one(form, "reason", limit=1024)
    qty = _int(form, "qty", 0, 0, 10**12) if decision == "override" else 0
    if decision == "override" and qty <= 0:
        raise FormProblem("qty", "an override needs a quantity > 0")
    if decision in ("reject", "override") and not reason:
        raise FormProblem("reason", f"a reason is required to {decision}")
    return SuggestionDecision(sku, site, version, decision, qty, reason)


_VOUCHER_ID = re.compile(r"^[^\s\x00-\x1f<>\"'&]{1,256}$")  # built from event ids and org paths
# "review" is the pool still to review: pending and annotated, listed in one call.
VOUCHER_STATES = ("review", "", "pending", "annotated", "approved", "posted", "rejected")


@dataclass(frozen=True, slots=True)
class VouchersForm:
    state: str
    company: str
    page_token: str


def parse_vouchers(params: Mapping[str, str]) -> VouchersForm:
    # The sandbox opens on the pool to review; "All" sends an empty state.
    state = _one(params, "state", limit=16) if "state" in params else "review"
    if state not in VOUCHER_STATES:
        raise FormProblem("state", f"{state!r} is not one of {', '.join(s for s in VOUCHER_STATES if s)}")
    company = _one(params, "company", limit=512)
    if company and not all(_ID.match(part) for part in company.split("/")):
        raise FormProblem("company", f"{company!r} is not an org path")
    return VouchersForm(state, company, _one(params, "page", limit=300))


def parse_voucher_action(form: Mapping[str, str]) -> tuple[str, str, str]:
    """(voucher id, action, text): annotate needs a note, reject a reason."""
    voucher_id = _one(form, "voucher_id", limit=256)
    if not voucher_id or not _VOUCHER_ID.match(voucher_id):
        raise FormProblem("voucher_id", "name the voucher")
    action = _one(form, "action", limit=16)
    if action not in ("annotate", "approve", "reject"):
        raise FormProblem("action", "must be annotate, approve or reject")
    text = _one(form, "text", limit=1024)
    if action in ("annotate", "reject") and not text:
        raise FormProblem(
            "text", "a note is required to annotate" if action == "annotate" else "a reason is required to reject"
        )
    return voucher_id, action, text


def parse_pair(params: Mapping[str, str]) -> tuple[str, str]:
    """(sku, site), both required."""
    sku, site = _id(params, "sku"), _id(params, "site")
    if not sku or not site:
        raise FormProblem("sku" if not sku else "site", "name the pair")
    return sku, site
