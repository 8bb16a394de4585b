"""Replenishment's business events on JetStream (engine.replenish.actions.ActionSink):
`replenishment_suggested`, `rfq_requested`, `todo_created`, `keeper_alerted`, one JSON
message each on `lotwise.replenish.<kind>.<site>.<sku>` (another namespace:
`lotwise.<tag>.replenish.…`), with the business events' headers (adapters/nats/EVENTS.md,
"Replenishment"). The event id (kind, site, sku, suggestion version) is the message id,
so a republished action is stored once within the duplicate window."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson
from nats.js import api

from adapters.nats.bus import (
    CONTENT_TYPES,
    H_CONTENT_TYPE,
    H_EVENT_ID,
    H_EVENT_KIND,
    JSON,
    engine_bus_config,
    subject_token,
)
from adapters.nats.journal import JournalConfig, NatsLink, ensure_stream
from engine.replenish.actions import ReplenishEvent

SCHEMA_VERSION = 1
REPLENISH_TAG = "replenish"
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ReplenishBusConfig:
    url: str
    stream: str = "LOTWISE_REPLENISH_lotwise"
    subject_prefix: str = "lotwise.replenish"
    replicas: int = 1
    max_age_s: float = 90 * DAY_S  # a purchase cycle and its follow-ups
    max_bytes: int = 256 * 1024 * 1024
    duplicate_window_s: float = 600.0
    publish_timeout_s: float = 5.0

    def subject(self, kind: str, site: str, sku: str) -> str:
        return f"{self.subject_prefix}.{subject_token(kind)}.{subject_token(site)}.{subject_token(sku)}"


def engine_replenish_bus_config(namespace: str, nats_url: str, replicas: int = 1) -> ReplenishBusConfig:
    tag = engine_bus_config(namespace, nats_url).stream.removeprefix("LOTWISE_EVENTS_")  # the same tag rules
    prefix = f"lotwise.{REPLENISH_TAG}" if tag == "lotwise" else f"lotwise.{tag}.{REPLENISH_TAG}"
    return ReplenishBusConfig(url=nats_url, stream=f"LOTWISE_REPLENISH_{tag}", subject_prefix=prefix, replicas=replicas)


def replenish_event_record(e: ReplenishEvent) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, **asdict(e)}


def replenish_event_from_record(r: dict[str, Any]) -> ReplenishEvent:
    if r.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unknown replenishment event schema version {r.get('schema_version')!r}")
    return ReplenishEvent(**{f: r[f] for f in ReplenishEvent.__slots__})


def replenish_stream_config(config: ReplenishBusConfig) -> api.StreamConfig:
    return api.StreamConfig(
        name=config.stream,
        description="Lotwise replenishment: suggestions raised, RFQs, purchase to-dos, keeper alerts (JSON)",
        subjects=[f"{config.subject_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_age=config.max_age_s,
        max_bytes=config.max_bytes,
        max_msgs=-1,
        max_msgs_per_subject=-1,
        max_msg_size=64 * 1024,
        num_replicas=config.replicas,
        duplicate_window=config.duplicate_window_s,
    )


class ReplenishEventPublisher:
    def __init__(self, link: NatsLink, config: ReplenishBusConfig) -> None:
        self._link = link
        self.config = config

    async def open(self) -> None:
        _, js = await self._link.client()
        await ensure_stream(js, replenish_stream_config(self.config))

    async def publish(self, event: ReplenishEvent) -> None:
        _, js = await self._link.client()
        headers = {
            api.Header.MSG_ID.value: f"{event.event_id}:{JSON}",
            H_CONTENT_TYPE: CONTENT_TYPES[JSON],
            H_EVENT_ID: event.event_id,
            H_EVENT_KIND: event.kind,
        }
        subject = self.config.subject(event.kind, event.site, event.sku)
        payload = orjson.dumps(replenish_event_record(event))
        await js.publish(subject, payload, timeout=self.config.publish_timeout_s, headers=headers)

    async def close(self) -> None:
        await self._link.close()


async def start_replenish_events(config: ReplenishBusConfig) -> ReplenishEventPublisher:
    link = NatsLink(JournalConfig(url=config.url, client_name="lotwise-replenish-events"))
    await link.connect()
    publisher = ReplenishEventPublisher(link, config)
    try:
        await publisher.open()
    except BaseException:
        await link.close()
        raise
    return publisher
