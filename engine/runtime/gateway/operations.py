"""Operators' view of the shards beside the batched write path: stats, snapshots on
demand, and `verify` (rebuild every shard from snapshot + journal, compare with the live
one; DESIGN.md §10)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.domain.cell import CellLimits
from engine.domain.errors import Unavailable
from engine.domain.ports import Backend, BackendFactory, JournalError
from engine.domain.statuses import StatusDictionary
from engine.runtime.gateway.router import Router
from engine.runtime.host import rebuild
from engine.runtime.types import ShardCheck


@dataclass(frozen=True, slots=True)
class ShardAdmin:
    """What operators' tools need beyond the batched write path."""

    call: Callable[[str, str], Awaitable[Any]]  # (shard, method name) → that host method's result
    backend: BackendFactory  # the journal and snapshots, read independently of the shards
    limits: CellLimits  # the shards' limits: replay must use the very same


class Operations:
    def __init__(self, router: Router, admin: ShardAdmin | None, statuses: StatusDictionary) -> None:
        self._router = router
        self._admin = admin
        self._statuses = statuses

    def _require_admin(self) -> ShardAdmin:
        if self._admin is None:
            raise Unavailable("this gateway has no admin access to its shards")
        return self._admin

    async def shard_stats(self) -> list[dict[str, Any]]:
        admin = self._require_admin()
        names = self._router.directory.all_shards()
        return list(await asyncio.gather(*(admin.call(name, "stats") for name in names)))

    async def snapshot(self) -> dict[str, int]:
        admin = self._require_admin()
        names = self._router.directory.all_shards()
        return dict(zip(names, await asyncio.gather(*(admin.call(n, "snapshot_now") for n in names)), strict=True))

    async def verify(self) -> list[ShardCheck]:
        """Rebuild every shard from snapshot + journal here, and compare with the live one."""
        admin = self._require_admin()
        backend = await admin.backend()
        try:
            return [await self._verify_shard(admin, backend, name) for name in self._router.directory.all_shards()]
        finally:
            await backend.close()

    async def _verify_shard(self, admin: ShardAdmin, backend: Backend, name: str) -> ShardCheck:
        batch_seq, live_hash = await admin.call(name, "state_hash")
        replayed = 0

        def count(_: int) -> None:
            nonlocal replayed
            replayed += 1

        try:
            core, rebuilt_seq, _ = await rebuild(
                name, self._statuses, admin.limits, backend.journal, backend.snapshots, batch_seq, count
            )
        except JournalError as exc:
            return ShardCheck(name, batch_seq, live_hash, "", replayed, f"{type(exc).__name__}: {exc}")
        if rebuilt_seq != batch_seq:
            error = f"the journal ends at batch {rebuilt_seq}; the live shard is at batch {batch_seq}"
            return ShardCheck(name, batch_seq, live_hash, "", replayed, error)
        return ShardCheck(name, batch_seq, live_hash, core.state_hash(), replayed)
