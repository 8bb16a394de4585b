"""Shard states to save and load (engine.domain.state), built directly as records."""

from __future__ import annotations

from engine.domain.catalog import Site, Sku
from engine.domain.model import External, Lot, QuantKey
from engine.domain.state import CellState, QuantBalance, ShardState


def shard_state(shard: str, quants: int = 0, cells: int = 1, label: str = "") -> ShardState:
    """A shard of `cells` cells holding `quants` quants between them (one lot each);
    `label` names its sku, so two states of one shard differ."""
    per_cell = quants // cells if cells else 0
    return ShardState(
        name=shard,
        skus=(Sku(f"SKU-{label}", label),),
        sites=(Site("S1"),),
        headers=(),
        moved=(),
        expecting=(),
        with_holds=(),
        cells=tuple(_cell(f"SKU-{label}-{c}", per_cell) for c in range(cells if quants else 0)),
    )


def _cell(sku: str, quants: int) -> CellState:
    return CellState(
        sku=sku,
        site="S1",
        opened_shelf_life_ms=0,
        seq=quants,
        quants=tuple(QuantBalance(QuantKey(f"L{i}", f"A/{i:06d}", "available", "own"), 3, 0) for i in range(quants)),
        externals=((External.SUPPLIER, -3 * quants),),
        lots=tuple(Lot(f"L{i}", 1_000 + i) for i in range(quants)),
        active=(),
        resolved=(),
        remembered=(),
        next_expiry_ms=2**62,
    )
