"""Ports the domain and runtime depend on (DESIGN.md §10). Adapters implement them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from engine.domain.model import Movement
from engine.domain.shard import Op
from engine.domain.state import ShardState


class Clock(Protocol):
    """Engine time in epoch milliseconds. Hold TTLs and shelf life are measured on it."""

    def now_ms(self) -> int: ...


class SystemClock:
    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock tests move by hand."""

    __slots__ = ("_now_ms",)

    def __init__(self, now_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00Z
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("engine time never goes back")
        self._now_ms += ms


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One shard batch, as journaled: the mutating ops applied, in order, at `now_ms`, and
    the movements they produced. Replaying the ops at the same engine time rebuilds the
    shard exactly (the domain is deterministic), idempotency window included; the
    movements feed every downstream consumer and let replay check itself."""

    shard: str
    batch_seq: int  # per shard, gap-free from 1
    now_ms: int
    ops: tuple[Op, ...]  # cell commands and the shard's mutating ops
    movements: tuple[Movement, ...]


class JournalError(Exception):
    """Base of journal failures. None of them means a batch was acknowledged."""


class JournalUnavailable(JournalError):
    """The journal could not confirm the append (down, timeout): the batch is not acknowledged."""


class JournalConflict(JournalError):
    """Someone else appended to this shard's stream since `expected_position`: this writer is
    stale (a zombie after a restart, or a late ack) and must recover before writing again."""

    def __init__(self, stream: str, expected_position: int, actual: str = "") -> None:
        super().__init__(f"{stream}: expected last position {expected_position}{actual and ', ' + actual}")
        self.stream, self.expected_position = stream, expected_position


class JournalCorrupt(JournalError):
    """A journal message cannot be decoded, or batch sequence numbers have a gap. Recovery
    stops here; nothing is skipped silently."""

    def __init__(self, stream: str, position: int, reason: str) -> None:
        super().__init__(f"journal {stream} at position {position}: {reason}")
        self.stream, self.position, self.reason = stream, position, reason


class Journal(Protocol):
    """The durable, ordered log of shard batches, one stream (subject) per shard (DESIGN §9)."""

    async def append(self, entry: JournalEntry, expected_position: int) -> int:
        """Append durably and return the entry's position. `expected_position` is the
        position of this shard's last entry (0: none); raises JournalConflict if it moved,
        JournalUnavailable if durability is not confirmed."""
        ...

    def read(self, shard: str, after_position: int = 0) -> AsyncIterator[tuple[int, JournalEntry]]:
        """The shard's entries after `after_position`, in order, with their positions.
        Raises JournalCorrupt on an undecodable entry."""
        ...

    async def last_position(self, shard: str) -> int:
        """Position of the shard's last entry; 0 when it has none."""
        ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A shard's state as of journal `position` (its batch `batch_seq`): typed records
    (engine.domain.state), encoded by the store's codec, never a pickle."""

    shard: str
    batch_seq: int
    position: int
    taken_at_ms: int
    state: ShardState


class SnapshotStore(Protocol):
    async def save(self, snapshot: Snapshot) -> None: ...

    async def load(self, shard: str) -> Snapshot | None:
        """The newest snapshot of the shard, or None."""
        ...


class InMemoryJournal:
    """Ordered, gap-free, fenced like the real one; not durable (unit tests, dev).

    Entries are kept as objects, so no codec is involved; positions are per shard.
    """

    def __init__(self, max_entries_per_shard: int = 1_000_000) -> None:
        self._streams: dict[str, list[JournalEntry]] = {}
        self._max = max_entries_per_shard  # bounded: a dev journal must not eat the machine

    async def append(self, entry: JournalEntry, expected_position: int) -> int:
        stream = self._streams.setdefault(entry.shard, [])
        if len(stream) != expected_position:
            raise JournalConflict(entry.shard, expected_position, f"last is {len(stream)}")
        if len(stream) >= self._max:
            raise JournalUnavailable(f"in-memory journal of {entry.shard} is full ({self._max} entries)")
        stream.append(entry)
        return len(stream)

    async def read(self, shard: str, after_position: int = 0) -> AsyncIterator[tuple[int, JournalEntry]]:
        for i, entry in enumerate(list(self._streams.get(shard, ()))[after_position:], start=after_position + 1):
            yield i, entry

    async def last_position(self, shard: str) -> int:
        return len(self._streams.get(shard, ()))


class InMemorySnapshotStore:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}

    async def save(self, snapshot: Snapshot) -> None:
        self._snapshots[snapshot.shard] = snapshot

    async def load(self, shard: str) -> Snapshot | None:
        return self._snapshots.get(shard)


