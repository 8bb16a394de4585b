"""The demo: a medical-device distributor's stock and one scripted day of POS/WMS traffic.

Everything goes through `LotwiseClient`, so the demo runs against any engine: the one
`lotwise demo` embeds, or a running one (`lotwise demo --target host:port`).

The story. Medline East (org `medline/east`) supplies Boston hospitals from a central
warehouse (DC-EAST) through a front warehouse (FW-BOS) into three smart cabinets on the
wards. Glucose test strips and IV catheters come in lots with expiry dates; catheters in
the cabinets are consignment stock (owned by the supplier, BD, until a nurse takes one).
Lot numbers are deliberately *not* in expiry order, so FEFO visibly picks the lot that
expires first rather than the lowest number or the oldest receipt.

`load_dataset` books the catalog and the opening stock; `run_flow` plays the day and
returns a `DemoSummary` whose fields a test can assert on. Request and hold ids are
derived from a run id (`<run>:<step>`), so a rerun with a new run id never collides with
an earlier one, and a retry inside a run is idempotent. Against a shared engine the run
also gets its own copies of the sites (`FW-BOS.<run>`), so its numbers are the same on
every run and it never disturbs anyone else's stock.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.api.client import LotwiseClient
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceRow
from engine.domain.commands import ReserveLine
from engine.domain.errors import InsufficientStock
from engine.domain.inventory import CommitLine, StockQuery, StockRow
from engine.domain.model import MS_PER_DAY
from engine.domain.statuses import DEFAULT_DICTIONARY, Role
from engine.runtime.types import AggregateState, HoldLine, HoldSummary

# ---- the dataset -----------------------------------------------------------------------

ORG_REGION = "medline/east"
ORG_CITY = "medline/east/boston"

GLU = "GLU-50"  # glucose test strips, box of 50
IVC20 = "IVC-20G"  # IV catheter 20G
IVC22 = "IVC-22G"  # IV catheter 22G

DC, FW = "DC-EAST", "FW-BOS"
ICU, ED, OR = "CAB-MGH-ICU", "CAB-MGH-ED", "CAB-BWH-OR"
SITE_IDS = (DC, FW, ICU, ED, OR)

SKUS = (
    Sku(GLU, "Glucose test strips, box of 50", "box"),
    Sku(IVC20, "IV catheter 20G x 32 mm", "ea"),
    Sku(IVC22, "IV catheter 22G x 25 mm", "ea"),
)

SITES = (
    Site(DC, ORG_REGION, "central_warehouse", "Medline East distribution center"),
    Site(FW, ORG_CITY, "front_warehouse", "Boston front warehouse"),
    Site(ICU, f"{ORG_CITY}/mgh", "cabinet", "MGH ICU smart cabinet"),
    Site(ED, f"{ORG_CITY}/mgh", "cabinet", "MGH emergency department smart cabinet"),
    Site(OR, f"{ORG_CITY}/bwh", "cabinet", "BWH operating room smart cabinet"),
)

BD = "consignment:bd"  # the supplier owns cabinet catheters until one is taken
# The statuses the story moves stock through, by role (statuses are data, DESIGN §3).
INSPECTION = DEFAULT_DICTIONARY.role(Role.INSPECTION)
READY = DEFAULT_DICTIONARY.role(Role.READY)
REJECTED = DEFAULT_DICTIONARY.role(Role.REJECTED)


@dataclass(frozen=True, slots=True)
class Opening:
    """One opening balance: `qty` of `lot` at `site`/`bin`, expiring in `expires_in_days`."""

    site: str
    sku: str
    lot_id: str
    qty: int
    bin: str
    expires_in_days: int
    received_days_ago: int
    owner: str = "own"


# At FW-BOS the strips' lots are numbered 23950 < 24031 < 24088 but expire in 320, 200
# and 25 days, and were received 120, 60 and 10 days ago: FIFO would take GS-23950,
# FEFO takes GS-24088 (the newest receipt, highest-but-one number, first to expire).
OPENING = (
    Opening(DC, GLU, "GS-24117", 400, "A/01/P01", 540, 20),
    Opening(DC, GLU, "GS-24093", 200, "A/01/P02", 400, 45),
    Opening(DC, IVC20, "BD-7781", 1000, "B/02/P05", 700, 30),
    Opening(DC, IVC22, "BD-7790", 600, "B/02/P06", 650, 30),
    Opening(FW, GLU, "GS-23950", 40, "A/02/S1", 320, 120),
    Opening(FW, GLU, "GS-24031", 30, "A/01/S1", 200, 60),
    Opening(FW, GLU, "GS-24088", 12, "A/01/S2", 25, 10),
    Opening(FW, IVC20, "BD-7702", 80, "B/01/S3", 300, 50),
    Opening(FW, IVC22, "BD-7715", 50, "B/01/S4", 15, 90),
    Opening(FW, IVC22, "BD-7799", 40, "B/01/S5", 500, 5),
    Opening(ICU, IVC20, "BD-7702", 40, "D1/S2", 300, 20, BD),
    Opening(ICU, IVC22, "BD-7715", 20, "D1/S3", 15, 20, BD),
    Opening(ICU, GLU, "GS-24031", 6, "D2/S1", 200, 15),
    Opening(ICU, GLU, "GS-24088", 4, "D2/S1", 25, 5),
    Opening(ED, IVC20, "BD-7702", 24, "D1/S1", 300, 20, BD),
    Opening(ED, GLU, "GS-24088", 4, "D2/S1", 25, 5),
    Opening(OR, IVC22, "BD-7715", 30, "D1/S1", 15, 20, BD),
    Opening(OR, IVC20, "BD-7702", 15, "D1/S2", 300, 20),
    Opening(OR, IVC20, "BD-7702", 10, "D1/S2", 300, 20, BD),
)

DEFAULT_ORDER_TTL_MS = 10 * 60_000  # a POS basket is held for ten minutes
DEFAULT_SHORT_TTL_MS = 1_500  # the hold that is left to expire; the demo waits for it
EXPIRY_WAIT_SLACK_MS = 10_000  # bound on waiting past a hold's TTL (clock skew, sweeper)


def new_run_id() -> str:
    """A short id, unique enough per engine: `r` + 6 hex digits."""
    return "r" + secrets.token_hex(3)


@dataclass(frozen=True, slots=True)
class DemoRun:
    """Names for one run: ids are `<run_id>:<name>`, sites are `<site><site_suffix>`."""

    run_id: str
    site_suffix: str = ""

    @classmethod
    def fresh_engine(cls, run_id: str | None = None) -> DemoRun:
        """On an engine of its own the demo uses the plain site names."""
        return cls(run_id or new_run_id())

    @classmethod
    def shared_engine(cls, run_id: str | None = None) -> DemoRun:
        """On an engine others use, the run books into its own copies of the sites."""
        rid = run_id or new_run_id()
        return cls(rid, f".{rid}")

    def site(self, base: str) -> str:
        return base + self.site_suffix

    def rid(self, name: str) -> str:
        return f"{self.run_id}:{name}"

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self.site(s) for s in SITE_IDS)


SEED_RUN = DemoRun("seed")  # what `lotwise up --demo` loads: the plain site names


def day_ms(now_ms: int, days: int) -> int:
    """`now` ± whole days, at noon UTC, so dates read the same all day long."""
    midnight = now_ms - now_ms % MS_PER_DAY
    return midnight + days * MS_PER_DAY + MS_PER_DAY // 2


# ---- loading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetReport:
    loaded: bool  # False: the sites were there already, nothing was booked
    skus: int
    sites: int
    receipts: int
    units: int


async def load_dataset(
    client: LotwiseClient,
    run: DemoRun = SEED_RUN,
    *,
    now_ms: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetReport:
    """Book the catalog (skus, sites) and the opening stock. Skipped when the run's central
    warehouse already exists: opening stock booked twice would double it (the idempotency
    window is minutes, an engine lives for days)."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    known = {s.site for s in await client.list_sites(ORG_REGION)}
    if run.site(DC) in known:
        return DatasetReport(False, len(SKUS), len(SITES), 0, 0)
    for sku in SKUS:
        await client.put_sku(sku, request_id=run.rid(f"sku:{sku.sku}"))
    for site in SITES:
        await client.put_site(
            Site(run.site(site.site), site.org_path, site.kind, site.name), request_id=run.rid(f"site:{site.site}")
        )
    total = len(OPENING)
    for i, o in enumerate(OPENING):
        await client.receive(
            o.sku,
            run.site(o.site),
            o.lot_id,
            o.qty,
            bin=o.bin,
            status=READY,  # opening balances are counted, sellable stock
            owner=o.owner,
            expires_at_ms=day_ms(now_ms, o.expires_in_days),
            received_at_ms=day_ms(now_ms, -o.received_days_ago),
            doc_ref="opening-balance",
            request_id=run.rid(f"open:{i}"),
        )
        if progress is not None:
            progress(i + 1, total)
    return DatasetReport(True, len(SKUS), len(SITES), total, sum(o.qty for o in OPENING))


