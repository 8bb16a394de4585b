"""The document store and the desks over it: the org tree and transfers (DESIGN.md §1).

With a durable journal the documents live in a JetStream key-value bucket of the same
NATS; with `journal=memory` (development, tests) in memory, like everything else there."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from engine.bootstrap.config import SettingsProblem
from engine.domain.documents import DocumentStore
from engine.domain.errors import InvalidArgument, NotFound
from engine.domain.events import TransferEventSink
from engine.domain.transfer_flow import FlowError, ReceiptLine, Transfer, TransferFlow, default_flow, parse_flow
from engine.runtime.gateway import Gateway
from engine.runtime.gateway.orgtree import OrgDesk
from engine.runtime.gateway.transfers import Actor, TransferDesk
from engine.settings import Settings

log = structlog.get_logger("lotwise.transfers")

# How often the deadlines are checked: a quarter of the shortest deadline, so an escalation
# comes at most 25 % late, within these bounds (each check reads every transfer document).
DEADLINE_CHECK_MIN_S = 0.5
DEADLINE_CHECK_MAX_S = 30.0
RELAY_EVERY_S = 10.0  # the outbox relay: a step event whose publish failed goes out within this


@dataclass(frozen=True, slots=True)
class Desks:
    documents: DocumentStore
    org: OrgDesk
    transfers: TransferDesk
    events: TransferEventSink | None = None
    watch: asyncio.Task[None] | None = None  # escalates overdue transfers, relays untold step events

    async def close(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watch
        if self.events is not None:
            await self.events.close()
        await self.documents.close()


def deadline_check_s(flow: TransferFlow) -> float:
    shortest_s = min(d.within_ms for d in flow.deadlines) / 1000
    return min(DEADLINE_CHECK_MAX_S, max(DEADLINE_CHECK_MIN_S, shortest_s / 4))


def watch_every_s(flow: TransferFlow, events: bool) -> float | None:
    """How often the transfer watch runs; None: nothing to watch (no deadlines, no events)."""
    every = [deadline_check_s(flow)] if flow.deadlines else []
    every += [RELAY_EVERY_S] if events else []
    return min(every) if every else None


async def watch_transfers(desk: TransferDesk, every_s: float) -> None:
    """Every `every_s`, for as long as the engine runs: escalate overdue transfers, then
    relay step events not yet told. A failed round (NATS away) is logged and the next one
    retries; it never ends the watch."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await desk.escalate_overdue()
            await desk.relay_untold()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next round retries; the transfers are unchanged
            log.warning("transfer watch round failed", error=str(exc) or type(exc).__name__)


WMS_ACTOR = Actor("wms")  # the actor of steps a WMS event takes (its sender is checked by ingestion)


class WmsTransferSteps:
    """adapters.nats.ingest.apply.TransferSteps over the transfers desk: a WMS dispatch
    ships the transfer it names, a WMS arrival is a (partial) receipt of it. The event id
    is the step's request id, so a redelivered event answers from the transfer."""

    def __init__(self, desk: TransferDesk) -> None:
        self._desk = desk

    async def find(self, transfer_id: str) -> Transfer | None:
        try:
            return await self._desk.get(transfer_id)
        except (NotFound, InvalidArgument):
            return None  # not one of the engine's: the WMS books it on its own

    async def ship(self, request_id: str, transfer_id: str, eta_ms: int = 0) -> Transfer:
        return await self._desk.ship(WMS_ACTOR, request_id, transfer_id, eta_ms)

    async def receive(self, request_id: str, transfer_id: str, lines: Sequence[ReceiptLine]) -> Transfer:
        return await self._desk.receive(WMS_ACTOR, request_id, transfer_id, lines)


def transfer_flow_of(settings: Settings) -> TransferFlow:
    path = settings.transfer_flow
    if path is None:
        return default_flow()
    try:
        return parse_flow(json.loads(path.read_text()))
    except OSError as exc:
        raise SettingsProblem("transfer_flow", f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, FlowError) as exc:  # JSONDecodeError is a ValueError
        raise SettingsProblem("transfer_flow", f"{path}: {exc}") from None


async def open_documents(settings: Settings, nats_url: str) -> DocumentStore:
    if settings.journal == "memory" or not nats_url:
        from adapters.memory.documents import InMemoryDocuments

        return InMemoryDocuments()
    from adapters.nats.documents import connect_documents, engine_documents_config

    return await connect_documents(engine_documents_config(settings.namespace, nats_url, settings.journal_replicas))


async def open_transfer_events(settings: Settings, nats_url: str) -> TransferEventSink | None:
    """Transfer steps as business events: with the event bus on, beside its stream."""
    if settings.journal == "memory" or not nats_url or not settings.events:
        return None
    from adapters.nats.bus import engine_transfer_bus_config, start_transfer_events

    return await start_transfer_events(
        engine_transfer_bus_config(settings.namespace, nats_url, settings.journal_replicas)
    )


async def start_desks(settings: Settings, gateway: Gateway, nats_url: str) -> Desks:
    documents = await open_documents(settings, nats_url)
    try:
        events = await open_transfer_events(settings, nats_url)
    except BaseException:
        await documents.close()
        raise
    flow = transfer_flow_of(settings)
    desk = TransferDesk(gateway, documents, flow, events=events)
    try:
        indexed = await desk.reindex()  # documents from before the listing index, or a create cut short
    except BaseException:
        if events is not None:
            await events.close()
        await documents.close()
        raise
    if indexed:
        log.info("transfers indexed for listing", transfers=indexed)
    every_s = watch_every_s(flow, events is not None)
    watch = None
    if every_s is not None:
        watch = asyncio.get_running_loop().create_task(watch_transfers(desk, every_s), name="transfer-watch")
    return Desks(documents, OrgDesk(documents, gateway), desk, events, watch)
