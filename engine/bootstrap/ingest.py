"""Wiring ingestion: config, dead-letter store, replay desk, consumer.

`running_engine` calls `start_ingest` once the gateway exists, passes
`runtime.desk` to the Admin service (`lotwise dlq`), and `runtime.stop()` on the way down.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from adapters.nats.deadletter import NatsDeadLetters, dead_letter_config, nats_republish
from adapters.nats.ingest.apply import Applied, Applier, IngestGateway, TransferSteps
from adapters.nats.ingest.config import IngestConfig
from adapters.nats.ingest.consumer import IngestConsumer, IngestMetrics
from adapters.nats.ingest.events import InboundEvent, TemperatureExcursion
from adapters.nats.journal import NatsLink, engine_journal_config
from engine.domain.deadletter_desk import DeadLetterDesk
from engine.domain.ports import DeadLetterStore
from engine.health.hooks import AlertingDeadLetters, HealthHooks

log = structlog.get_logger("lotwise.ingest")


@dataclass(slots=True)
class IngestRuntime:
    consumer: IngestConsumer
    dead_letters: NatsDeadLetters
    desk: DeadLetterDesk  # pass to engine.api.server.start_server(dead_letters=...)
    link: NatsLink

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.link.close()


async def start_ingest(
    gateway: IngestGateway,
    config: IngestConfig,
    *,
    namespace: str,
    nats_url: str,
    replicas: int = 1,
    metrics: IngestMetrics | None = None,
    transfers: TransferSteps | None = None,
    hooks: HealthHooks | None = None,
) -> IngestRuntime:
    """Connect, make sure the inbound and dead-letter streams and the durable consumer
    exist, and start consuming. `config` must have its defaults filled (`with_defaults`)."""
    link = NatsLink(engine_journal_config(namespace, nats_url, replicas, client_name="lotwise-ingest"))
    await link.connect()
    try:
        store = NatsDeadLetters(link, dead_letter_config(namespace, nats_url, replicas))
        await store.ensure()
        if hooks is not None:  # dead letters and temperature excursions raise alerts (stock health)
            sink: DeadLetterStore = AlertingDeadLetters(store, hooks)
            applier: Applier = AlertingApplier(gateway, config, transfers, hooks)
        else:
            sink, applier = store, Applier(gateway, config, transfers)
        consumer = IngestConsumer(link, config, applier, sink, metrics, replicas)
        await consumer.start()
    except BaseException:
        await link.close()
        raise
    return IngestRuntime(consumer, store, DeadLetterDesk(store, nats_republish(link)), link)


class AlertingApplier(Applier):
    """The Applier, raising a temperature alert for each excursion it applied."""

    def __init__(
        self, gateway: IngestGateway, config: IngestConfig, transfers: TransferSteps | None, hooks: HealthHooks
    ) -> None:
        super().__init__(gateway, config, transfers)
        self.hooks = hooks

    async def apply(self, event: InboundEvent, deadline: float | None = None) -> Applied:
        applied = await super().apply(event, deadline)
        if isinstance(event, TemperatureExcursion):
            cab = self.cabinet(event.cabinet_id)
            await self.hooks.temperature(
                cab.site, cab.bin, event.cabinet_id, event.temp_c, event.limit_c, event.event_id
            )
        return applied
