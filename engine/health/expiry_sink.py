"""The expiry watch's journal follower sink (DESIGN §9: a follower, off the order path).

Every receipt of a lot with an expiry (and every movement carrying the lot's dates)
tells the watch that this lot exists at this site: it schedules the lot's next crossing.
Applying is idempotent (a timer already queued is not queued twice), so a redelivered
batch changes nothing; the watch's sweep covers whatever a restart missed."""

from __future__ import annotations

from engine.domain.ports import FollowedEntry
from engine.health.sweep import ExpiryWatch


class ExpirySink:
    def __init__(self, watch: ExpiryWatch) -> None:
        self.watch = watch
        self.lots_noted = 0

    @property
    def name(self) -> str:
        return "health-expiry"

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        for followed in entries:
            for m in followed.entry.movements:
                if m.lot is not None and m.lot.expires_at_ms:
                    self.watch.note_lot(m.sku, m.site, m.lot.expires_at_ms)
                    self.lots_noted += 1