# ---- slices ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SliceSpec:
    title: str
    sku: str
    site: str  # the base name; the run's suffix is added
    group_by: tuple[Dimension, ...]
    bin_depth: int = 0


@dataclass(frozen=True, slots=True)
class SliceTable:
    """An availability slice as read: what the CLI prints as a table."""

    title: str
    sku: str
    site: str
    group_by: tuple[Dimension, ...]
    available: int
    rows: tuple[SliceRow, ...]
    as_of_ms: int


SLICES = (
    SliceSpec("strips at the front warehouse, by status", GLU, FW, (Dimension.STATUS,)),
    SliceSpec("strips at the front warehouse, by lot (expiry)", GLU, FW, (Dimension.LOT,)),
    SliceSpec("strips at the front warehouse, by bin (zone/shelf)", GLU, FW, (Dimension.BIN,), bin_depth=2),
    SliceSpec("20G catheters in the BWH OR cabinet, by owner", IVC20, OR, (Dimension.OWNER,)),
)


async def read_slices(
    client: LotwiseClient, run: DemoRun, specs: Sequence[SliceSpec] = SLICES
) -> tuple[SliceTable, ...]:
    out = []
    for spec in specs:
        a = await client.get_availability(spec.sku, run.site(spec.site), spec.group_by, bin_depth=spec.bin_depth)
        out.append(SliceTable(spec.title, a.sku, a.site, spec.group_by, a.available, a.rows, a.as_of_ms))
    return tuple(out)


