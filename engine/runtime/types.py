"""What the gateway (the coordinator over shards) accepts and answers.

These are the runtime's public values: the gRPC servicer maps protobuf to and from them,
and the in-process tests use them directly. The plain values every layer shares (CommitLine,
StockQuery, StockRow) live in engine.domain.inventory.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.domain.cell import SliceRow
from engine.domain.commands import ReserveLine
from engine.domain.model import HoldState, HoldView


@dataclass(frozen=True, slots=True)
class HoldLine:
    """One line of a (possibly multi-site) hold."""

    sku: str
    site: str
    line: ReserveLine


class AggregateState(StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"
    PARTIAL = "partial"  # parts resolved differently (e.g. committed here, expired there)


@dataclass(frozen=True, slots=True)
class HoldSummary:
    hold_id: str
    state: AggregateState
    parts: tuple[HoldView, ...]  # one per (sku, site), in the order of the hold's lines
    expires_at_ms: int

    @property
    def held_qty(self) -> int:
        return sum(p.held_qty for p in self.parts)

    @property
    def committed_qty(self) -> int:
        return sum(p.committed_qty for p in self.parts)

    @property
    def released_qty(self) -> int:
        return sum(p.released_qty for p in self.parts)


def aggregate_state(parts: tuple[HoldView, ...]) -> AggregateState:
    states = {p.state for p in parts}
    if len(states) == 1:
        return AggregateState(next(iter(states)).value)
    if states == {HoldState.COMMITTED, HoldState.RELEASED}:
        return AggregateState.COMMITTED  # a partial commit released some pairs entirely
    return AggregateState.PARTIAL


@dataclass(frozen=True, slots=True)
class Availability:
    sku: str
    site: str
    available: int
    rows: tuple[SliceRow, ...]
    as_of_ms: int


@dataclass(frozen=True, slots=True)
class ShardCheck:
    shard: str
    batch_seq: int
    live_hash: str
    rebuilt_hash: str
    replayed_batches: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.live_hash == self.rebuilt_hash
