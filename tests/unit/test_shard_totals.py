"""The per-site totals a shard keeps (engine.domain.totals) always answer exactly what a full
scan of the cells answers: after random receipts, holds (committed, released, left to
expire), consumptions to zero, status changes, opened lots with a changed shelf life,
sweeps, hand-offs, a snapshot round trip, and an engine clock that jumps (also back).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter, SliceRow
from engine.domain.commands import ChangeStatus, Commit, Consume, Receive, Release, Reserve, ReserveLine
from engine.domain.grants import ReadScope
from engine.domain.model import MS_PER_DAY
from engine.domain.shard import HandOff, Op, PutSite, PutSku, ScanCells, ShardCore, Sweep
from engine.domain.totals import answers_from_totals

T0 = 1_800_000_000_000
SKUS = ("S1", "S2", "S3")
SITES = (("A", "acme/east/a"), ("B", "acme/east/b"), ("C", "acme/west/c"))
STATUSES = ("available", "qc_hold", "damaged")
OWNERS = ("own", "consignment:acme", "consignment:zeta")
GROUPS = (
    (),
    (Dimension.STATUS,),
    (Dimension.OWNER,),
    (Dimension.STATUS, Dimension.OWNER),
    (Dimension.OWNER, Dimension.STATUS),
)
FILTERS = (
    SliceFilter(),
    SliceFilter(statuses=frozenset({"available"})),
    SliceFilter(owner="consignment"),
    SliceFilter(statuses=frozenset({"qc_hold", "damaged"}), owner="own"),
)
SCOPES = (
    None,
    ReadScope(everything=True),
    ReadScope(everything=False, orgs=frozenset({"acme/east"})),
    ReadScope(everything=False, sites=frozenset({"C"}), bins={"A": ("X/",)}),
)

# Few pairs, so that holds, expiries and consumptions meet the same cells often.
SHAPES: tuple[tuple[bool, frozenset[str], str], ...] = (
    (True, frozenset(), ""),
    (False, frozenset(), "acme/east"),
    (True, frozenset({"A", "C"}), ""),
)
pairs = st.tuples(st.sampled_from(SKUS[:2]), st.sampled_from(("A", "A", "B", "C")))


@st.composite
def steps(draw: st.DrawFn, n: int) -> Op | tuple[str, int]:
    sku, site = draw(pairs)
    rid = f"r{n}"
    hold = f"H{draw(st.integers(0, 5))}"
    kind = draw(
        st.sampled_from(
            (
                "receive",
                "receive",
                "reserve",
                "commit",
                "release",
                "consume",
                "status",
                "clock",
                "sweep",
                "shelf",
                "handoff",
                "scan",
            )
        )
    )
    match kind:
        case "receive":
            expiry = draw(st.sampled_from((0, T0 + 5_000, T0 + 2 * MS_PER_DAY, T0 + 40 * MS_PER_DAY)))
            opened = draw(st.sampled_from((0, T0 - MS_PER_DAY)))
            return Receive(
                rid, sku, site, f"L{draw(st.integers(0, 3))}", draw(st.integers(1, 20)),
                draw(st.sampled_from(("X/1", "X/2", "Y/1"))), draw(st.sampled_from(STATUSES)),
                draw(st.sampled_from(OWNERS)), expiry, opened_at_ms=opened,
            )  # fmt: skip
        case "reserve":
            return Reserve(
                rid, sku, site, hold, (ReserveLine(draw(st.integers(1, 8))),), draw(st.sampled_from((1_000, 60_000)))
            )
        case "commit":
            return Commit(rid, sku, site, hold, draw(st.sampled_from((None, 1))))
        case "release":
            return Release(rid, sku, site, hold)
        case "consume":
            return Consume(rid, sku, site, draw(st.integers(1, 30)))
        case "status":
            return ChangeStatus(
                rid,
                sku,
                site,
                f"L{draw(st.integers(0, 3))}",
                1,
                "available",
                draw(st.sampled_from(STATUSES)),
                draw(st.sampled_from(("X/1", "X/2", "Y/1"))),
            )
        case "sweep":
            return Sweep()
        case "shelf":
            return PutSku(Sku(sku, opened_shelf_life_hours=draw(st.sampled_from((0, 1, 30)))))
        case "handoff":
            return HandOff(sku, site, "elsewhere")
        case "scan":
            return ("scan", 0)
        case _:
            return ("clock", draw(st.sampled_from((1, 999, 1_000, 5_000, 60_000, MS_PER_DAY, -3_000))))


def _key(answer: tuple[str, str, SliceRow]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    return answer[0], answer[1], answer[2].group


def both_ways(core: ShardCore, op: ScanCells, now_ms: int) -> None:
    assert answers_from_totals(op.group_by, op.filter, op.by_sku, op.skus)
    fast = sorted(core.apply(op, now_ms), key=_key)
    slow = sorted(core.scan_cells(op, now_ms), key=_key)
    assert fast == slow, (op, now_ms)


def every_question(core: ShardCore, now_ms: int) -> None:
    for group in GROUPS:
        for filt in FILTERS:
            for scope in SCOPES:
                for by_site, sites, org in (
                    (True, frozenset(), ""),
                    (False, frozenset(), "acme/east"),
                    (True, frozenset({"A", "C"}), ""),
                ):
                    both_ways(
                        core, ScanCells(frozenset(), sites, org, group, filt, 0, 1_000, False, by_site, scope), now_ms
                    )


def one_question(core: ShardCore, now_ms: int, data: st.DataObject) -> None:
    by_site, sites, org = data.draw(st.sampled_from(SHAPES))
    group, filt, scope = (
        data.draw(st.sampled_from(GROUPS)),
        data.draw(st.sampled_from(FILTERS)),
        data.draw(st.sampled_from(SCOPES)),
    )
    both_ways(core, ScanCells(frozenset(), sites, org, group, filt, 0, 1_000, False, by_site, scope), now_ms)


def a_shard() -> ShardCore:
    core = ShardCore("totals")
    core.apply_batch([*(PutSku(Sku(s)) for s in SKUS), *(PutSite(Site(s, org)) for s, org in SITES)], T0)
    return core


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_kept_totals_answer_what_a_full_scan_answers(data: st.DataObject) -> None:
    core = a_shard()
    now = T0
    for n in range(data.draw(st.integers(5, 40))):
        step = data.draw(steps(n))
        if isinstance(step, tuple):
            if step[0] == "clock":
                now += step[1]
            else:
                every_question(core, now)
        else:
            core.apply_batch([step], now)
            core.drain()
        one_question(core, now, data)
    every_question(core, now)
    # The totals are derived, not stored: a shard recovered from its snapshot rebuilds them.
    again = ShardCore.from_state(core.export_state())
    every_question(again, now)


def test_only_changed_or_timed_out_cells_are_recomputed() -> None:
    core = a_shard()
    batch: list[Op] = [
        Receive(f"r{i}", s, site, "L1", 5, "X/1", "available", "own", T0 + MS_PER_DAY)
        for i, (s, (site, _)) in enumerate((s, x) for s in SKUS for x in SITES)
    ]
    core.apply_batch(batch, T0)
    core.drain()
    whole = ScanCells(frozenset(), frozenset(), "", (), SliceFilter(), 0, 1_000, False, True)
    core.apply(whole, T0)
    totals = core._totals
    assert totals is not None
    assert totals.refresh(core.cells, T0) == 0  # nothing changed since
    core.apply_batch([Reserve("h", "S1", "A", "H1", (ReserveLine(2),), 1_000)], T0)
    core.drain()
    assert totals.refresh(core.cells, T0 + 1) == 1  # the held cell only
    assert totals.refresh(core.cells, T0 + 1_000) == 1  # its hold's TTL passed: once more
    assert totals.refresh(core.cells, T0 + 2_000) == 0
    assert totals.refresh(core.cells, T0 + MS_PER_DAY) == len(batch)  # every lot expired now
    rows = core.apply(whole, T0 + MS_PER_DAY)
    assert all(row.available == 0 and row.qty == 15 for _, _, row in rows)


def test_a_sku_filter_or_a_bin_grouping_still_scans_the_cells() -> None:
    assert not answers_from_totals((Dimension.BIN,), SliceFilter(), False, ())
    assert not answers_from_totals((), SliceFilter(), True, ())
    assert not answers_from_totals((), SliceFilter(), False, ("S1",))
    assert not answers_from_totals((), SliceFilter(bin_prefix="X"), False, ())
    assert not answers_from_totals((), SliceFilter(sellable_only=True), False, ())
    assert answers_from_totals(
        (Dimension.OWNER,), SliceFilter(owner="own", statuses=frozenset({"available"})), False, ()
    )
