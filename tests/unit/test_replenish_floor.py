"""The floor under a pair's position (engine.replenish.floor): driven by a real cell's own
movements, delivered late as the journal delivers them, it is never above the position the cells
answer — so the trigger's screen never skips a pair whose position really crossed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.cell import Cell, Dimension, SliceRow
from engine.domain.commands import ChangeStatus, Commit, Consume, Move, Receive, Release, Reserve, ReserveLine
from engine.domain.errors import DomainError
from engine.domain.model import Movement
from engine.replenish.floor import PositionFloors
from engine.replenish.service import StockPosition, read_position

SKU, SITE = "BRG-6204", "HW-DC"
PAIR = (SKU, SITE)
DAY_MS = 86_400_000
T0 = 1_767_225_600_000


@dataclass
class _Rows:
    rows: tuple[SliceRow, ...]


class _CellStock:
    """The cells' read path over one real cell."""

    def __init__(self, cell: Cell, clock: list[int]) -> None:
        self.cell, self.clock = cell, clock

    async def get_availability(self, sku: str, site: str, group_by: Sequence[Dimension] = ()) -> _Rows:
        return _Rows(tuple(self.cell.slice(self.clock[0], tuple(group_by))))


class _World:
    def __init__(self) -> None:
        self.clock = [T0]
        self.cell = Cell(SKU, SITE)
        self.stock = _CellStock(self.cell, self.clock)
        self.floors = PositionFloors()
        self.journal: list[Movement] = []  # produced by the cell, not yet delivered to the follower
        self.reading: int | None = None  # a read begun, not answered yet
        self.n = 0
        self.holds: list[str] = []

    def command(self, cmd: Any) -> None:
        with contextlib.suppress(DomainError):  # refused: nothing changed
            self.cell.handle(cmd, self.clock[0])
        self.journal.extend(self.cell.drain())

    def rid(self) -> str:
        self.n += 1
        return f"r{self.n}"

    def deliver(self, count: int) -> None:
        for m in self.journal[:count]:
            self.floors.note(m, fresh=True)
        del self.journal[:count]

    async def truth(self) -> StockPosition:
        return await read_position(self.stock, SKU, SITE, self.clock[0])

    async def answer_read(self) -> None:
        if self.reading is not None:
            p = await self.truth()
            self.floors.seed(PAIR, self.reading, p.on_hand, p.in_transit, p.fresh_until_ms)
            self.reading = None


LOTS = ("L1", "L2", "L3", "L4", "L5", "L6")
steps = st.one_of(
    st.tuples(
        st.just("receive"),
        st.sampled_from(LOTS),
        st.integers(1, 20),
        st.sampled_from(["available"] * 6 + ["receiving", "qc_hold"]),
        st.sampled_from([0, 1, 3, 40]),
    ),
    st.tuples(st.just("consume"), st.integers(1, 15)),
    st.tuples(st.just("reserve"), st.integers(1, 10), st.sampled_from([1_000, 60_000])),
    st.tuples(st.just("commit"), st.integers(0, 2), st.sampled_from([None, 1, 3])),
    st.tuples(st.just("release"), st.integers(0, 2)),
    st.tuples(
        st.just("status"),
        st.sampled_from(LOTS),
        st.integers(1, 10),
        st.sampled_from(
            [
                ("available", "damaged"),
                ("qc_hold", "available"),
                ("qc_hold", "damaged"),
                ("available", "promo_locked"),
                ("promo_locked", "available"),
                ("available", "picking"),
                ("picking", "available"),
            ]
        ),
    ),
    st.tuples(st.just("move"), st.sampled_from(LOTS), st.integers(1, 10)),
    st.tuples(st.just("advance"), st.sampled_from([0, 300, 2_500, 70_000, DAY_MS, 3 * DAY_MS])),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("deliver"), st.integers(1, 6)),
    st.tuples(st.just("deliver"), st.just(100)),
    st.tuples(st.just("begin")),
    st.tuples(st.just("answer")),
    st.tuples(st.just("begin")),
    st.tuples(st.just("answer")),
)


