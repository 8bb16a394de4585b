"""Replenishment events kept in a list (engine.replenish.actions.ActionSink): unit tests
and `journal=memory` engines. A republished id is kept once, as the stream's duplicate
window does."""

from __future__ import annotations

from engine.replenish.actions import ReplenishEvent


class InMemoryReplenishEvents:
    def __init__(self, max_events: int = 100_000) -> None:
        self.events: list[ReplenishEvent] = []
        self._ids: set[str] = set()
        self._max = max_events

    async def publish(self, event: ReplenishEvent) -> None:
        if event.event_id in self._ids:
            return
        if len(self.events) >= self._max:  # bounded: the oldest goes, as a stream's limits do
            gone = self.events.pop(0)
            self._ids.discard(gone.event_id)
        self.events.append(event)
        self._ids.add(event.event_id)

    async def close(self) -> None:
        return None
