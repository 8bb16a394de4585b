"""The org tree's roll-ups: per-site totals, and how long a page may reuse them.

A roll-up is a scan of every cell (QueryStock per site over every site): the costliest call
a stock page makes. Drilling into a site or a bin changes the table, not the tree, so the tree
is answered from the cache for ROLLUP_TTL_MS, and the page says how old it is. The key holds
the reader's token: one reader's totals are never shown to another (their grants differ).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from engine.api.gen.lotwise.v1 import inventory_pb2 as pb

ROLLUP_TTL_MS = 5_000  # how old the org tree's totals may be while the reader drills (the table is always live)
ROLLUP_CACHE_ENTRIES = 256


@dataclass(slots=True)
class Totals:
    qty: int = 0
    held: int = 0
    available: int = 0
    on_hand: int = 0

    def add(self, row: pb.SliceRow) -> None:
        self.qty += row.qty
        self.held += row.held
        self.available += row.available
        self.on_hand += row.on_hand


class RollupCache:
    """Per-site totals by (reader's token, roll-up request), kept ttl_ms, `entries` at most."""

    def __init__(self, ttl_ms: int = ROLLUP_TTL_MS, entries: int = ROLLUP_CACHE_ENTRIES) -> None:
        self._ttl_ms = ttl_ms
        self._entries = entries
        self._kept: OrderedDict[tuple[str, bytes], tuple[int, dict[str, Totals]]] = OrderedDict()

    def get(self, token: str, request: pb.QueryStockRequest, now_ms: int) -> tuple[int, dict[str, Totals]] | None:
        key = (token, request.SerializeToString(deterministic=True))
        found = self._kept.get(key)
        if found is None or now_ms - found[0] > self._ttl_ms:
            return None
        return found

    def put(self, token: str, request: pb.QueryStockRequest, at_ms: int, per_site: dict[str, Totals]) -> None:
        key = (token, request.SerializeToString(deterministic=True))
        self._kept[key] = (at_ms, per_site)
        self._kept.move_to_end(key)
        while len(self._kept) > self._entries:
            self._kept.popitem(last=False)
