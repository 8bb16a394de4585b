"""Stock health's ports on JetStream (engine.health.ports).

- Alerts live in a key-value bucket (file storage, fsynced like the journal), one key per
  alert id; a write names the revision it read (the KV's last-sequence check), so two
  raisers of one condition never lose a count. Values are the typed, versioned records
  of engine.health.alerts (JSON, never pickle).
- Alerts and health events are published in one stream of their own:
  `<prefix>.alerts.<kind>.<site>` (one subject per kind, as EVENTS.md lists) and
  `<prefix>.health.<kind>.<site>`, with the business events' headers; a message id makes
  a republished event (same id, within the duplicate window) stored once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import orjson
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from adapters.nats.bus import (
    CONTENT_TYPES,
    DAY_S,
    H_CONTENT_TYPE,
    H_EVENT_ID,
    H_EVENT_KIND,
    JSON,
    KiB,
    MiB,
    subject_token,
)
from adapters.nats.journal import JournalConfig, NatsLink, ensure_stream
from adapters.nats.kvscan import latest_entries
from engine.domain.ports import JournalUnavailable
from engine.health.alerts import Alert, AlertQuery, from_record, matches, newest_first, to_record
from engine.health.ports import MAX_STORED_ALERTS, AlertRevisionMismatch, HealthEvent

HEALTH_EVENT_SCHEMA = "lotwise.health_event/1"


@dataclass(frozen=True, slots=True)
class HealthNatsConfig:
    url: str
    bucket: str = "lotwise-alerts-lotwise"
    stream: str = "LOTWISE_HEALTH_lotwise"
    alerts_prefix: str = "lotwise.alerts"
    events_prefix: str = "lotwise.health"
    replicas: int = 1
    bucket_max_bytes: int = 256 * MiB
    stream_max_bytes: int = 256 * MiB
    max_age_s: float = 30 * DAY_S
    duplicate_window_s: float = 600.0
    publish_timeout_s: float = 5.0

    def alert_subject(self, kind: str, site: str) -> str:
        return f"{self.alerts_prefix}.{subject_token(kind)}.{subject_token(site)}"

    def event_subject(self, kind: str, site: str) -> str:
        return f"{self.events_prefix}.{subject_token(kind)}.{subject_token(site)}"

    def recipient_subject(self, recipient: str, kind: str) -> str:
        """Where a person's copy goes: `<events prefix>.for.<recipient>.<kind>`."""
        return f"{self.events_prefix}.for.{subject_token(recipient)}.{subject_token(kind)}"


