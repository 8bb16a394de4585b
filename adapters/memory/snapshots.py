"""The in-memory snapshot store: the newest snapshot per shard."""

from __future__ import annotations

from engine.domain.ports import Snapshot


class InMemorySnapshotStore:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}

    async def save(self, snapshot: Snapshot) -> None:
        self._snapshots[snapshot.shard] = snapshot

    async def load(self, shard: str) -> Snapshot | None:
        return self._snapshots.get(shard)
