"""Every port the domain and runtime depend on, in one module (DESIGN.md §10).

Adapters implement them: the real ones under adapters/nats and adapters/clickhouse, the
in-memory ones under adapters/memory. This module holds Protocols and the plain values
they speak, nothing that does I/O; engine.bootstrap picks the implementations.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from engine.domain.deadletters import DEFAULT_LIST_LIMIT, DeadLetter, StoredDeadLetter
from engine.domain.history import (
    BalanceQuery,
    BalanceRow,
    DayQty,
    ExpiryQuery,
    Exposure,
    HistoryBatch,
    LotTrace,
    MovementPage,
    MovementQuery,
    PairTotal,
    SeriesQuery,
    TraceQuery,
    TurnoverQuery,
    TurnoverRow,
)
from engine.domain.model import Movement
from engine.domain.shard import Op
from engine.domain.state import ShardState

# ---- time ----


class Clock(Protocol):
    """Engine time in epoch milliseconds. Hold TTLs and shelf life are measured on it."""

    def now_ms(self) -> int: ...


# ---- journal and snapshots (DESIGN.md §9) ----


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


# ---- what a shard host writes to ----


@dataclass(frozen=True, slots=True)
class Backend:
    """The journal and snapshot store a shard host writes to, and how to close them."""

    journal: Journal
    snapshots: SnapshotStore
    close: Callable[[], Awaitable[None]]


# How a shard (possibly in a process of its own) reaches its backend: connects lazily.
BackendFactory = Callable[[], Awaitable[Backend]]


# ---- history store (DESIGN.md §8) ----


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


# ---- dead letters (DESIGN.md §10) ----


class DeadLetterStore(Protocol):
    """Where dead letters wait for an operator. Seqs grow; a seq is never reused."""

    async def put(self, letter: DeadLetter) -> int:
        """Store `letter` and return its seq. Raises Overloaded when the store is full
        (nothing is dropped to make room), Unavailable when the store did not confirm.

        Idempotent by `letter.key` while the letter is stored: a consumer that crashed
        between put and ack puts it again and gets the same seq. (The NATS store
        remembers keys for its duplicate window only; see adapters.nats.deadletter.)"""
        ...

    async def list(
        self, *, after_seq: int = 0, limit: int = DEFAULT_LIST_LIMIT, code: str = ""
    ) -> builtins.list[StoredDeadLetter]:
        """Letters with seq > after_seq, oldest first, at most `limit` (1..1000), of one
        code when `code` is given. InvalidArgument for bad arguments."""
        ...

    async def get(self, seq: int) -> StoredDeadLetter:
        """The letter at `seq`; NotFound when there is none (never stored, or deleted)."""
        ...

    async def delete(self, seq: int) -> None:
        """Remove the letter at `seq`; NotFound when there is none."""
        ...

    async def count(self) -> int:
        """Letters stored now."""
        ...


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
    # journal messages after this one the follower had not yet received when it got this one
    # (-1: unknown); > 0 means the cells are further on than what the follower has seen
    behind: int = -1


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