def engine_health_config(namespace: str, nats_url: str, replicas: int = 1) -> HealthNatsConfig:
    """`lotwise.alerts.>` / `lotwise.health.>` for the default namespace,
    `lotwise.<tag>.alerts.>` / `lotwise.<tag>.health.>` for another."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)
    base = "lotwise" if tag == "lotwise" else f"lotwise.{tag}"
    return HealthNatsConfig(
        url=nats_url,
        bucket=f"lotwise-alerts-{tag}",
        stream=f"LOTWISE_HEALTH_{tag}",
        alerts_prefix=f"{base}.alerts",
        events_prefix=f"{base}.health",
        replicas=replicas,
    )


class JetStreamAlertStore:
    def __init__(self, kv: KeyValue, js: JetStreamContext, bucket: str) -> None:
        self._kv = kv
        self._js = js
        self._bucket = bucket

    async def get(self, alert_id: str) -> tuple[Alert, int] | None:
        try:
            entry = await self._kv.get(alert_id)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        return from_record(json.loads(entry.value)), entry.revision

    async def put(self, alert: Alert, expected_revision: int) -> int:
        data = orjson.dumps(to_record(alert))
        try:
            if expected_revision == 0:
                return await self._kv.create(alert.alert_id, data)
            return await self._kv.update(alert.alert_id, data, last=expected_revision)
        except KeyWrongLastSequenceError:
            raise AlertRevisionMismatch(alert.alert_id, expected_revision) from None
        except BadRequestError as exc:  # "wrong last sequence" on some server versions
            if exc.err_code == 10071:
                raise AlertRevisionMismatch(alert.alert_id, expected_revision) from None
            raise

    async def list(self, query: AlertQuery) -> list[Alert]:
        found: list[Alert] = []
        async for entry in latest_entries(self._js, self._bucket, limit=MAX_STORED_ALERTS):
            if entry.value:
                alert = from_record(json.loads(entry.value))
                if matches(alert, query):
                    found.append(alert)
        return newest_first(found)[: query.limit]

    async def close(self) -> None:
        return None  # the link is closed by its owner (HealthNats)


class JetStreamHealthPublisher:
    def __init__(self, link: NatsLink, config: HealthNatsConfig) -> None:
        self._link = link
        self.config = config

    async def publish_alert(self, alert: Alert) -> None:
        # One message per state an alert reaches (opened k-th time, acknowledged, closed).
        event_id = f"{alert.alert_id}:{alert.count}:{alert.state}"
        payload = orjson.dumps({"event_id": event_id, **to_record(alert)})
        await self._publish(self.config.alert_subject(alert.kind, alert.scope.site), event_id, alert.kind, payload)

    async def publish_event(self, event: HealthEvent) -> None:
        record = {
            "schema": HEALTH_EVENT_SCHEMA,
            "event_id": event.event_id,
            "kind": event.kind,
            "site": event.site,
            "at_ms": event.at_ms,
            "body": event.body,
        }
        subject = self.config.event_subject(event.kind, event.site)
        payload = orjson.dumps({**record, "recipient": event.recipient} if event.recipient else record)
        await self._publish(subject, event.event_id, event.kind, payload)
        if event.recipient:  # the named person's copy (its own id: the stream keeps both)
            to = self.config.recipient_subject(event.recipient, event.kind)
            await self._publish(to, f"{event.event_id}:for:{event.recipient}", event.kind, payload)

    async def _publish(self, subject: str, event_id: str, kind: str, payload: bytes) -> None:
        _, js = await self._link.client()
        headers = {
            api.Header.MSG_ID.value: event_id,
            H_CONTENT_TYPE: CONTENT_TYPES[JSON],
            H_EVENT_ID: event_id,
            H_EVENT_KIND: kind,
        }
        await js.publish(subject, payload, timeout=self.config.publish_timeout_s, headers=headers)

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class HealthNats:
    """The alert store and the publisher over one connection; `close()` closes it."""

    link: NatsLink
    alerts: JetStreamAlertStore
    publisher: JetStreamHealthPublisher

    async def close(self) -> None:
        await self.link.close()


def health_stream_config(config: HealthNatsConfig) -> api.StreamConfig:
    return api.StreamConfig(
        name=config.stream,
        description="Lotwise stock health: alerts and health events (JSON)",
        subjects=[f"{config.alerts_prefix}.>", f"{config.events_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_age=config.max_age_s,
        max_bytes=config.stream_max_bytes,
        max_msgs=-1,
        max_msgs_per_subject=-1,
        max_msg_size=256 * KiB,
        num_replicas=config.replicas,
        duplicate_window=config.duplicate_window_s,
    )


async def connect_health(config: HealthNatsConfig) -> HealthNats:
    link = NatsLink(JournalConfig(url=config.url, client_name="lotwise-health"))
    await link.connect()
    try:
        _, js = await link.client()
        kv = await js.create_key_value(
            api.KeyValueConfig(
                bucket=config.bucket,
                description="Lotwise alerts: one key per alert, every revision",
                history=8,
                storage=api.StorageType.FILE,
                replicas=config.replicas,
                max_bytes=config.bucket_max_bytes,
                max_value_size=64 * KiB,
            )
        )
        await ensure_stream(js, health_stream_config(config))
    except Exception as exc:
        await link.close()
        raise JournalUnavailable(f"cannot set up stock health on {config.url}: {exc}") from exc
    return HealthNats(link, JetStreamAlertStore(kv, js, config.bucket), JetStreamHealthPublisher(link, config))