async def available(client: LotwiseClient, sku: str, site: str) -> int:
    return (await client.get_availability(sku, site)).available


# ---- the scripted day ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One line of narration: what happened, in business words."""

    title: str
    detail: str
    ok: bool = True  # False for the refusals the story shows on purpose


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the scripted day did, for printing and for tests to assert on."""

    run_id: str
    sites: tuple[str, ...]
    # inbound
    received_qty: int
    qc_passed_qty: int
    qc_damaged_qty: int
    putaway_qty: int
    # the POS order across two sites
    order_hold_id: str
    order_lines: int
    fefo_lots: tuple[str, ...]  # lots the strips line took, in removal order
    earliest_expiry_lot: str  # the lot FEFO must take first
    oldest_receipt_lot: str  # the lot FIFO would have taken first
    shelf_life_lot: str  # the lot the 22G line took under min_shelf_life_days=30
    committed_qty: int
    released_on_commit_qty: int
    order_state: str
    # cabinets and counts
    scan_take_qty: int
    overtake_consumed_qty: int
    overtake_shortfall_qty: int
    count_variance: int
    # the refused order
    refused_reason: str
    refused_message: str
    refused_requested: int
    refused_available: int
    refusal_changed_nothing: bool  # the order's other line was compensated (all-or-nothing)
    # holds that end without a commit
    released_hold_state: str
    released_hold_qty: int
    expiring_hold_state: str
    expiring_available_before: int
    expiring_available_during: int
    expiring_available_after: int
    # slices
    before: tuple[SliceTable, ...]
    after: tuple[SliceTable, ...]
    rollup_org: str
    rollup: tuple[StockRow, ...]
    steps: tuple[Step, ...] = field(default=())
    replenishment: CabinetSuggestion | None = None  # None: the engine serves no replenishment


async def run_flow(
    client: LotwiseClient,
    run: DemoRun,
    *,
    short_ttl_ms: int = DEFAULT_SHORT_TTL_MS,
    on_step: Callable[[Step], None] | None = None,
) -> DemoSummary:
    """Play the day against a loaded dataset (`load_dataset` with the same run)."""
    steps: list[Step] = []

    def say(title: str, detail: str, ok: bool = True) -> None:
        step = Step(title, detail, ok)
        steps.append(step)
        if on_step is not None:
            on_step(step)

    s = run.site
    now_ms = time.time_ns() // 1_000_000
    before = await read_slices(client, run)

    # 1. Inbound: a delivery lands at the front warehouse's dock, in QC hold.
    asn = "ASN-88412"
    for sku, lot_id, qty, days in ((GLU, "GS-24120", 60, 600), (IVC20, "BD-7810", 100, 720)):
        await client.receive(
            sku,
            s(FW),
            lot_id,
            qty,
            bin="R/00/IN",
            status=INSPECTION,
            expires_at_ms=day_ms(now_ms, days),
            doc_ref=asn,
            request_id=run.rid(f"recv:{lot_id}"),
        )
    say("receive", f"{asn}: 60 boxes GLU-50 lot GS-24120 and 100 IVC-20G lot BD-7810 at {s(FW)} dock, in qc_hold")

    # 2. QC: 58 boxes pass, 2 crushed ones are damaged; the catheters all pass.
    passed = await client.change_status(
        GLU, s(FW), "GS-24120", 58, INSPECTION, READY, bin="R/00/IN", request_id=run.rid("qc:GS-24120:pass")
    )
    damaged = await client.change_status(
        GLU, s(FW), "GS-24120", 2, INSPECTION, REJECTED, bin="R/00/IN", request_id=run.rid("qc:GS-24120:damaged")
    )
    await client.change_status(
        IVC20, s(FW), "BD-7810", 100, INSPECTION, READY, bin="R/00/IN", request_id=run.rid("qc:BD-7810:pass")
    )
    say("qc", f"GS-24120: {passed.qty} passed to available, {damaged.qty} to damaged; BD-7810: 100 passed")

    # 3. Putaway: from the dock to their shelves.
    moved = await client.move(GLU, s(FW), "GS-24120", 58, "R/00/IN", "A/03/P12", request_id=run.rid("put:GS-24120"))
    await client.move(IVC20, s(FW), "BD-7810", 100, "R/00/IN", "B/03/P01", request_id=run.rid("put:BD-7810"))
    say("putaway", f"GS-24120 ×{moved.qty} R/00/IN → A/03/P12; BD-7810 ×100 R/00/IN → B/03/P01")

    # 4. A POS order across two sites, all or nothing; FEFO picks the strips.
    order_id = run.rid("SO-1001")
    order = await client.reserve(
        [
            HoldLine(GLU, s(FW), ReserveLine(20)),
            # Hospitals refuse catheters expiring within a month: BD-7715 (15 days) is skipped.
            HoldLine(IVC22, s(FW), ReserveLine(10, min_shelf_life_days=30)),
            HoldLine(IVC20, s(DC), ReserveLine(200)),
        ],
        DEFAULT_ORDER_TTL_MS,
        hold_id=order_id,
        doc_ref="SO-1001",
        request_id=order_id,
    )
    strips = next(p for p in order.parts if p.sku == GLU)
    cath22 = next(p for p in order.parts if p.sku == IVC22)
    fefo_lots = tuple(a.lot_id for a in strips.allocations)
    say(
        "reserve",
        f"SO-1001 holds {order.held_qty} units on {len(order.parts)} pairs at {s(FW)} and {s(DC)}; "
        f"FEFO took strips from {' then '.join(f'{a.lot_id} ×{a.qty}' for a in strips.allocations)}; "
        f"22G (≥30 days shelf life) from {cath22.allocations[0].lot_id}",
    )
    committed = await client.commit(
        order_id,
        [CommitLine(GLU, s(FW), 16), CommitLine(IVC20, s(DC), 200)],  # no 22G after all
        doc_ref="SO-1001/invoice",
        request_id=run.rid("SO-1001:commit"),
    )
    say(
        "commit",
        f"SO-1001 partial commit: {committed.committed_qty} committed, {committed.released_qty} released "
        f"(4 strips and all 10 catheters 22G went back to free stock)",
    )

    # 5. Cabinet scan-takes: physical facts, never refused. The ED cabinet's strips are
    # replenished from the front warehouse: its scans feed that suggestion.
    replenishing = await designate_cabinet_supplier(client, run)
    take = await client.consume(
        IVC20, s(ICU), 3, owner="consignment", doc_ref="case-4471", request_id=run.rid("scan:1")
    )
    say("consume", f"{s(ICU)}: nurse took {take.consumed_qty} IVC-20G (consignment: BD is now owed for them)")
    over = await client.consume(GLU, s(ED), 6, doc_ref="case-4480", request_id=run.rid("scan:2"))
    say(
        "consume",
        f"{s(ED)}: took 6 boxes of strips, books showed {over.consumed_qty}: "
        f"discrepancy of {over.shortfall_qty} booked to count variance",
        ok=over.shortfall_qty == 0,
    )

    # 5b. The ED cabinet's scans took its strips under the reorder point: the suggestion appears.
    replenishment = await cabinet_suggestion(client, run) if replenishing else None
    if replenishment is not None:
        say("replen", replenishment.line(), ok=replenishment.state == "open")
    else:
        say("replen", "this engine serves no replenishment (settings.replenish off)", ok=False)

    # 6. Cycle count: three catheters are missing from their shelf.
    count = await client.adjust(
        IVC20, s(FW), "BD-7702", 77, bin="B/01/S3", reason="cycle_count", request_id=run.rid("count:1")
    )
    say(
        "adjust",
        f"cycle count {s(FW)} B/01/S3 BD-7702: book {count.previous_qty}, counted 77, variance {count.variance}",
    )

    # 7. An order that cannot be filled: refused whole, the line that fitted is undone.
    strips_free_before = await available(client, GLU, s(FW))
    refused: InsufficientStock | None = None
    try:
        await client.reserve(
            [HoldLine(GLU, s(FW), ReserveLine(5)), HoldLine(IVC22, s(OR), ReserveLine(40))],
            DEFAULT_ORDER_TTL_MS,
            hold_id=run.rid("SO-1002"),
            doc_ref="SO-1002",
            request_id=run.rid("SO-1002"),
        )
    except InsufficientStock as err:
        refused = err
    if not isinstance(refused, InsufficientStock):
        raise RuntimeError("SO-1002 should have been refused for insufficient stock")
    strips_free_after = await available(client, GLU, s(FW))
    say(
        "reserve",
        f"SO-1002 refused: {refused.code} {refused.reason} — {refused.message}; "
        f"nothing held (strips free before {strips_free_before}, after {strips_free_after})",
        ok=False,
    )

    # 8. A hold the customer cancels.
    cancel_id = run.rid("SO-1003")
    await client.reserve(
        [HoldLine(IVC20, s(OR), ReserveLine(5, owner="own"))],
        DEFAULT_ORDER_TTL_MS,
        hold_id=cancel_id,
        doc_ref="SO-1003",
        request_id=cancel_id,
    )
    released = await client.release(cancel_id, doc_ref="SO-1003/cancel", request_id=run.rid("SO-1003:release"))
    say("release", f"SO-1003 cancelled: hold {released.state.value}, {released.released_qty} units free again")

    # 9. A hold nobody commits: it stops counting when its TTL passes.
    expiring_id = run.rid("SO-1004")
    free_before = await available(client, GLU, s(ICU))
    hold = await client.reserve(
        [HoldLine(GLU, s(ICU), ReserveLine(2))],
        short_ttl_ms,
        hold_id=expiring_id,
        doc_ref="SO-1004",
        request_id=expiring_id,
    )
    free_during = await available(client, GLU, s(ICU))
    say("reserve", f"SO-1004 holds 2 boxes at {s(ICU)} for {short_ttl_ms} ms (free {free_before} → {free_during})")
    say("wait", f"nobody commits SO-1004; waiting {short_ttl_ms} ms for its TTL to pass")
    expired = await wait_for_expiry(client, expiring_id, hold.expires_at_ms)
    free_after = await available(client, GLU, s(ICU))
    say("expire", f"SO-1004 {expired.state.value} after its TTL: free again {free_after}")

    after = await read_slices(client, run)
    rollup = await client.query_stock(
        StockQuery(sites=run.sites, org_prefix=ORG_CITY, group_by=(Dimension.OWNER,), by_site=False)
    )
    return DemoSummary(
        run_id=run.run_id,
        sites=run.sites,
        received_qty=160,
        qc_passed_qty=passed.qty + 100,
        qc_damaged_qty=damaged.qty,
        putaway_qty=moved.qty + 100,
        order_hold_id=order_id,
        order_lines=3,
        fefo_lots=fefo_lots,
        earliest_expiry_lot=_first(FW, GLU, key=lambda o: o.expires_in_days),
        oldest_receipt_lot=_first(FW, GLU, key=lambda o: -o.received_days_ago),
        shelf_life_lot=cath22.allocations[0].lot_id,
        committed_qty=committed.committed_qty,
        released_on_commit_qty=committed.released_qty,
        order_state=committed.state.value,
        scan_take_qty=take.consumed_qty,
        overtake_consumed_qty=over.consumed_qty,
        overtake_shortfall_qty=over.shortfall_qty,
        count_variance=count.variance,
        refused_reason=refused.reason,
        refused_message=refused.message,
        refused_requested=refused.requested,
        refused_available=refused.available,
        refusal_changed_nothing=strips_free_before == strips_free_after,
        released_hold_state=released.state.value,
        released_hold_qty=released.released_qty,
        expiring_hold_state=expired.state.value,
        expiring_available_before=free_before,
        expiring_available_during=free_during,
        expiring_available_after=free_after,
        before=before,
        after=after,
        rollup_org=ORG_CITY,
        rollup=tuple(rollup),
        steps=tuple(steps),
        replenishment=replenishment,
    )


# ---- replenishment: the ED cabinet's strips, supplied by the front warehouse ----------------

CABINET_LEAD_TIMES = (1, 2, 1)  # days the front warehouse took for its last deliveries to the cabinet
SUGGESTION_WAIT_S = 3.0  # the trigger raises it within a second; then the demo asks for a full recompute


@dataclass(frozen=True, slots=True)
class CabinetSuggestion:
    """The suggestion the ED cabinet's scans raised, with its key parameters."""

    sku: str
    site: str
    supplier: str
    version: int
    state: str
    qty: int
    inventory_position: int
    reorder_point: float
    order_up_to: float
    safety_stock: float
    daily_demand: float
    lead_time_days: float
    buffer: float
    moq: int
    multiple: int
    method: str
    raised_by: str  # "journal" (the trigger) or "recompute" (the full recompute: no journal follower)
    reason: str  # why not, when nothing is to be ordered

    def line(self) -> str:
        if self.state != "open":
            return (
                f"{self.site}: no order of {self.sku} from {self.supplier} (v{self.version}, {self.state}): "
                f"{self.reason} — an engine without a journal follower sees no scans; MOQ {self.moq} × {self.multiple}"
            )
        return (
            f"{self.site}: order {self.qty} {self.sku} from {self.supplier} (v{self.version}, {self.state}, "
            f"raised by {self.raised_by}): "
            f"position {self.inventory_position} ≤ reorder point {self.reorder_point:.1f}; "
            f"d̂ {self.daily_demand:.2f}/day ({self.method}), L̄ {self.lead_time_days:.1f} d, "
            f"safety stock {self.safety_stock:.1f}, buffer {self.buffer:.2f}, up to {self.order_up_to:.1f}, "
            f"MOQ {self.moq} × {self.multiple}"
        )


