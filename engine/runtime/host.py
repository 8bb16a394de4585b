"""A shard as a service: journal before reply, snapshots, recovery (DESIGN.md §7, §9).

Group commit. Batches are applied to the core one at a time, in arrival order, and never
wait for the disk to be applied: while one journal append is in flight, the batches that
arrive are applied and gather in one *group*; when the append lands, the group is sealed
and journaled as the next entry (its mutating ops, in order, at the group's engine time,
and the movements they produced). Exactly one append is in flight per shard: an entry's
expected position (the fence) is the previous entry's position, which only its ack tells
(positions are stream sequences, shared with other shards). Groups are bounded
(`GroupCommit`); a batch that does not fit waits for the next group.

Answers leave only once their entry is durable, in order — reads too: a read answered
from a state whose entry is still in flight could show stock that a failed append then
rolls back, so a read that follows unacknowledged writes waits with them (a read with
nothing unacknowledged before it answers at once). If an append fails, memory holds
changes nobody acknowledged: that group and the one gathered behind it answer
UNAVAILABLE, and the host rebuilds from the newest snapshot plus the journal; clients
retry with the same request ids, and the ops that did reach the journal answer from the
rebuilt idempotency window.

Snapshots are captured at a group's seal (the state as of its entry) without stopping the
shard: engine.domain.shard.SnapshotCapture exports the cells a few at a time between
batches, copying a cell on its first change; the snapshot is saved only once its entry is
durable.

The cyclic garbage collector. A shard of 10⁶ quants is ~6 M tracked objects, and a full
(generation-2) collection walks them all: 1.7 s at a time on this machine, at whatever
moment allocations trigger it — the snapshot's own allocations did, every time. So the
state leaves the collector's reach: after a recovery and after each snapshot the objects
alive are frozen (`gc.freeze`: moved to the permanent generation, O(1)); a full
collection then walks only what was made since. Reference counting still frees a frozen
object that is dropped (a quant sold out, an evicted window entry): only a frozen object
that ends in a reference cycle would stay, so the domain keeps its long-lived state free
of cycles (refusals are remembered without their traceback, engine.domain.shard). While
a state is being built (recovery) or copied (a snapshot's export and encode: millions of
short-lived records) the collector is held (`collector_held`): the young generation would
otherwise promote those records and a full collection walk them. The young generation's
threshold is raised to YOUNG_THRESHOLD (`raise_young_threshold`, when a host starts): at
CPython's 700 allocations a bulk load — every receipt a quant, a lot, a movement and a
window entry, all surviving — spent ~a quarter of the shard's CPU re-scanning young
objects (bench/README.md, "Bulk load"); a young collection of 10,000 objects is still
well under a millisecond. The older generations' thresholds stay CPython's.

Runs in a Ray actor (engine.runtime.cluster) or in-process (Gateway.local).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog

from engine.domain.cell import CellLimits
from engine.domain.clock import SystemClock
from engine.domain.errors import Unavailable
from engine.domain.hold_listing import ScanHolds
from engine.domain.ports import (
    Backend,
    BackendFactory,
    Clock,
    Journal,
    JournalCorrupt,
    JournalEntry,
    JournalError,
    JournalUnavailable,
    Snapshot,
    SnapshotStore,
)
from engine.domain.shard import (
    LookupHold,
    Op,
    ReadCatalog,
    ReadHold,
    ReadSku,
    ReadSlice,
    Result,
    ScanCells,
    ShardCore,
    SnapshotCapture,
    Sweep,
    journaled,
    op_weight,
    replay_ops,
)
from engine.domain.statuses import DEFAULT_DICTIONARY, StatusDictionary

log = structlog.get_logger("lotwise.shard")

RECOVERY_BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0)  # between failed recovery attempts, then 2 s
STOP_FLUSH_GRACE_S = 5.0  # stop() lets the append in flight land (its answers are then sent)
# Reads change nothing and are not journaled; every other op is (a new op type is
# journaled unless it is declared a read here).
_READ_OPS = (ReadSlice, ReadHold, ScanCells, ScanHolds, LookupHold, ReadCatalog, ReadSku)


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """When a shard rewrites its snapshot: once the journal's tail since the last one has
    grown to a fraction of the state, as log-structured stores rewrite (DESIGN §9).

    A snapshot re-encodes the whole state: its records (quants, lots, holds and the
    idempotency window's entries, ShardCore.record_count); the tail is what a recovery
    replays on top of it. Rewriting when `tail_ops ≥ tail_fraction × records` makes the snapshot's
    cost per journaled op O(1 / tail_fraction) whatever the state's size, and keeps a
    recovery's replay at most that fraction of the state (`max_tail_ops` caps it for the
    largest shards; `min_tail_ops` keeps a small shard from snapshotting every few ops).
    A fixed period instead (every 60 s, until 2026-12-08) made a shard of 10⁶ quants
    re-encode all of it every minute however little it was asked to do. Time stays only
    as a long ceiling, so an idle-ish shard's snapshot does not age without bound.
    Ops are counted as journaled (a bulk receipt as its receipts)."""

    min_tail_ops: int = 20_000
    interval_ms: int = 3_600_000
    tail_fraction: float = 0.5
    max_tail_ops: int = 1_000_000

    def __post_init__(self) -> None:
        if self.min_tail_ops < 1 or self.interval_ms < 1 or self.tail_fraction < 0:
            raise ValueError("SnapshotPolicy needs min_tail_ops ≥ 1, interval_ms ≥ 1, tail_fraction ≥ 0")
        if self.max_tail_ops < self.min_tail_ops:
            raise ValueError("SnapshotPolicy needs max_tail_ops ≥ min_tail_ops")

    def tail_limit(self, state_records: int) -> int:
        """The tail (journaled ops) a state of this many records may carry before a rewrite."""
        proportional = int(self.tail_fraction * state_records)
        return min(self.max_tail_ops, max(self.min_tail_ops, proportional))

    def due(self, tail_ops: int, state_records: int, since_ms: int) -> bool:
        """Is a snapshot due, `tail_ops` journaled since the last one (of a state of
        `state_records` records) taken `since_ms` of engine time ago? Never with no tail."""
        if tail_ops <= 0:
            return False
        return tail_ops >= self.tail_limit(state_records) or since_ms >= self.interval_ms


@dataclass(frozen=True, slots=True)
class GroupCommit:
    """Bounds of one group (one journal entry): the ops of the batches gathered while the
    previous append is in flight. `max_ops` keeps an entry well under the journal's
    message size (JournalConfig.max_msg_size, 1 MiB: an op and its movements encode to a
    few hundred bytes); a single batch larger than it still goes alone."""

    max_ops: int = 1_024
    max_batches: int = 64

    def __post_init__(self) -> None:
        if self.max_ops <= 0 or self.max_batches <= 0:
            raise ValueError("GroupCommit bounds must be positive")


@dataclass(eq=False, slots=True)
class _Group:
    """Batches applied to the core since the last seal: the next journal entry."""

    now_ms: int  # the engine time every batch of the group is applied at (replay uses it)
    ops: list[Op] = field(default_factory=list)  # the mutating ops, in order
    size: int = 0  # every op, reads too
    batches: int = 0
    position: int = 0  # the entry's journal position, once durable
    sealed: asyncio.Event = field(default_factory=asyncio.Event)  # no batch joins any more
    done: asyncio.Event = field(default_factory=asyncio.Event)  # durable, or failed
    durable: bool = False

    def add(self, ops: Sequence[Op]) -> None:
        # A bulk receipt weighs (and is journaled as) its receipts.
        self.ops.extend(one for op in ops if is_mutating(op) for one in journaled(op))
        self.size += op_weight(ops)
        self.batches += 1

    def resolve(self, durable: bool) -> None:
        self.durable = durable
        self.sealed.set()
        self.done.set()


class HostState(StrEnum):
    NEW = "new"
    RECOVERING = "recovering"
    READY = "ready"
    STANDBY = "standby"  # follows the journal of a primary; serves nothing until promoted
    BROKEN = "broken"  # memory cannot be trusted (failed append) or recovery failed


def is_mutating(op: Op) -> bool:
    return not isinstance(op, _READ_OPS)


def replay_entry(core: ShardCore, entry: JournalEntry, position: int, stream: str) -> None:
    """Re-apply one journaled batch; the movements it produces must be the journaled ones.
    The receipts the entry shows accepted are not validated again (`replay_ops`): a warm
    standby replays every receipt of a bulk load, and validation was a third of that."""
    core.apply_batch(replay_ops(entry.ops, entry.movements), entry.now_ms)
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
    on_ops: Callable[[int], None] | None = None,
) -> tuple[ShardCore, int, int]:
    """Newest snapshot + journal replay → (core, batch_seq, position). Raises JournalCorrupt
    on an undecodable entry, a gap in batch sequence numbers, or a replay that diverges.
    `on_entry` is told each entry's batch_seq, `on_ops` how many ops it replayed."""
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
        if on_ops is not None:
            on_ops(len(entry.ops))
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