# ---- history store (DESIGN.md §8, §10) ----
# Appended section: the values it speaks live in engine.domain.history.

from engine.domain.history import (  # noqa: E402 - appended section; the top of this file is kept as is
    BalanceQuery,
    BalanceRow,
    DayQty,
    ExpiryQuery,
    Exposure,
    HistoryBatch,
    InMemoryHistoryStore,
    LotTrace,
    MovementPage,
    MovementQuery,
    PairTotal,
    SeriesQuery,
    TraceQuery,
    TurnoverQuery,
    TurnoverRow,
)


class HistoryStore(Protocol):
    """Every journaled movement, once, and the questions asked of them (DESIGN §8).

    Inserting is idempotent: a movement (named by (sku, site, seq); it arrives with its
    whole journal batch) inserted again — a retried or redelivered batch — is not stored
    again, and no query, roll-ups included, counts it twice. Queries check
    their arguments (InvalidArgument with field violations); a store that cannot answer
    raises Unavailable. `InMemoryHistoryStore` is the reference implementation."""

    async def insert(self, batch: HistoryBatch) -> int:
        """Store the batch's movements (and the catalog entries it carries) durably, except
        those stored already (a retried or redelivered batch); returns how many it wrote."""
        ...

    async def balance_as_of(self, q: BalanceQuery) -> list[BalanceRow]: ...

    async def movements(self, q: MovementQuery) -> MovementPage: ...

    async def consumption(self, q: SeriesQuery) -> list[DayQty]: ...

    async def turnover(self, q: TurnoverQuery) -> list[TurnoverRow]: ...

    async def near_expiry(self, q: ExpiryQuery) -> Exposure: ...

    async def lot_trace(self, q: TraceQuery) -> LotTrace: ...

    async def totals(self, limit: int = 1_000_000) -> list[PairTotal]:
        """All-time totals per (sku, site), ordered by pair (reconciliation, tests)."""
        ...

    async def close(self) -> None: ...


# The in-memory history store lives beside its values; exported here with the other fakes.
HISTORY_FAKES = (InMemoryHistoryStore,)


# ---- journal follower sink (DESIGN.md §9, §12) ----
# Self-contained: what a durable follower of the journal hands to a downstream consumer.


@dataclass(frozen=True, slots=True)
class FollowedEntry:
    """A journal entry as a follower delivers it: its journal-wide position (every shard's
    entries share one order there) and whether it may have been applied before (delivered
    again after a crash, or retried after a failed apply)."""

    position: int
    entry: JournalEntry
    redelivered: bool = False


class EntryRejected(Exception):
    """A sink cannot apply this entry, now or ever (not a transient failure): the follower
    moves it to the dead letters with `reason` and applies the rest of the batch."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"journal position {position}: {reason}")
        self.position = position
        self.reason = reason


class FollowerSink(Protocol):
    """What a journal follower feeds: history, the business-event bus, later consumers.

    `apply` receives a bounded batch in journal order and returns once every entry's
    effect is durable; raising leaves the batch unacknowledged, and the follower retries
    it (with `redelivered` set), so applying must be idempotent per position."""

    @property
    def name(self) -> str: ...

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None: ...
