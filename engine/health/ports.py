"""The ports stock health depends on (DESIGN.md §10): where alerts are kept, where health
events and alerts are published, and how an approved action reaches the cells.

Adapters: adapters/memory/health.py (in memory, for unit tests and `journal=memory`) and
adapters/nats/health.py (a JetStream key-value bucket and streams); both pass
tests/contract/test_alerts_contract.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.health.alerts import Alert, AlertQuery

MAX_STORED_ALERTS = 100_000  # a store refuses to list past this (a listing is a full scan)


class AlertRevisionMismatch(Exception):
    """The alert changed since it was read (or was created meanwhile): read it again."""

    def __init__(self, alert_id: str, expected: int) -> None:
        super().__init__(f"alert {alert_id!r} is no longer at revision {expected}")
        self.alert_id = alert_id
        self.expected = expected


class AlertStore(Protocol):
    """Durable alerts by id, each write based on the revision it read (0: must not exist),
    so two raisers of one condition never lose a count."""

    async def get(self, alert_id: str) -> tuple[Alert, int] | None: ...

    async def put(self, alert: Alert, expected_revision: int) -> int:
        """Store `alert` if it is at `expected_revision`; the new revision (≥ 1).
        AlertRevisionMismatch otherwise."""
        ...

    async def list(self, query: AlertQuery) -> list[Alert]:
        """Alerts matching `query`, newest first, at most `query.limit`."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A business event of stock health (a promotion task, an out-of-stock or low-facing
    list, a proposed adjustment). `event_id` is stable: the same decision made again (a
    restart, a second sweep) carries the same id and is stored once."""

    event_id: str
    kind: str  # promotion_task | out_of_stock | low_facing | adjustment_proposed | adjustment_applied
    site: str
    at_ms: int
    body: dict[str, Any] = field(default_factory=dict)
    recipient: str = ""  # a named person it is for (a site's sales rep): also sent to them


class HealthPublisher(Protocol):
    """Alerts (one subject per kind) and health events, durably published."""

    async def publish_alert(self, alert: Alert) -> None: ...

    async def publish_event(self, event: HealthEvent) -> None: ...

    async def close(self) -> None: ...