async def designate_cabinet_supplier(client: LotwiseClient, run: DemoRun) -> bool:
    """The front warehouse supplies the ED cabinet's strips (MOQ 10, multiples of 10); False when
    the engine serves no replenishment."""
    import grpc

    from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
    from engine.api.gen.lotwise.v1 import replenishment_pb2_grpc as rpb_grpc

    now_ms = time.time_ns() // 1_000_000
    leads = [
        rpb.LeadTime(days=d, received_at_ms=now_ms - (i + 1) * 7 * MS_PER_DAY) for i, d in enumerate(CABINET_LEAD_TIMES)
    ]
    supplier = rpb.Supplier(
        sku=GLU, site=run.site(ED), supplier=run.site(FW), moq=10, multiple=10, lead_times=leads, keeper="nurse-amy"
    )
    try:
        await rpb_grpc.ReplenishmentStub(client.channel).PutSupplier(
            rpb.PutSupplierRequest(supplier=supplier), metadata=client.metadata
        )
    except grpc.aio.AioRpcError as err:
        if err.code() is grpc.StatusCode.UNIMPLEMENTED:
            return False
        raise
    return True


async def cabinet_suggestion(client: LotwiseClient, run: DemoRun) -> CabinetSuggestion | None:
    """The ED cabinet's open suggestion once the trigger has seen its scans (bounded wait)."""
    import grpc

    from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
    from engine.api.gen.lotwise.v1 import replenishment_pb2_grpc as rpb_grpc

    stub = rpb_grpc.ReplenishmentStub(client.channel)
    ref = rpb.SuggestionRef(sku=GLU, site=run.site(ED))

    async def read() -> rpb.Suggestion | None:
        try:
            return (await stub.ExplainSuggestion(ref, metadata=client.metadata)).suggestion
        except grpc.aio.AioRpcError as err:
            if err.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            return None

    deadline = time.monotonic() + SUGGESTION_WAIT_S
    found = await read()
    while (found is None or found.state != "open") and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        found = await read()
    if found is None or found.state != "open":
        # An engine whose journal is in memory has no journal follower: the scheduled full
        # recompute is what would raise it; run it now.
        await stub.RecomputeAll(rpb.RecomputeAllRequest(), metadata=client.metadata)
        found = await read()
    if found is None:
        return None
    p = found.panel
    return CabinetSuggestion(
        GLU,
        found.site,
        found.supplier,
        found.version,
        found.state,
        found.qty,
        p.inventory_position,
        p.reorder_point,
        p.order_up_to,
        p.safety_stock,
        p.daily_demand,
        p.lead_time_days,
        p.buffer,
        p.moq,
        p.multiple,
        p.method,
        found.trigger,
        p.reason,
    )


