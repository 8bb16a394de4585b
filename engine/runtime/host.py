"""A shard as a service: journal before reply, snapshots, recovery (DESIGN.md §7, §9).

One batch at a time (the single-writer lock). A batch's mutating ops and the movements
they produced are appended to the journal as one entry, and only once the journal has
confirmed it durably are the answers returned. If the append fails, memory holds changes
nobody acknowledged: the host drops its state and rebuilds it from the newest snapshot
plus the journal, answering UNAVAILABLE meanwhile; clients retry with the same request
ids, and the ops that did reach the journal answer from the rebuilt idempotency window.

Runs in a Ray actor (engine.runtime.cluster) or in-process (Gateway.local).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog

from engine.domain.cell import CellLimits
from engine.domain.clock import SystemClock
from engine.domain.errors import Unavailable
from engine.domain.ports import (
    Backend,
    BackendFactory,
    Clock,
    Journal,
    JournalCorrupt,
    JournalEntry,
    JournalError,
    Snapshot,
    SnapshotStore,
)
from engine.domain.shard import (
    LookupHold,
    Op,
    ReadCatalog,
    ReadHold,
    ReadSlice,
    Result,
    ScanCells,
    ShardCore,
    Sweep,
)
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary

log = structlog.get_logger("lotwise.shard")

RECOVERY_BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0)  # between failed recovery attempts, then 2 s
# Reads change nothing and are not journaled; every other op is (a new op type is
# journaled unless it is declared a read here).
_READ_OPS = (ReadSlice, ReadHold, ScanCells, LookupHold, ReadCatalog)


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """Snapshot after this many batches or this much engine time, whichever comes first."""

    every_batches: int = 20_000
    interval_ms: int = 60_000


class HostState(StrEnum):
    NEW = "new"
    RECOVERING = "recovering"
    READY = "ready"
    BROKEN = "broken"  # memory cannot be trusted (failed append) or recovery failed


def is_mutating(op: Op) -> bool:
    return not isinstance(op, _READ_OPS)


def replay_entry(core: ShardCore, entry: JournalEntry, position: int, stream: str) -> None:
    """Re-apply one journaled batch; the movements it produces must be the journaled ones."""
    core.apply_batch(entry.ops, entry.now_ms)
    produced = tuple(core.drain())
    if produced != entry.movements:
        raise JournalCorrupt(
            stream,
            position,
            f"replay of batch {entry.batch_seq} produced {len(produced)} movements, "
            f"the journal has {len(entry.movements)} (or they differ)",
        )


async def rebuild(
    name: str,
    statuses: StatusDictionary,
    limits: CellLimits,
    journal: Journal,
    snapshots: SnapshotStore,
    until_batch_seq: int | None = None,
    on_entry: Callable[[int], None] | None = None,
) -> tuple[ShardCore, int, int]:
    """Newest snapshot + journal replay → (core, batch_seq, position). Raises JournalCorrupt
    on an undecodable entry, a gap in batch sequence numbers, or a replay that diverges."""
    snapshot = await snapshots.load(name)
    if snapshot is not None:
        core = load_snapshot(snapshot, statuses, limits)
        batch_seq, position = snapshot.batch_seq, snapshot.position
    else:
        core, batch_seq, position = ShardCore(name, statuses, limits), 0, 0
    async for pos, entry in journal.read(name, position):
        if until_batch_seq is not None and entry.batch_seq > until_batch_seq:
            break
        if entry.batch_seq != batch_seq + 1:
            raise JournalCorrupt(name, pos, f"batch {entry.batch_seq} follows batch {batch_seq}: a gap")
        replay_entry(core, entry, pos, name)
        batch_seq, position = entry.batch_seq, pos
        if on_entry is not None:
            on_entry(batch_seq)
    return core, batch_seq, position


def dump_snapshot(core: ShardCore, batch_seq: int, position: int, now_ms: int) -> Snapshot:
    """The core's state as typed records (engine.domain.state); the store encodes them."""
    return Snapshot(core.name, batch_seq, position, now_ms, core.export_state())


def load_snapshot(
    snapshot: Snapshot, statuses: StatusDictionary = DEFAULT_DICTIONARY, limits: CellLimits = CellLimits()
) -> ShardCore:
    """The core a snapshot was taken of, under this host's status dictionary and limits."""
    if snapshot.state.name != snapshot.shard:
        raise JournalCorrupt(
            f"snapshot:{snapshot.shard}", snapshot.position, f"holds the state of shard {snapshot.state.name}"
        )
    return ShardCore.from_state(snapshot.state, statuses, limits)