async def _step(w: _World, step: tuple[Any, ...]) -> None:
    kind, now = step[0], w.clock[0]
    if kind == "receive":
        _, lot, qty, status, days = step
        w.command(
            Receive(w.rid(), SKU, SITE, lot, qty, status=status, expires_at_ms=now + days * DAY_MS if days else 0)
        )
    elif kind == "consume":
        w.command(Consume(w.rid(), SKU, SITE, step[1]))
    elif kind == "reserve":
        w.holds.append(f"h{len(w.holds)}")
        w.command(Reserve(w.rid(), SKU, SITE, w.holds[-1], (ReserveLine(step[1]),), ttl_ms=step[2]))
    elif kind == "commit" and w.holds:
        w.command(Commit(w.rid(), SKU, SITE, w.holds[-1 - step[1] % len(w.holds)], qty=step[2]))
    elif kind == "release" and w.holds:
        w.command(Release(w.rid(), SKU, SITE, w.holds[-1 - step[1] % len(w.holds)]))
    elif kind == "status":
        _, lot, qty, (src, dst) = step
        w.command(ChangeStatus(w.rid(), SKU, SITE, lot, qty, src, dst))
    elif kind == "move":
        w.command(Move(w.rid(), SKU, SITE, step[1], step[2], "", "A/01"))
    elif kind == "advance":
        w.clock[0] += step[1]
    elif kind == "sweep":
        w.cell.expire_due(now)
        w.journal.extend(w.cell.drain())
    elif kind == "deliver":
        w.deliver(step[1])
    elif kind == "begin" and w.reading is None:
        w.reading = w.floors.begin(PAIR, now)
    elif kind == "answer":
        await w.answer_read()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=1, max_size=60))
