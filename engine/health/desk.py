"""The alert desk: raise, acknowledge, close and list alerts over an AlertStore, publishing
every change (issue 15 item 8). Async over ports only; wired by engine.bootstrap.health.

Raising is a read-modify-write on the alert's revision: two raisers of one condition at
once both count (the loser reads again), bounded by MAX_CAS_ATTEMPTS."""

from __future__ import annotations

from collections.abc import Callable

from engine.domain.errors import FieldViolation, InvalidArgument, NotFound, Unavailable
from engine.health.alerts import (
    Alert,
    AlertQuery,
    Condition,
    acknowledge,
    alert_id_of,
    check_query,
    close,
    observe,
)
from engine.health.ports import AlertRevisionMismatch, AlertStore, HealthPublisher

MAX_CAS_ATTEMPTS = 16
Transition = Callable[[Alert, str], None]  # (alert after, "opened" | "repeated" | "acknowledged" | "closed")


def _no_hook(alert: Alert, transition: str) -> None:
    return None


class AlertDesk:
    def __init__(
        self,
        store: AlertStore,
        publisher: HealthPublisher | None,
        now_ms: Callable[[], int],
        on_transition: Transition = _no_hook,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.now_ms = now_ms
        self._hook = on_transition

    async def raise_alert(self, condition: Condition) -> Alert:
        """Open the condition's alert, or count it once more when it is open already."""
        for _ in range(MAX_CAS_ATTEMPTS):
            found = await self.store.get(_id_of(condition))
            before, revision = found if found is not None else (None, 0)
            after = observe(before, condition)
            try:
                await self.store.put(after, revision)
            except AlertRevisionMismatch:
                continue
            opened = before is None or before.state == "closed"
            await self._changed(after, "opened" if opened else "repeated", publish=opened)
            return after
        raise Unavailable(f"alert {_id_of(condition)} kept changing: {MAX_CAS_ATTEMPTS} attempts")

    async def get(self, alert_id: str) -> Alert:
        found = await self.store.get(_checked_id(alert_id))
        if found is None:
            raise NotFound("alert", alert_id)
        return found[0]

    async def acknowledge(self, alert_id: str, actor: str, note: str = "") -> Alert:
        return await self._step(alert_id, "acknowledged", lambda a: acknowledge(a, actor, self.now_ms(), note))

    async def close(self, alert_id: str, actor: str, note: str = "") -> Alert:
        return await self._step(alert_id, "closed", lambda a: close(a, actor, self.now_ms(), note))

    async def list(self, query: AlertQuery) -> list[Alert]:
        check_query(query)
        return await self.store.list(query)

    async def _step(self, alert_id: str, transition: str, change: Callable[[Alert], Alert]) -> Alert:
        for _ in range(MAX_CAS_ATTEMPTS):
            found = await self.store.get(_checked_id(alert_id))
            if found is None:
                raise NotFound("alert", alert_id)
            before, revision = found
            after = change(before)
            if after == before:  # acknowledged or closed already: an idempotent answer
                return after
            try:
                await self.store.put(after, revision)
            except AlertRevisionMismatch:
                continue
            await self._changed(after, transition, publish=True)
            return after
        raise Unavailable(f"alert {alert_id} kept changing: {MAX_CAS_ATTEMPTS} attempts")

    async def _changed(self, alert: Alert, transition: str, *, publish: bool) -> None:
        self._hook(alert, transition)
        # A repeat only counts: subscribers hear of an alert when it opens and when a
        # person acts on it, not on every occurrence of a noisy condition.
        if publish and self.publisher is not None:
            await self.publisher.publish_alert(alert)


def _id_of(c: Condition) -> str:
    return alert_id_of(c.kind, c.scope, c.subject)


def _checked_id(alert_id: str) -> str:
    if not alert_id.startswith("al-") or len(alert_id) > 64:
        raise InvalidArgument([FieldViolation("alert_id", "must be an alert id (al-<kind>-<hash>)")])
    return alert_id