async def wait_for_expiry(client: LotwiseClient, hold_id: str, expires_at_ms: int) -> HoldSummary:
    """Wait out a hold's TTL, then read it until it reads EXPIRED (bounded)."""
    wait_ms = max(expires_at_ms - time.time_ns() // 1_000_000, 0)
    await asyncio.sleep(wait_ms / 1000)
    deadline = time.monotonic() + EXPIRY_WAIT_SLACK_MS / 1000
    while True:
        hold = await client.get_hold(hold_id)
        if hold.state is not AggregateState.ACTIVE or time.monotonic() >= deadline:
            return hold
        await asyncio.sleep(0.1)  # the engine's clock may trail ours a little


def _first(site: str, sku: str, *, key: Callable[[Opening], int]) -> str:
    return min((o for o in OPENING if o.site == site and o.sku == sku), key=key).lot_id


# ---- the same scan, from a cabinet over NATS (embedded demo) ---------------------------

CABINET_DEVICE = "ICU-CAB-01"  # mapped to CAB-MGH-ICU by adapters/nats/ingest/example.toml
IVC20_GTIN = "00380652001205"


@dataclass(frozen=True, slots=True)
class CabinetScan:
    """What the NATS step saw: the take, how fast it was visible, and its business event."""

    site: str
    available_before: int
    available_after: int
    visible_after_ms: float
    event_subject: str
    event_doc_ref: str
    event_extended_price: str


async def cabinet_scan_over_nats(
    client: LotwiseClient, nats_url: str, namespace: str, *, timeout_s: float = 10.0
) -> CabinetScan:
    """A nurse scans a catheter out of the ICU cabinet: the cabinet publishes the GS1 scan
    on NATS, the engine applies it, central availability shows it, and the movement leaves
    as a business event carrying the price the cabinet sent."""
    import nats
    import orjson

    from adapters.nats.ingest.config import inbound_prefix
    from engine.domain.gs1 import Gs1Data, encode_gs1

    events_prefix = "lotwise.events" if namespace == "lotwise" else f"lotwise.{namespace}.events"
    before = (await client.get_availability(IVC20, ICU)).available
    nc = await nats.connect(nats_url, connect_timeout=timeout_s)
    try:
        sub = await nc.subscribe(f"{events_prefix}.consume.{ICU}")
        scan = {
            "event_id": f"{CABINET_DEVICE}-{new_run_id()}",
            "type": "scan_take",
            "cabinet_id": CABINET_DEVICE,
            "barcode": encode_gs1(Gs1Data(gtin=IVC20_GTIN, lot="BD-7702")),
            "qty": 1,
            "doc_ref": "case-4502",
            "finance": {"currency": "USD", "unit_price": "3.85", "tax_rate": "0"},
        }
        sent = time.perf_counter()
        await nc.jetstream().publish(f"{inbound_prefix(namespace)}.cabinet.{CABINET_DEVICE}", orjson.dumps(scan))
        after = before
        while after == before:
            if time.perf_counter() - sent > timeout_s:
                raise TimeoutError(f"the cabinet scan was not visible within {timeout_s} s")
            await asyncio.sleep(0.002)
            after = (await client.get_availability(IVC20, ICU)).available
        visible_ms = (time.perf_counter() - sent) * 1000
        msg = await sub.next_msg(timeout=timeout_s)
        event = orjson.loads(msg.data)
    finally:
        await nc.close()
    finance = event.get("finance") or {}
    return CabinetScan(
        ICU, before, after, visible_ms, msg.subject, event.get("doc_ref", ""), finance.get("extended_price", "")
    )
