"""Replenishment's business events (DESIGN.md §14: every automatic action is a business
event with a stable id). Pure: what to tell, and under which id; adapters.nats.replenish_events
publishes them beside the other business events (adapters/nats/EVENTS.md, "Replenishment").

A suggestion raised tells `replenishment_suggested`; an accepted one (by a planner, or
automatically where the supplier's terms allow and data health passes) tells three more:
`rfq_requested` to the designated supplier, `todo_created` for purchasing, and
`keeper_alerted` for the site's warehouse keeper. Each id is
`<kind>:<site>:<sku>:<version>`, so a retried acceptance republishes the same ids and
the stream's duplicate window stores each once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.replenish.store import Suggestion, SupplierTerms

SUGGESTED = "replenishment_suggested"
RFQ_REQUESTED = "rfq_requested"
TODO_CREATED = "todo_created"
KEEPER_ALERTED = "keeper_alerted"
ACTION_KINDS = (SUGGESTED, RFQ_REQUESTED, TODO_CREATED, KEEPER_ALERTED)


@dataclass(frozen=True, slots=True)
class ReplenishEvent:
    event_id: str  # f"{kind}:{site}:{sku}:{version}": stable across retries
    kind: str  # ACTION_KINDS
    sku: str
    site: str
    version: int
    qty: int  # proposed (suggested) or decided (the actions)
    supplier: str
    keeper: str
    actor: str  # the planner's subject, or "engine" for automatic actions
    automatic: bool
    flagged: bool
    at_ms: int
    reorder_point: float
    safety_stock: float
    daily_demand: float
    inventory_position: int


class ActionSink(Protocol):
    """Where replenishment events go; stored durably when `publish` returns, and a
    republished id is not stored twice."""

    async def publish(self, event: ReplenishEvent) -> None: ...

    async def close(self) -> None: ...


def event_id(kind: str, s: Suggestion) -> str:
    return f"{kind}:{s.site}:{s.sku}:{s.version}"


def _event(kind: str, s: Suggestion, qty: int, terms: SupplierTerms | None, actor: str, at_ms: int) -> ReplenishEvent:
    return ReplenishEvent(
        event_id=event_id(kind, s),
        kind=kind,
        sku=s.sku,
        site=s.site,
        version=s.version,
        qty=qty,
        supplier=s.supplier,
        keeper=terms.keeper if terms else "",
        actor=actor,
        automatic=s.automatic,
        flagged=s.flagged,
        at_ms=at_ms,
        reorder_point=s.panel.reorder_point,
        safety_stock=s.panel.safety_stock,
        daily_demand=s.panel.daily_demand,
        inventory_position=s.panel.inventory_position,
    )


def suggested_event(s: Suggestion, terms: SupplierTerms | None, at_ms: int) -> ReplenishEvent:
    return _event(SUGGESTED, s, s.qty, terms, "engine", at_ms)


def acceptance_events(s: Suggestion, terms: SupplierTerms | None, actor: str, at_ms: int) -> list[ReplenishEvent]:
    """The RFQ, the purchase to-do and the keeper's alert of an accepted suggestion. No RFQ
    without a designated supplier (the to-do says a supplier must be found)."""
    kinds = (RFQ_REQUESTED, TODO_CREATED, KEEPER_ALERTED) if s.supplier else (TODO_CREATED, KEEPER_ALERTED)
    return [_event(kind, s, s.decided_qty, terms, actor, at_ms) for kind in kinds]
