"""Ports the domain and runtime depend on (DESIGN.md §10). Adapters implement them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from engine.domain.model import Movement


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


class Journal(Protocol):
    """The durable, ordered log of movements, one stream per shard (DESIGN.md §9).

    `append` returns the batch's journal sequence only once the batch is durable; a
    raised exception means the batch was not acknowledged and must not be replied to.
    """

    async def append(self, shard: str, movements: Sequence[Movement]) -> int: ...

    async def read(self, shard: str, from_seq: int = 1) -> list[tuple[int, tuple[Movement, ...]]]: ...


class InMemoryJournal:
    """The in-memory journal: ordered, gap-free per shard; not durable (unit tests, dev)."""

    def __init__(self, max_batches: int = 1_000_000) -> None:
        self._streams: dict[str, list[tuple[Movement, ...]]] = {}
        self._max_batches = max_batches

    async def append(self, shard: str, movements: Sequence[Movement]) -> int:
        stream = self._streams.setdefault(shard, [])
        if len(stream) >= self._max_batches:
            # Bounded: an in-memory journal that grew without end would take the process down.
            del stream[: self._max_batches // 2]
        stream.append(tuple(movements))
        return len(stream)

    async def read(self, shard: str, from_seq: int = 1) -> list[tuple[int, tuple[Movement, ...]]]:
        stream = self._streams.get(shard, [])
        return [(i + 1, batch) for i, batch in enumerate(stream) if i + 1 >= from_seq]