class ShardHost:
    def __init__(
        self,
        name: str,
        statuses: StatusDictionary = DEFAULT_DICTIONARY,
        limits: CellLimits = CellLimits(),
        clock: Clock | None = None,
        backend: BackendFactory | None = None,
        sweep_interval_ms: int = 1_000,
        snapshot_policy: SnapshotPolicy = SnapshotPolicy(),
    ) -> None:
        self.name = name
        self.statuses = statuses
        self.limits = limits
        self.clock = clock or SystemClock()
        self.sweep_interval_ms = sweep_interval_ms
        self.snapshot_policy = snapshot_policy
        self.core = ShardCore(name, statuses, limits)
        self.batch_seq = 0  # the last journaled batch
        self.position = 0  # its journal position (the fence for the next append)
        self.state = HostState.NEW
        self.failure = ""
        self.batches = 0
        self.ops = 0
        self.recoveries = 0
        if backend is None:  # the composition root picks it (engine.bootstrap); no silent default
            raise ValueError(f"shard host {name}: no journal backend given")
        self._backend_factory: BackendFactory = backend
        self._backend: Backend | None = None
        self._lock: asyncio.Lock | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._recovery_attempts = 0
        self._next_recovery_at = 0.0
        self._sweeper: asyncio.Task[None] | None = None
        self._snapshotting: asyncio.Task[None] | None = None
        self._last_snapshot = (0, 0)  # (batch_seq, engine ms)

    # ---- lifecycle ----

    def _get_lock(self) -> asyncio.Lock:
        # Created lazily: Ray's async actor has its event loop only once a method runs.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def start(self) -> None:
        """Recover and wait until ready; raise what stopped the recovery (e.g. JournalCorrupt)."""
        while self.state is not HostState.READY:
            task = self._kick(force=True)
            if task is None:
                await asyncio.sleep(0.01)
                continue
            await asyncio.shield(task)
            if self.state is HostState.BROKEN:
                raise Unavailable(f"shard {self.name} cannot recover: {self.failure}")

    def _kick(self, force: bool = False) -> asyncio.Task[None] | None:
        """Start a recovery unless one runs; failed attempts back off (bounded)."""
        if self._recovery is not None and not self._recovery.done():
            return self._recovery
        if not force and time.monotonic() < self._next_recovery_at:
            return None
        self._recovery = asyncio.get_running_loop().create_task(self._recover())
        return self._recovery

    async def _recover(self) -> None:
        async with self._get_lock():
            self.state = HostState.RECOVERING
            started = time.perf_counter()
            try:
                if self._backend is None:
                    self._backend = await self._backend_factory()
                core, batch_seq, position = await rebuild(
                    self.name, self.statuses, self.limits, self._backend.journal, self._backend.snapshots
                )
            except Exception as exc:
                self.state = HostState.BROKEN
                self.failure = f"{type(exc).__name__}: {exc}"
                delay = RECOVERY_BACKOFF_S[min(self._recovery_attempts, len(RECOVERY_BACKOFF_S) - 1)]
                self._recovery_attempts += 1
                self._next_recovery_at = time.monotonic() + delay
                # A corrupt journal needs an operator; anything else (the journal is down)
                # passes: the next request after the backoff tries again.
                level = log.error if isinstance(exc, JournalCorrupt) else log.warning
                level("shard recovery failed", shard=self.name, error=self.failure, retry_in_s=delay)
                return
            self.core, self.batch_seq, self.position = core, batch_seq, position
            self._last_snapshot = (batch_seq, self.clock.now_ms())
            self.state, self.failure = HostState.READY, ""
            self._recovery_attempts = 0
            self.recoveries += 1
            log.info(
                "shard ready",
                shard=self.name,
                batch_seq=batch_seq,
                cells=len(core.cells),
                recovery_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        if self._sweeper is None and self.sweep_interval_ms > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    # ---- the write path ----

    async def apply(self, ops: Sequence[Op]) -> list[Result]:
        if self.state is not HostState.READY:
            return self._unavailable(len(ops))
        async with self._get_lock():
            if self.state is not HostState.READY:
                return self._unavailable(len(ops))
            now_ms = self.clock.now_ms()
            results = self.core.apply_batch(ops, now_ms)
            movements = tuple(self.core.drain())
            mutating = tuple(op for op in ops if is_mutating(op))
            if mutating and not await self._journal(
                JournalEntry(self.name, self.batch_seq + 1, now_ms, mutating, movements)
            ):
                return self._unavailable(len(ops))
            self.batches += 1
            self.ops += len(ops)
            return results

    async def _journal(self, entry: JournalEntry) -> bool:
        """Append durably; on failure the state in memory is unacknowledged: rebuild it."""
        assert self._backend is not None  # READY implies a backend; typing only
        try:
            self.position = await self._backend.journal.append(entry, self.position)
        except JournalError as exc:
            self.state = HostState.BROKEN
            self.failure = f"{type(exc).__name__}: {exc}"
            log.warning("journal append failed; shard will rebuild", shard=self.name, error=self.failure)
            return False
        self.batch_seq = entry.batch_seq
        self._maybe_snapshot(entry.now_ms)
        return True

    def _unavailable(self, n: int) -> list[Result]:
        # Every answer of the batch is UNAVAILABLE, reads too: they may have seen state the
        # journal never confirmed. The recovery starts (or continues) in the background.
        self._kick()
        reason = self.failure or self.state.value
        return [Unavailable(f"shard {self.name} is recovering ({reason})")] * n

    # ---- snapshots ----

    def _maybe_snapshot(self, now_ms: int) -> None:
        last_seq, last_ms = self._last_snapshot
        policy = self.snapshot_policy
        due = self.batch_seq - last_seq >= policy.every_batches or (
            self.batch_seq > last_seq and now_ms - last_ms >= policy.interval_ms
        )
        if not due or (self._snapshotting is not None and not self._snapshotting.done()):
            return
        snapshot = dump_snapshot(self.core, self.batch_seq, self.position, now_ms)  # consistent: under the lock
        self._last_snapshot = (self.batch_seq, now_ms)
        self._snapshotting = asyncio.get_running_loop().create_task(self._save(snapshot))

    async def _save(self, snapshot: Snapshot) -> None:
        assert self._backend is not None
        try:
            await self._backend.snapshots.save(snapshot)
        except Exception:  # the journal still has everything; the next snapshot will try again
            log.warning("snapshot failed", shard=self.name, batch_seq=snapshot.batch_seq, exc_info=True)
            self._last_snapshot = (0, 0)

    async def snapshot_now(self) -> int:
        """Take and save a snapshot now (ops tooling, tests); returns its batch_seq."""
        async with self._get_lock():
            if self.state is not HostState.READY:
                raise Unavailable(f"shard {self.name} is {self.state.value}")
            snapshot = dump_snapshot(self.core, self.batch_seq, self.position, self.clock.now_ms())
        assert self._backend is not None
        await self._backend.snapshots.save(snapshot)
        return snapshot.batch_seq

    # ---- background ----

    async def sweep(self) -> int:
        """Release expired holds (journaled like any write); returns the movements made."""
        result = (await self.apply([Sweep()]))[0]
        return result if isinstance(result, int) else 0

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_ms / 1000)
            try:
                if self.state is HostState.READY and self.core.sweep_due(self.clock.now_ms()):
                    await self.sweep()
            except Exception:
                log.exception("sweep failed", shard=self.name)

    # ---- observability and tooling ----

    async def stats(self) -> dict[str, Any]:
        return {
            "shard": self.name,
            "state": self.state.value,
            "failure": self.failure,
            "cells": len(self.core.cells),
            "batches": self.batches,
            "ops": self.ops,
            "batch_seq": self.batch_seq,
            "position": self.position,
            "recoveries": self.recoveries,
            "cells_with_holds": len(self.core.with_holds),
        }

    async def state_hash(self) -> tuple[int, str]:
        """(batch_seq, hash of the state as of it): what `lotwise verify` compares."""
        async with self._get_lock():
            if self.state is not HostState.READY:
                raise Unavailable(f"shard {self.name} is {self.state.value}")
            return self.batch_seq, self.core.state_hash()

    async def ping(self) -> None:
        """An empty call: the ceiling a shard call can reach (bench)."""

    async def pid(self) -> int:
        """The OS process serving this shard (chaos tests kill it)."""
        return os.getpid()

    async def stop(self, snapshot_grace_s: float = 30.0) -> None:
        if self._snapshotting is not None and not self._snapshotting.done():
            # Let a snapshot being saved finish: it shortens the next recovery.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._snapshotting), snapshot_grace_s)
        for task in (self._sweeper, self._recovery, self._snapshotting):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sweeper = None
        if self._backend is not None:
            with contextlib.suppress(Exception):
                await self._backend.close()
            self._backend = None
        self.state = HostState.NEW