def test_the_floor_is_never_above_the_cells_position(plan: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        w = _World()
        for lot, status in (("L1", "available"), ("L2", "available"), ("L3", "receiving")):
            w.command(Receive(w.rid(), SKU, SITE, lot, 30, status=status, expires_at_ms=T0 + 2 * DAY_MS))
        w.deliver(len(w.journal))
        w.reading = w.floors.begin(PAIR, w.clock[0])
        await w.answer_read()
        for step in plan:
            await _step(w, step)
            if w.journal:
                continue  # the follower has not seen everything yet: the bound is for what it saw
            floored = w.floors.position(PAIR, w.clock[0])
            if floored is not None:
                truth = await w.truth()
                assert floored.available + floored.in_transit <= truth.on_hand + truth.in_transit, (step, truth)

    asyncio.run(run())


def test_sales_reserves_and_commits_after_the_read_keep_the_floor_exact() -> None:
    """The trigger's steady state (orders: reserve then commit, scans): the floor follows the
    cells unit for unit, so such a pair is screened with no read for as long as it moves."""

    async def run() -> None:
        w = _World()
        w.command(Receive(w.rid(), SKU, SITE, "L1", 100, status="available", expires_at_ms=T0 + 40 * DAY_MS))
        w.deliver(len(w.journal))
        w.reading = w.floors.begin(PAIR, w.clock[0])
        await w.answer_read()
        w.clock[0] += 5_000  # later than the read by more than the margin
        w.command(Reserve(w.rid(), SKU, SITE, "h-1", (ReserveLine(7),), ttl_ms=60_000))
        w.command(Commit(w.rid(), SKU, SITE, "h-1", qty=5))  # the other 2 released with it
        w.command(Consume(w.rid(), SKU, SITE, 3))
        w.command(Reserve(w.rid(), SKU, SITE, "h-2", (ReserveLine(4),), ttl_ms=60_000))
        w.command(Receive(w.rid(), SKU, SITE, "L2", 10, status="available", expires_at_ms=T0 + 50 * DAY_MS))
        w.deliver(len(w.journal))
        floored = w.floors.position(PAIR, w.clock[0])
        truth = await w.truth()
        assert floored is not None
        assert (floored.available, truth.on_hand) == (100 - 5 - 3 - 4 + 10, 100 - 5 - 3 - 4 + 10)
        w.clock[0] += 40 * DAY_MS  # L1 expires: the floor goes with it (read again)
        assert w.floors.position(PAIR, w.clock[0]) is None

    asyncio.run(run())


def test_arriving_stock_and_an_expired_lot_in_a_sellable_status_are_read_each_time() -> None:
    async def run() -> None:
        w = _World()
        w.command(Receive(w.rid(), SKU, SITE, "L1", 10, status="available", expires_at_ms=T0 + DAY_MS))
        w.deliver(len(w.journal))
        w.reading = w.floors.begin(PAIR, w.clock[0])
        await w.answer_read()
        assert w.floors.position(PAIR, w.clock[0]) is not None
        w.command(Receive(w.rid(), SKU, SITE, "L2", 10, status="receiving"))  # arriving stock moved
        w.deliver(len(w.journal))
        assert w.floors.position(PAIR, w.clock[0]) is None
        w.command(Receive(w.rid(), SKU, SITE, "L3", 10, status="available", expires_at_ms=T0 + 9 * DAY_MS))
        w.clock[0] += 2 * DAY_MS  # L1 past its expiry, still "available" (beside L3) until the sweep
        w.reading = w.floors.begin(PAIR, w.clock[0])
        await w.answer_read()
        assert w.floors.position(PAIR, w.clock[0]) is None

    asyncio.run(run())


def _checked(w: _World) -> None:
    floored = w.floors.position(PAIR, w.clock[0])
    truth = asyncio.run(w.truth())
    assert floored is None or floored.available + floored.in_transit <= truth.on_hand + truth.in_transit


def test_a_receipt_the_read_already_holds_is_not_counted_again() -> None:
    """The cells are ahead of the journal: a receipt applied while the read was on its way is in
    the read, and its movement reaches the follower after it."""
    w = _World()
    w.reading = w.floors.begin(PAIR, w.clock[0])
    w.command(Receive(w.rid(), SKU, SITE, "L9", 10, status="available", expires_at_ms=T0 + DAY_MS))
    asyncio.run(w.answer_read())
    w.deliver(len(w.journal))
    _checked(w)


def test_arriving_stock_that_leaves_drops_the_floor() -> None:
    w = _World()
    w.command(Receive(w.rid(), SKU, SITE, "L1", 10, status="qc_hold"))
    w.deliver(len(w.journal))
    w.reading = w.floors.begin(PAIR, w.clock[0])
    asyncio.run(w.answer_read())
    w.command(ChangeStatus(w.rid(), SKU, SITE, "L1", 4, "qc_hold", "damaged"))
    w.deliver(len(w.journal))
    _checked(w)


def test_stock_of_a_lot_past_its_expiry_coming_back_to_a_sellable_status_is_not_counted() -> None:
    w = _World()
    w.command(Receive(w.rid(), SKU, SITE, "L1", 10, status="available", expires_at_ms=T0 + DAY_MS))
    w.command(ChangeStatus(w.rid(), SKU, SITE, "L1", 10, "available", "promo_locked"))
    w.deliver(len(w.journal))
    w.clock[0] += 2 * DAY_MS
    w.reading = w.floors.begin(PAIR, w.clock[0])
    asyncio.run(w.answer_read())
    w.clock[0] += 5_000
    w.command(ChangeStatus(w.rid(), SKU, SITE, "L1", 10, "promo_locked", "available"))
    w.deliver(len(w.journal))
    _checked(w)


def test_a_sale_the_read_already_holds_counted_again_floors_at_zero_not_below() -> None:
    """Fails without the clamp: the floor answered -10 and the trigger's screen refused the batch
    (on_hand must be ≥ 0) and planned all of it in full. The cells never go below zero."""
    w = _World()
    w.command(Receive(w.rid(), SKU, SITE, "L1", 10, status="available", expires_at_ms=T0 + 9 * DAY_MS))
    w.deliver(len(w.journal))
    w.reading = w.floors.begin(PAIR, w.clock[0])
    w.command(Consume(w.rid(), SKU, SITE, 10))  # in the cells before the read answers
    asyncio.run(w.answer_read())  # the read holds the sale: 0 on hand
    w.deliver(len(w.journal))  # and the floor counts the sale's decrease again
    floored = w.floors.position(PAIR, w.clock[0])
    assert floored is not None
    assert (floored.available, floored.in_transit) == (0, 0)
    _checked(w)
