"""The systems the suite compares, and the one interface they share (bench/README.md).

Lotwise (over gRPC), PostgreSQL (row locks, as Odoo and Saleor hold stock) and Redis
(Lua scripts, as flash-sale systems do) get exactly the same work: the same dataset of
lots, the same orders (1–3 lines, FEFO, all or nothing), then commit or release. Each
system is driven through a `System`; after every run `audit()` reads what the system
believes and `check()` says whether it oversold, lost or made up units, or left holds open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Pair = tuple[str, str]  # (sku, site)


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    site: str
    qty: int


@dataclass(frozen=True, slots=True)
class LotSeed:
    """Opening stock of one lot at one pair. Lot numbers are deliberately not in expiry
    order (FEFO must really sort by `expires_day`)."""

    lot_id: str
    expires_day: int  # days since 1970-01-01 (UTC); FEFO takes the smallest first
    qty: int


@dataclass(frozen=True, slots=True)
class Dataset:
    """The stock every system is loaded with before a run (picklable: it goes to the
    load generator process too)."""

    name: str  # e.g. "pos-scarce", "pos-deep", "hot-pair"
    lots: tuple[tuple[Pair, tuple[LotSeed, ...]], ...]

    @property
    def pairs(self) -> tuple[Pair, ...]:
        return tuple(pair for pair, _ in self.lots)

    def units(self) -> dict[Pair, int]:
        return {pair: sum(lot.qty for lot in lots) for pair, lots in self.lots}


@dataclass(frozen=True, slots=True)
class PairTotals:
    on_hand: int  # units still in stock at the pair (held ones included)
    held: int  # units under open holds
    shipped: int | None = None  # units committed (issued) since the load, if the system counts them


@dataclass(frozen=True, slots=True)
class Audit:
    """What a system believes after a run, read back from the system itself."""

    pairs: Mapping[Pair, PairTotals]
    open_holds: int  # holds neither committed nor released
    negative_rows: int  # stock rows (lots) below zero, or with held > qty


class Shed(Exception):
    """A system refused an order's first call for load with nothing applied (Lotwise's
    RESOURCE_EXHAUSTED after the client's retries): a known outcome, counted apart from
    errors, as issue 19 asks of every bench. Only the first call (reserve or sale) may raise
    it; a later call that fails leaves a hold whose fate is unknown, so it stays an error."""


class System(Protocol):
    """One system under test, as one load-generator worker pool sees it. Implementations:
    bench.peers.lotwise (gRPC), bench.peers.postgres, bench.peers.redis_peer."""

    name: str  # "lotwise", "postgres", "redis", "redis-aof-always"

    async def load(self, data: Dataset) -> None:
        """Replace all stock by `data` (and forget every hold): a fresh start."""
        ...

    async def reserve(self, hold_id: str, lines: Sequence[OrderLine]) -> bool:
        """Hold every line, FEFO over the pair's lots, all or nothing. True: held; False:
        refused because some line lacks free stock (nothing held). Anything else raises."""
        ...

    async def commit(self, hold_id: str) -> None:
        """Issue everything the hold holds (the units leave stock)."""
        ...

    async def release(self, hold_id: str) -> None:
        """Give everything the hold holds back to free stock."""
        ...

    async def receive(self, sku: str, site: str, lot: LotSeed) -> None:
        """Add stock (a WMS receipt): `lot.qty` more of `lot.lot_id` at the pair."""
        ...

    async def audit(self) -> Audit: ...

    async def close(self) -> None: ...


def wrong_refusals(
    refusals: Sequence[Sequence[tuple[Pair, int]]], audit: Audit, concurrency: int, max_line_qty: int
) -> int:
    """Refused orders that provably could have been held. Stock at a pair only shrinks
    during a POS run (no receipts), and when an order was refused the other workers'
    orders in flight held at most (concurrency − 1) × max_line_qty units there; so if, at
    the end, on hand − that bound still covers every line of a refused order, it had free
    stock when refused. Sound (never flags a right refusal); exact at concurrency 1."""
    slack = (concurrency - 1) * max_line_qty
    wrong = 0
    for lines in refusals:
        if all(audit.pairs.get(pair, PairTotals(0, 0)).on_hand - slack >= qty for pair, qty in lines):
            wrong += 1
    return wrong


@dataclass(slots=True)
class CheckResult:
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    data: Dataset,
    received: Mapping[Pair, int],
    committed: Mapping[Pair, int],
    audit: Audit,
    max_listed: int = 10,
) -> CheckResult:
    """After a run: no pair oversold (on_hand ≥ 0, held ≤ on_hand, no negative lot row);
    units conserved as the clients saw it — loaded + received − what acknowledged commits
    issued = on hand, per pair (so no acknowledged commit was lost or applied twice, and no
    refused or released order took stock) — and equal to the system's own shipped count
    where it keeps one; no hold left open. `received` and `committed` are tallied by the
    load generators from acknowledged replies only (a run with unknown outcomes — errors,
    timeouts — cannot be checked this way and is reported failed by the caller)."""
    out = CheckResult()
    loaded = data.units()
    for pair in sorted(set(loaded) | set(audit.pairs) | set(received) | set(committed)):
        t = audit.pairs.get(pair, PairTotals(0, 0))
        if t.on_hand < 0 or t.held > t.on_hand or t.held < 0:
            out.problems.append(f"{pair}: oversold (on hand {t.on_hand}, held {t.held})")
        expected = loaded.get(pair, 0) + received.get(pair, 0) - committed.get(pair, 0)
        if t.on_hand != expected:
            out.problems.append(f"{pair}: not conserved: expected {expected} on hand, the system has {t.on_hand}")
        if t.shipped is not None and t.shipped != committed.get(pair, 0):
            out.problems.append(f"{pair}: shipped {t.shipped} ≠ committed by clients {committed.get(pair, 0)}")
    if audit.negative_rows:
        out.problems.append(f"{audit.negative_rows} lot rows negative or over-held")
    if audit.open_holds:
        out.problems.append(f"{audit.open_holds} holds left open")
    if len(out.problems) > max_listed:
        out.problems[max_listed:] = [f"… and {len(out.problems) - max_listed} more"]
    return out
