"""The in-memory journal: ordered, gap-free and fenced like the JetStream one, not durable."""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.domain.ports import JournalConflict, JournalEntry, JournalUnavailable


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
