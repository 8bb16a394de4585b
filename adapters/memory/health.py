"""Stock health's ports in memory (engine.health.ports): the reference the JetStream
adapters are held to by tests/contract/test_alerts_contract.py."""

from __future__ import annotations

from engine.health.alerts import Alert, AlertQuery, from_record, matches, newest_first, to_record
from engine.health.ports import MAX_STORED_ALERTS, AlertRevisionMismatch, HealthEvent


class InMemoryAlertStore:
    def __init__(self) -> None:
        # Kept as records, as the real store keeps them, so a round trip is always exercised.
        self._records: dict[str, tuple[dict[str, object], int]] = {}

    async def get(self, alert_id: str) -> tuple[Alert, int] | None:
        found = self._records.get(alert_id)
        return None if found is None else (from_record(found[0]), found[1])

    async def put(self, alert: Alert, expected_revision: int) -> int:
        current = self._records.get(alert.alert_id)
        if (current[1] if current else 0) != expected_revision:
            raise AlertRevisionMismatch(alert.alert_id, expected_revision)
        revision = expected_revision + 1
        self._records[alert.alert_id] = (to_record(alert), revision)
        return revision

    async def list(self, query: AlertQuery) -> list[Alert]:
        if len(self._records) > MAX_STORED_ALERTS:
            raise OverflowError(f"more than {MAX_STORED_ALERTS} alerts stored")
        found = [a for a in (from_record(r) for r, _ in self._records.values()) if matches(a, query)]
        return newest_first(found)[: query.limit]

    async def close(self) -> None:
        return None


class InMemoryHealthPublisher:
    """Keeps what was published; an event id published again is kept once (as the
    stream's duplicate window does)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.events: dict[str, HealthEvent] = {}

    async def publish_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    async def publish_event(self, event: HealthEvent) -> None:
        self.events.setdefault(event.event_id, event)

    async def close(self) -> None:
        return None
