"""Stock health's journal follower sink (DESIGN §9: a follower, off the order path).

- Every receipt of a lot with an expiry (every movement carrying the lot's dates) tells
  the expiry watch that this lot exists at this site: it schedules the lot's next crossing.
- Every `discrepancy` movement (more was physically taken than the books held) raises a
  `discrepancy` alert for its lot, counted, with the movement as evidence.

Applying again is harmless: a timer already queued is not queued twice, and an alert keeps
each piece of evidence once (a redelivered batch may add to its count: at least once)."""

from __future__ import annotations

from engine.domain.model import MovementKind
from engine.domain.ports import FollowedEntry
from engine.health.alerts import AlertScope, Condition
from engine.health.desk import AlertDesk
from engine.health.sweep import ExpiryWatch


def movement_ref(sku: str, site: str, seq: int) -> str:
    """How an alert names a movement: its cell and its per-cell seq (history's key)."""
    return f"mv:{sku}@{site}#{seq}"


class ExpirySink:
    def __init__(self, watch: ExpiryWatch, alerts: AlertDesk | None = None) -> None:
        self.watch = watch
        self.alerts = alerts
        self.lots_noted = 0
        self.discrepancies = 0

    @property
    def name(self) -> str:
        return "health-expiry"

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        for followed in entries:
            for m in followed.entry.movements:
                if m.lot is not None and m.lot.expires_at_ms:
                    self.watch.note_lot(m.sku, m.site, m.lot.expires_at_ms)
                    self.lots_noted += 1
                if m.kind is MovementKind.DISCREPANCY and self.alerts is not None:
                    self.discrepancies += 1
                    await self.alerts.raise_alert(
                        Condition(
                            kind="discrepancy",
                            severity="warning",
                            scope=AlertScope(site=m.site, sku=m.sku, lot=m.lot_id),
                            summary=f"{m.qty} taken beyond what the books held ({m.request_id or 'no request id'})",
                            at_ms=m.at_ms or followed.entry.now_ms,
                            evidence=(movement_ref(m.sku, m.site, m.seq),),
                        )
                    )
