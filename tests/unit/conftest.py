"""Fixtures and small helpers for the pure-domain unit tests.

A `CellDriver` wraps one cell and a ManualClock: it fills in the request id, sku and site
of every command, so a test reads as the business story it tells.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from engine.domain.cell import Cell, CellLimits
from engine.domain.clock import ManualClock
from engine.domain.commands import (
    Adjust,
    Adjusted,
    ChangeStatus,
    Command,
    Commit,
    Committed,
    Consume,
    Consumed,
    Move,
    Moved,
    Receive,
    Received,
    Release,
    Released,
    Reply,
    Reserve,
    Reserved,
    ReserveLine,
    StatusChanged,
)
from engine.domain.errors import DomainError, InvalidArgument
from engine.domain.ledger import Ledger
from engine.domain.model import MS_PER_DAY, HoldView, Movement, QuantKey
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary

SKU = "SKU-1"
SITE = "S1"
T0_MS = ManualClock().now_ms()  # 2026-01-01T00:00Z, the ManualClock's default start
HOUR_MS = 3_600_000
DAY_MS = MS_PER_DAY
TTL_MS = 60_000

E = TypeVar("E", bound=DomainError)


def key(lot_id: str, bin_: str = "", status: str = "available", owner: str = "own") -> QuantKey:
    return QuantKey(lot_id, bin_, status, owner)


LedgerState = tuple[Any, ...]


def ledger_state(ledger: Ledger) -> LedgerState:
    """Everything a command could change in a ledger, as a comparable value."""
    return (
        ledger.seq,
        {k: (q.qty, q.held) for k, q in ledger.quants.items()},
        {k: v for k, v in ledger.externals.items() if v},
        dict(ledger.lots),
        {
            hid: (dict(p.allocations), p.state, p.committed_qty, p.released_qty, p.expires_at_ms)
            for hid, p in ledger.active.items()
        },
        {hid: (p.state, p.committed_qty, p.released_qty) for hid, p in ledger.resolved.items()},
    )


@dataclass
class CellDriver:
    """One cell, its clock and a counter of request ids."""

    cell: Cell
    clock: ManualClock
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def now_ms(self) -> int:
        return self.clock.now_ms()

    @property
    def ledger(self) -> Ledger:
        return self.cell.ledger

    def rid(self) -> str:
        return f"req-{next(self._ids)}"

    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    def run(self, cmd: Command) -> Reply:
        return self.cell.handle(cmd, self.now_ms)

    def drain(self) -> list[Movement]:
        return self.cell.drain()

    def qty(self, k: QuantKey) -> int:
        quant = self.ledger.quants.get(k)
        return quant.qty if quant else 0

    def held(self, k: QuantKey) -> int:
        quant = self.ledger.quants.get(k)
        return quant.held if quant else 0

    def available(self) -> int:
        return self.cell.available(self.now_ms)

    # ---- one helper per command; each fills in request id, sku and site ----

    def receive_cmd(self, lot_id: str, qty: int, **kw: Any) -> Receive:
        kw.setdefault("status", "available")
        return Receive(self.rid(), SKU, SITE, lot_id, qty, **kw)

    def receive(self, lot_id: str, qty: int, **kw: Any) -> Received:
        reply = self.run(self.receive_cmd(lot_id, qty, **kw))
        assert isinstance(reply, Received)
        return reply

    def reserve_cmd(self, hold_id: str, *lines: ReserveLine, ttl_ms: int = TTL_MS) -> Reserve:
        return Reserve(self.rid(), SKU, SITE, hold_id, tuple(lines), ttl_ms)

    def reserve(self, hold_id: str, *lines: ReserveLine, ttl_ms: int = TTL_MS) -> HoldView:
        reply = self.run(self.reserve_cmd(hold_id, *lines, ttl_ms=ttl_ms))
        assert isinstance(reply, Reserved)
        return reply.hold

    def commit_cmd(self, hold_id: str, qty: int | None = None) -> Commit:
        return Commit(self.rid(), SKU, SITE, hold_id, qty)

    def commit(self, hold_id: str, qty: int | None = None) -> Committed:
        reply = self.run(self.commit_cmd(hold_id, qty))
        assert isinstance(reply, Committed)
        return reply

    def release_cmd(self, hold_id: str) -> Release:
        return Release(self.rid(), SKU, SITE, hold_id)

    def release(self, hold_id: str) -> Released:
        reply = self.run(self.release_cmd(hold_id))
        assert isinstance(reply, Released)
        return reply

    def consume_cmd(self, qty: int, **kw: Any) -> Consume:
        return Consume(self.rid(), SKU, SITE, qty, **kw)

    def consume(self, qty: int, **kw: Any) -> Consumed:
        reply = self.run(self.consume_cmd(qty, **kw))
        assert isinstance(reply, Consumed)
        return reply

    def adjust_cmd(self, lot_id: str, counted_qty: int, **kw: Any) -> Adjust:
        return Adjust(self.rid(), SKU, SITE, lot_id, counted_qty, **kw)

    def adjust(self, lot_id: str, counted_qty: int, **kw: Any) -> Adjusted:
        reply = self.run(self.adjust_cmd(lot_id, counted_qty, **kw))
        assert isinstance(reply, Adjusted)
        return reply

    def move_cmd(self, lot_id: str, qty: int, from_bin: str, to_bin: str, **kw: Any) -> Move:
        return Move(self.rid(), SKU, SITE, lot_id, qty, from_bin, to_bin, **kw)

    def move(self, lot_id: str, qty: int, from_bin: str, to_bin: str, **kw: Any) -> Moved:
        reply = self.run(self.move_cmd(lot_id, qty, from_bin, to_bin, **kw))
        assert isinstance(reply, Moved)
        return reply

    def change_status_cmd(self, lot_id: str, qty: int, from_status: str, to_status: str, **kw: Any) -> ChangeStatus:
        return ChangeStatus(self.rid(), SKU, SITE, lot_id, qty, from_status, to_status, **kw)

    def change_status(self, lot_id: str, qty: int, from_status: str, to_status: str, **kw: Any) -> StatusChanged:
        reply = self.run(self.change_status_cmd(lot_id, qty, from_status, to_status, **kw))
        assert isinstance(reply, StatusChanged)
        return reply

    # ---- refusals ----

    def refuse(self, cmd: Command, error: type[E]) -> E:
        """Run `cmd`, expect `error`, and check that the refusal changed nothing at all."""
        before = ledger_state(self.ledger)
        outbox_before = list(self.cell.outbox)
        with pytest.raises(error) as info:
            self.run(cmd)
        assert ledger_state(self.ledger) == before, "a refused command changed the ledger"
        assert self.cell.outbox == outbox_before, "a refused command emitted movements"
        return info.value


def violated_fields(err: InvalidArgument) -> set[str]:
    return {v.field for v in err.violations}


DriverFactory = Callable[..., CellDriver]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_driver(clock: ManualClock) -> DriverFactory:
    """Build a driver over a fresh cell; keyword arguments go to `Cell`."""

    def build(
        *,
        statuses: StatusDictionary = DEFAULT_DICTIONARY,
        opened_shelf_life_ms: int = 0,
        limits: CellLimits | None = None,
    ) -> CellDriver:
        cell = Cell(SKU, SITE, statuses, opened_shelf_life_ms, limits or CellLimits())
        return CellDriver(cell, clock)

    return build


@pytest.fixture
def driver(make_driver: DriverFactory) -> CellDriver:
    return make_driver()
