"""Stable routing of (sku, site) pairs and hold ids to shards (DESIGN.md §6)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from engine.domain.catalog import Pair


def shard_index(sku: str, site: str, shard_count: int) -> int:
    """A stable hash (crc32, not Python's salted hash) so every gateway agrees."""
    return zlib.crc32(_pair_key(sku, site)) % shard_count


def hold_home_index(hold_id: str, shard_count: int) -> int:
    """The shard that keeps a hold's header (which pairs the hold spans)."""
    return zlib.crc32(b"hold\x1f" + hold_id.encode()) % shard_count


def pinned_shard_name(sku: str, site: str) -> str:
    return f"pin-{zlib.crc32(_pair_key(sku, site)):08x}"


def _pair_key(sku: str, site: str) -> bytes:
    return f"{sku}\x1f{site}".encode()


@dataclass(slots=True)
class Directory:
    """Hash routing plus overrides: a hot pair can be pinned to a shard of its own."""

    shard_names: tuple[str, ...]
    pins: dict[Pair, str] = field(default_factory=dict)
    version: int = 0

    def shard_for(self, sku: str, site: str) -> str:
        pinned = self.pins.get((sku, site))
        if pinned is not None:
            return pinned
        return self.shard_names[shard_index(sku, site, len(self.shard_names))]

    def home_for(self, hold_id: str) -> str:
        return self.shard_names[hold_home_index(hold_id, len(self.shard_names))]

    def all_shards(self) -> tuple[str, ...]:
        return self.shard_names + tuple(sorted(set(self.pins.values())))
