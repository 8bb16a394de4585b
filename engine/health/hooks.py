"""Alerts from what exists already (issue 15 item 8): dead letters, temperature excursions
and replenishment's keeper alerts raise alerts of the one model, without their producers
knowing about alerts.

`HealthHooks` is created before ingestion starts and bound to the alert desk once stock
health runs (`bind`); until then, and whenever raising fails, the producer carries on (an
alert must never stop a dead letter from being stored or an excursion from being applied).
"""

from __future__ import annotations

import builtins

import structlog

from engine.domain.deadletters import DEFAULT_LIST_LIMIT, DeadLetter, StoredDeadLetter
from engine.domain.ports import DeadLetterStore
from engine.health.alerts import AlertScope, Condition
from engine.health.desk import AlertDesk
from engine.replenish.actions import KEEPER_ALERTED, ActionSink, ReplenishEvent

log = structlog.get_logger("lotwise.health.hooks")


class HealthHooks:
    def __init__(self) -> None:
        self.desk: AlertDesk | None = None

    def bind(self, desk: AlertDesk) -> None:
        self.desk = desk

    async def raise_quietly(self, condition: Condition) -> None:
        if self.desk is None:
            return
        try:
            await self.desk.raise_alert(condition)
        except Exception as exc:  # the producer's work matters more than its alert
            log.warning("alert not raised", kind=condition.kind, error=f"{type(exc).__name__}: {exc}")

    async def dead_letter(self, letter: DeadLetter, seq: int, site: str = "") -> None:
        at_ms = letter.failed_at_ms or (self.desk.now_ms() if self.desk else 0)
        await self.raise_quietly(
            Condition(
                kind="dead_letter",
                severity="warning",
                scope=AlertScope(site=site),
                summary=f"{letter.event_type or letter.subject}: {letter.code.value}: {letter.reason}"[:500],
                at_ms=at_ms,
                evidence=(f"dlq:{seq}", *((letter.event_id,) if letter.event_id else ())),
                subject=letter.code.value,
            )
        )

    async def temperature(
        self, site: str, bin_: str, cabinet: str, temp_c: float, limit_c: float, event_id: str
    ) -> None:
        await self.raise_quietly(
            Condition(
                kind="temperature",
                severity="critical",
                scope=AlertScope(site=site, bin=bin_),
                summary=f"cabinet {cabinet} at {temp_c} °C (limit {limit_c} °C): its stock is frozen for QA",
                at_ms=self.desk.now_ms() if self.desk else 0,
                evidence=(event_id,),
                subject=cabinet,
            )
        )

    async def replenishment(self, event: ReplenishEvent) -> None:
        """A keeper alert of an accepted suggestion: one `replenishment` alert per pair (its
        count grows with each accepted version; closed, it opens again), the suggestion
        behind it in its evidence and summary."""
        flagged = " (data health flagged: check before acting)" if event.flagged else ""
        how = "automatically" if event.automatic else f"by {event.actor}"
        await self.raise_quietly(
            Condition(
                kind="replenishment",
                severity="warning" if event.flagged else "info",
                scope=AlertScope(site=event.site, sku=event.sku),
                summary=(
                    f"order {event.qty} of {event.sku} for {event.site} accepted {how}{flagged}: "
                    f"supplier {event.supplier or '(none designated)'}, keeper {event.keeper or '(none named)'}; "
                    f"reorder point {event.reorder_point:g}, safety stock {event.safety_stock:g}, "
                    f"daily demand {event.daily_demand:g}, position {event.inventory_position}"
                )[:500],
                at_ms=event.at_ms,
                evidence=(event.event_id, f"suggestion:{event.site}:{event.sku}:{event.version}"),
            )
        )


class AlertingActions:
    """Replenishment's ActionSink that also raises a `replenishment` alert for each keeper
    alert it publishes (after the event is stored: the event is the fact, the alert the
    desk's view of it)."""

    def __init__(self, inner: ActionSink, hooks: HealthHooks) -> None:
        self.inner = inner
        self.hooks = hooks

    async def publish(self, event: ReplenishEvent) -> None:
        await self.inner.publish(event)
        if event.kind == KEEPER_ALERTED:
            await self.hooks.replenishment(event)

    async def close(self) -> None:
        await self.inner.close()


class AlertingDeadLetters:
    """A DeadLetterStore that raises a dead_letter alert per stored letter (one alert per
    code, counted: a flood of bad messages is one alert with a count, not a flood)."""

    def __init__(self, inner: DeadLetterStore, hooks: HealthHooks) -> None:
        self.inner = inner
        self.hooks = hooks

    async def put(self, letter: DeadLetter) -> int:
        seq = await self.inner.put(letter)
        await self.hooks.dead_letter(letter, seq)
        return seq

    async def list(
        self, *, after_seq: int = 0, limit: int = DEFAULT_LIST_LIMIT, code: str = ""
    ) -> builtins.list[StoredDeadLetter]:
        return await self.inner.list(after_seq=after_seq, limit=limit, code=code)

    async def get(self, seq: int) -> StoredDeadLetter:
        return await self.inner.get(seq)

    async def delete(self, seq: int) -> None:
        await self.inner.delete(seq)

    async def count(self) -> int:
        return await self.inner.count()