_COLLECTOR_HOLDS = [0]  # recoveries and snapshots of this process's hosts under way


@contextlib.contextmanager
def collector_held() -> Iterator[None]:
    """No cyclic collection while a state is built or copied (bounded: one recovery, one
    snapshot); the first collection after it finds the garbage it made. Freeze what must
    stay (`freeze_long_lived`) before the hold ends: the young generation holds it all."""
    _COLLECTOR_HOLDS[0] += 1
    gc.disable()
    try:
        yield
    finally:
        _COLLECTOR_HOLDS[0] -= 1
        if _COLLECTOR_HOLDS[0] == 0:
            gc.enable()


YOUNG_THRESHOLD = 10_000  # allocations between young collections in a process hosting shards


def raise_young_threshold() -> None:
    """The process's young-generation threshold, at least YOUNG_THRESHOLD (never lowered:
    the setting is the process's, and another part may have raised it further)."""
    young, middle, old = gc.get_threshold()
    if young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def freeze_long_lived(collect_young: bool = False) -> None:
    """The objects alive now leave the collector's generations (the shard's state, mostly).
    `collect_young`: first free the young cycles (cost ∝ what was made since the last
    freeze), so garbage made meanwhile is not frozen with the state."""
    if collect_young:
        gc.collect(1)
    gc.freeze()


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
        group_commit: GroupCommit = GroupCommit(),
    ) -> None:
        self.name = name
        self.group_commit = group_commit
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
        self.entries = 0  # journal appends (batches / entries: how much group commit gathers)
        self.recoveries = 0
        self.incarnation = uuid.uuid4().hex  # changes when a new process takes the shard (crash counting)
        self.follow_interval_ms = 200  # a standby reads the journal's new entries this often
        self._follower: asyncio.Task[None] | None = None
        self._followed = False  # the standby's core is at (batch_seq, position) of the journal
        if backend is None:  # the composition root picks it (engine.bootstrap); no silent default
            raise ValueError(f"shard host {name}: no journal backend given")
        self._backend_factory: BackendFactory = backend
        self._backend: Backend | None = None
        self._lock: asyncio.Lock | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._recovery_attempts = 0
        self._next_recovery_at = 0.0
        self._sweeper: asyncio.Task[None] | None = None
        self._snapshotting: asyncio.Task[int] | None = None
        # The snapshot policy's inputs: engine ms of the last snapshot (or recovery), the
        # ops journaled since, and the state's records then (SnapshotPolicy.due).
        self._snapshot_ms = 0
        self._tail_ops = 0
        self._state_records = 0
        self._pending: _Group | None = None  # open: batches applied, not yet journaled
        self._appending: _Group | None = None  # sealed: its append is in flight
        self._flusher: asyncio.Task[None] | None = None
        self._wanted: asyncio.Future[asyncio.Task[int]] | None = None  # a snapshot_now() waiting

    # ---- lifecycle ----

    def _get_lock(self) -> asyncio.Lock:
        # Created lazily: Ray's async actor has its event loop only once a method runs.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def start(self) -> None:
        """Recover and wait until ready; raise what stopped the recovery (e.g. JournalCorrupt)."""
        raise_young_threshold()
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
            if self._flusher is not None and not self._flusher.done():
                # It fails what it still holds once it sees the host is not ready.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._flusher)
            self.state = HostState.RECOVERING
            started = time.perf_counter()
            try:
                if self._backend is None:
                    self._backend = await self._backend_factory()
                replayed = 0

                def count(ops: int) -> None:
                    nonlocal replayed
                    replayed += ops

                with collector_held():
                    core, batch_seq, position = await rebuild(
                        self.name,
                        self.statuses,
                        self.limits,
                        self._backend.journal,
                        self._backend.snapshots,
                        on_ops=count,
                    )
                    freeze_long_lived()  # a young collection now would walk the whole new state
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
            # The tail replayed is still the tail: a shard that keeps restarting snapshots too.
            self._snapshot_point(self.clock.now_ms(), replayed)
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
        if self._pending is None and self._appending is None and not any(map(is_mutating, ops)):
            # Nothing unacknowledged in memory: a read answers at once.
            results = self.core.apply_batch(ops, self.clock.now_ms())
            self._count(ops)
            return results
        group = await self._join(op_weight(ops))
        if group is None:
            return self._unavailable(len(ops))
        # No await since _join returned: the group is still open and the core is its own.
        results = self.core.apply_batch(ops, group.now_ms)
        group.add(ops)
        self._flush_soon()
        await group.done.wait()
        if not group.durable:
            return self._unavailable(len(ops))
        self._count(ops)
        return results

    def _count(self, ops: Sequence[Op]) -> None:
        self.batches += 1
        self.ops += len(ops)

    async def _join(self, n: int) -> _Group | None:
        """The open group, once it has room for n more ops; None if the host stopped being ready."""
        bounds = self.group_commit
        while self.state is HostState.READY:
            group = self._pending
            if group is None:
                self._pending = group = _Group(self.clock.now_ms())
                return group
            if group.size + n <= bounds.max_ops and group.batches < bounds.max_batches:
                return group
            await group.sealed.wait()  # full: the next group takes this batch
        return None

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Journal the open group; then the group gathered meanwhile; until none is open."""
        try:
            while (group := self._pending) is not None and self.state is HostState.READY:
                self._pending = None
                if not await self._commit(group):
                    break
            if self._pending is None and self.state is HostState.READY:
                self._capture_if_wanted(self._durable_point())  # idle: the core is at batch_seq
        finally:
            # A failed append (or a stop, or a bug) leaves memory unacknowledged: the groups
            # still open or in flight answer UNAVAILABLE, and the host rebuilds before serving.
            left = [g for g in (self._appending, self._pending) if g is not None and not g.done.is_set()]
            self._appending = self._pending = None
            if left and self.state is HostState.READY:
                self.state = HostState.BROKEN
                self.failure = "a journal append did not finish"
            for group in left:
                group.resolve(False)
            if self._wanted is not None and not self._wanted.done():
                self._wanted.set_exception(Unavailable(f"shard {self.name} is {self.state.value}: no snapshot"))

    async def _commit(self, group: _Group) -> bool:
        """Seal the group and journal it as one entry; True once it is durable."""
        group.sealed.set()
        movements = tuple(self.core.drain())
        if not group.ops:  # reads only: durable as soon as what came before is
            group.resolve(True)
            self._capture_if_wanted(self._durable_point())
            return True
        entry = JournalEntry(self.name, self.batch_seq + 1, group.now_ms, tuple(group.ops), movements)
        # The core is exactly the entry's state now: the point a snapshot can be taken at.
        self._capture_if_wanted(group, entry.batch_seq)
        self._capture_if_due(group, entry.batch_seq)
        self._appending = group
        durable = await self._journal(entry)
        self._appending = None
        group.position = self.position
        group.resolve(durable)
        return durable

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
        self.entries += 1
        return True

    async def _settle(self) -> None:
        """Wait until nothing applied is unacknowledged (the core is at batch_seq)."""
        while (group := self._appending or self._pending) is not None:
            await group.done.wait()

    def _unavailable(self, n: int) -> list[Result]:
        # Every answer of the batch is UNAVAILABLE, reads too: they may have seen state the
        # journal never confirmed. The recovery starts (or continues) in the background;
        # a standby waits to be promoted (its primary may be alive: no second writer).
        if self.state is not HostState.STANDBY:
            self._kick()
        reason = self.failure or self.state.value
        return [Unavailable(f"shard {self.name} is recovering ({reason})")] * n

    # ---- snapshots ----

    def _durable_point(self) -> _Group:
        """A stand-in group for 'the state as of batch_seq', already durable."""
        point = _Group(self.clock.now_ms(), position=self.position)
        point.resolve(True)
        return point

    def _snapshot_point(self, now_ms: int, tail_ops: int = 0, records: int | None = None) -> None:
        """The state as it is now is (or will be) in a snapshot, `tail_ops` on top of it, of
        `records` records (None: counted now, O(cells): after a recovery; a snapshot counts
        its own as it exports, and tells once complete)."""
        self._snapshot_ms, self._tail_ops = now_ms, tail_ops
        if records is None:
            records = self.core.record_count()
        self._state_records = records

    def _capture_if_due(self, group: _Group, batch_seq: int) -> None:
        self._tail_ops += len(group.ops)
        due = self.snapshot_policy.due(self._tail_ops, self._state_records, group.now_ms - self._snapshot_ms)
        if due and (self._snapshotting is None or self._snapshotting.done()):
            self._snapshotting = self._start_snapshot(group, batch_seq, strict=False)

    def _capture_if_wanted(self, group: _Group, batch_seq: int | None = None) -> None:
        """Serve a snapshot_now() waiting for a point where the core is at an entry."""
        wanted = self._wanted
        if wanted is None or wanted.done():
            return
        if self._snapshotting is not None and not self._snapshotting.done():
            return  # snapshot_now waited for it; the policy started another since: next point
        self._wanted = None
        self._snapshotting = self._start_snapshot(group, self.batch_seq if batch_seq is None else batch_seq, True)
        wanted.set_result(self._snapshotting)

    def _start_snapshot(self, group: _Group, batch_seq: int, strict: bool) -> asyncio.Task[int]:
        capture = self.core.begin_capture()  # cheap: the cells are exported while serving
        self._snapshot_point(group.now_ms, records=self._state_records)  # its own size once exported
        return asyncio.get_running_loop().create_task(self._take(capture, group, batch_seq, strict))

    async def _take(self, capture: SnapshotCapture, group: _Group, batch_seq: int, strict: bool) -> int:
        """Export and save the capture once its entry is durable; its batch_seq (0: none).
        `strict` (snapshot_now) raises what went wrong; the policy's logs it."""
        await group.done.wait()
        if not group.durable:  # its entry never made it: neither may the snapshot
            if strict:
                raise Unavailable(f"shard {self.name}: the entry of the snapshot was not journaled")
            return 0
        with collector_held():
            try:
                return await self._export_and_save(capture, group, batch_seq, strict)
            finally:
                # The exported records go now (a few cells per turn: freeing 10⁶ quants'
                # records at once is a stall of its own), not at the shard's next change.
                while True:
                    if capture.release():
                        break
                    await asyncio.sleep(0)  # a turn for the batches waiting
                freeze_long_lived(collect_young=True)

    async def _export_and_save(self, capture: SnapshotCapture, group: _Group, batch_seq: int, strict: bool) -> int:
        while True:
            if capture.step():
                break
            await asyncio.sleep(0)  # a turn for the batches waiting (a step takes ~2 ms)
        self._state_records = capture.records  # the policy weighs the next tail against it
        snapshot = Snapshot(self.name, batch_seq, group.position, group.now_ms, capture.state())
        assert self._backend is not None
        try:
            await self._backend.snapshots.save(snapshot)
        except Exception:  # the journal still has everything; the next snapshot will try again
            if strict:
                raise
            log.warning("snapshot failed", shard=self.name, batch_seq=batch_seq, exc_info=True)
            self._snapshot_ms = 0  # the time ceiling tries again at the next entry
            return 0
        return batch_seq

    async def snapshot_now(self) -> int:
        """Take and save a snapshot now (ops tooling, tests); returns its batch_seq. It is
        captured at the next point the core is at an entry (at once when idle)."""
        async with self._get_lock():
            while self._snapshotting is not None and not self._snapshotting.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._snapshotting)
            # No await from here until the request is placed: no other snapshot can start.
            if self.state is not HostState.READY:
                raise Unavailable(f"shard {self.name} is {self.state.value}")
            wanted = self._wanted = asyncio.get_running_loop().create_future()
            if self._pending is None and self._appending is None:
                self._capture_if_wanted(self._durable_point())
            task = await wanted
        return await task

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
            "entries": self.entries,
            "batch_seq": self.batch_seq,
            "position": self.position,
            "recoveries": self.recoveries,
            "incarnation": self.incarnation,
            "cells_with_holds": len(self.core.with_holds),
        }

    async def state_hash(self) -> tuple[int, str]:
        """(batch_seq, hash of the state as of it): what `lotwise verify` compares."""
        async with self._get_lock():
            await self._settle()
            if self.state is not HostState.READY:
                if self.state is not HostState.STANDBY:
                    self._kick()  # as a write would: `verify` after a restart starts the recovery
                raise Unavailable(f"shard {self.name} is {self.state.value}")
            return self.batch_seq, self.core.state_hash()

    async def ping(self) -> None:
        """An empty call: the ceiling a shard call can reach (bench)."""

    async def pid(self) -> int:
        """The OS process serving this shard (chaos tests kill it)."""
        return os.getpid()

    async def stop(self, snapshot_grace_s: float = 30.0) -> None:
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flusher), STOP_FLUSH_GRACE_S)
        if self._snapshotting is not None and not self._snapshotting.done():
            # Let a snapshot being saved finish: it shortens the next recovery.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._snapshotting), snapshot_grace_s)
        for task in (self._sweeper, self._recovery, self._flusher, self._snapshotting, self._follower):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sweeper = self._flusher = self._follower = None
        if self._backend is not None:
            with contextlib.suppress(Exception):
                await self._backend.close()
            self._backend = None
        self.state = HostState.NEW

    # ---- warm standby (DESIGN §9): follow a primary's journal, take over when it dies ----

    async def follow(self, interval_ms: int = 200) -> str:
        """Become (or stay) a standby of this shard: rebuild once, then replay the journal's
        new entries every `interval_ms`. Idempotent; answers the state."""
        self.follow_interval_ms = max(10, interval_ms)
        if self.state is HostState.NEW:
            self.state = HostState.STANDBY
        if self.state is HostState.STANDBY and (self._follower is None or self._follower.done()):
            self._follower = asyncio.get_running_loop().create_task(self._follow_forever())
        return self.state.value

    async def _follow_forever(self) -> None:
        attempts = 0
        while self.state is HostState.STANDBY:
            try:
                async with self._get_lock():
                    if self.state is HostState.STANDBY:
                        await self._catch_up()
                attempts = 0
                await asyncio.sleep(self.follow_interval_ms / 1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The journal is down: the core is still at an entry, the next look goes on
                # from there. Anything else (a gap, a diverging replay) may have left a batch
                # half applied: start again from the snapshot (promote() says why if it recurs).
                delay = RECOVERY_BACKOFF_S[min(attempts, len(RECOVERY_BACKOFF_S) - 1)]
                attempts += 1
                if not isinstance(exc, JournalUnavailable):
                    self._standby_core_lost()
                log.warning("standby cannot follow", shard=self.name, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)

    def _standby_core_lost(self) -> None:
        """What the standby holds is not known to follow the journal: start again from the snapshot."""
        self.core, self.batch_seq, self.position = ShardCore(self.name, self.statuses, self.limits), 0, 0
        self._followed = False

    async def _catch_up(self) -> None:
        """Replay every entry journaled since this host's position (the first time: from the
        newest snapshot). Each entry is applied and recorded with no await in between, so a
        cancellation leaves the core exactly at an entry."""
        if self._backend is None:
            self._backend = await self._backend_factory()
        if not self._followed:
            core, batch_seq, position = await rebuild(
                self.name, self.statuses, self.limits, self._backend.journal, self._backend.snapshots
            )
            self.core, self.batch_seq, self.position, self._followed = core, batch_seq, position, True
            return
        async for pos, entry in self._backend.journal.read(self.name, self.position):
            if entry.batch_seq != self.batch_seq + 1:
                raise JournalCorrupt(self.name, pos, f"batch {entry.batch_seq} follows batch {self.batch_seq}: a gap")
            replay_entry(self.core, entry, pos, self.name)
            self.batch_seq, self.position = entry.batch_seq, pos

    async def promote(self) -> str:
        """Take over as the shard's primary: catch up with the journal's last entry and serve.
        The caller has fenced the old primary off (killed it); should it still append, the
        journal's expected-position check refuses one of the two and that one rebuilds.
        Idempotent. A host that was never a standby (or lost its place) recovers in full."""
        if self.state is HostState.READY:
            return self.state.value
        started = time.perf_counter()
        if self.state is HostState.STANDBY:
            async with self._get_lock():
                if self._follower is not None:
                    self._follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._follower
                    self._follower = None
                try:
                    await self._catch_up()
                except Exception as exc:
                    log.warning("standby catch-up failed; recovering in full", shard=self.name, error=str(exc))
                    self.state = HostState.NEW
                else:
                    self._snapshot_point(self.clock.now_ms())
                    self.state, self.failure = HostState.READY, ""
                    self.recoveries += 1
        if self.state is not HostState.READY:
            await self.start()
        elif self._sweeper is None and self.sweep_interval_ms > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        log.info(
            "standby promoted",
            shard=self.name,
            batch_seq=self.batch_seq,
            promote_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return self.state.value
