"""The AlertStore and HealthPublisher contract (engine.health.ports), for every backend:
in memory and on a real nats-server (a key-value bucket and a stream of their own per test)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats
import pytest
import pytest_asyncio

from adapters.memory.health import InMemoryAlertStore, InMemoryHealthPublisher
from adapters.nats.health import HealthNatsConfig, JetStreamHealthPublisher, connect_health
from adapters.nats.server import EmbeddedNats
from engine.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.health.alerts import AlertQuery, AlertScope, Condition, observe
from engine.health.desk import AlertDesk
from engine.health.ports import AlertRevisionMismatch, AlertStore, HealthEvent, HealthPublisher
from tests.nats_fixtures import nats_server  # noqa: F401 - the session's nats-server

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass(frozen=True, slots=True)
class Parts:
    store: AlertStore
    publisher: HealthPublisher
    published: Callable[[], Awaitable[list[dict[str, object]]]]  # what subscribers got, decoded


async def _memory(_: EmbeddedNats) -> tuple[Parts, Callable[[], Awaitable[None]]]:
    publisher = InMemoryHealthPublisher()

    async def published() -> list[dict[str, object]]:
        return [{"kind": a.kind, "state": a.state, "alert_id": a.alert_id} for a in publisher.alerts] + [
            {"kind": e.kind, "event_id": e.event_id} for e in publisher.events.values()
        ]

    async def close() -> None:
        return None

    return Parts(InMemoryAlertStore(), publisher, published), close


async def _jetstream(server: EmbeddedNats) -> tuple[Parts, Callable[[], Awaitable[None]]]:
    tag = uuid.uuid4().hex[:10]
    config = HealthNatsConfig(
        url=server.url,
        bucket=f"alerts-test-{tag}",
        stream=f"HEALTH_TEST_{tag}",
        alerts_prefix=f"test.{tag}.alerts",
        events_prefix=f"test.{tag}.health",
        bucket_max_bytes=8 * 1024 * 1024,
        stream_max_bytes=8 * 1024 * 1024,
    )
    health = await connect_health(config)

    async def published() -> list[dict[str, object]]:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            sub = await js.subscribe(f"test.{tag}.>", stream=config.stream, ordered_consumer=True)
            out: list[dict[str, object]] = []
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                out.append(json.loads(msg.data))
            await sub.unsubscribe()
            return out
        finally:
            await nc.close()

    async def drop() -> None:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.delete_stream(config.stream)
            await js.delete_key_value(config.bucket)
        finally:
            await nc.close()
        await health.close()

    return Parts(health.alerts, health.publisher, published), drop


BACKENDS = {"memory": _memory, "jetstream": _jetstream}


@pytest_asyncio.fixture(params=sorted(BACKENDS), loop_scope="session")
async def parts(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[Parts]:  # noqa: F811
    made, close = await BACKENDS[request.param](nats_server)
    yield made
    await close()


def _cond(site: str = "FW-BOS", lot: str = "L1", at_ms: int = 1_000, severity: str = "warning") -> Condition:
    return Condition(
        kind="near_expiry",
        severity=severity,
        scope=AlertScope(site=site, sku="SKU-1", lot=lot),
        summary=f"lot {lot} expires soon",
        at_ms=at_ms,
        evidence=(f"mv:{lot}:{at_ms}",),
    )


async def test_put_get_round_trip_and_revisions(parts: Parts) -> None:
    alert = observe(None, _cond())
    assert await parts.store.get(alert.alert_id) is None
    rev = await parts.store.put(alert, 0)
    assert rev >= 1
    got = await parts.store.get(alert.alert_id)
    assert got is not None
    assert got[0] == alert
    assert got[1] == rev
    again = observe(alert, _cond(at_ms=2_000))
    rev2 = await parts.store.put(again, rev)
    assert rev2 > rev
    got2 = await parts.store.get(alert.alert_id)
    assert got2 is not None
    assert got2[0].count == 2
    assert got2[0].evidence == ("mv:L1:1000", "mv:L1:2000")


async def test_a_stale_revision_is_refused_and_changes_nothing(parts: Parts) -> None:
    alert = observe(None, _cond())
    rev = await parts.store.put(alert, 0)
    with pytest.raises(AlertRevisionMismatch):
        await parts.store.put(alert, 0)  # created meanwhile
    with pytest.raises(AlertRevisionMismatch):
        await parts.store.put(observe(alert, _cond(at_ms=5)), rev + 7)
    got = await parts.store.get(alert.alert_id)
    assert got is not None
    assert got == (alert, rev)


async def test_list_filters_and_orders_newest_first(parts: Parts) -> None:
    a = observe(None, _cond(site="S1", lot="A", at_ms=10))
    b = observe(None, _cond(site="S2", lot="B", at_ms=30, severity="critical"))
    c = observe(None, _cond(site="S1", lot="C", at_ms=20, severity="info"))
    for x in (a, b, c):
        await parts.store.put(x, 0)
    assert [x.alert_id for x in await parts.store.list(AlertQuery())] == [b.alert_id, c.alert_id, a.alert_id]
    assert [x.alert_id for x in await parts.store.list(AlertQuery(site="S1"))] == [c.alert_id, a.alert_id]
    assert [x.alert_id for x in await parts.store.list(AlertQuery(min_severity="warning"))] == [b.alert_id, a.alert_id]
    assert [x.alert_id for x in await parts.store.list(AlertQuery(limit=1))] == [b.alert_id]
    assert await parts.store.list(AlertQuery(kinds=("expired",))) == []


async def test_the_desk_deduplicates_concurrent_raisers(parts: Parts) -> None:
    desk = AlertDesk(parts.store, parts.publisher, lambda: 5_000)
    raised = await asyncio.gather(*(desk.raise_alert(_cond(at_ms=100 + i)) for i in range(8)))
    assert len({a.alert_id for a in raised}) == 1
    stored = await desk.get(raised[0].alert_id)
    assert stored.count == 8
    assert stored.state == "opened"
    opened = [p for p in await parts.published() if p.get("state") == "opened"]
    assert len(opened) == 1  # subscribers hear of it once, not on every repeat


async def test_acknowledge_close_and_reopen_are_published(parts: Parts) -> None:
    desk = AlertDesk(parts.store, parts.publisher, lambda: 9_000)
    alert = await desk.raise_alert(_cond())
    acked = await desk.acknowledge(alert.alert_id, "clerk-1", "on it")
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_at_ms) == ("acknowledged", "clerk-1", 9_000)
    assert await desk.acknowledge(alert.alert_id, "clerk-2") == acked  # idempotent
    closed = await desk.close(alert.alert_id, "clerk-1")
    assert closed.state == "closed"
    with pytest.raises(FailedPrecondition):
        await desk.acknowledge(alert.alert_id, "clerk-1")
    again = await desk.raise_alert(_cond(at_ms=20_000))
    assert (again.alert_id, again.state, again.count) == (alert.alert_id, "opened", 2)
    states = [p.get("state") for p in await parts.published()]
    assert states == ["opened", "acknowledged", "closed", "opened"]


async def test_unknown_and_malformed_ids(parts: Parts) -> None:
    desk = AlertDesk(parts.store, parts.publisher, lambda: 1)
    with pytest.raises(NotFound):
        await desk.get("al-expired-0000")
    with pytest.raises(InvalidArgument):
        await desk.acknowledge("nope", "x")


async def test_health_events_are_stored_once_per_id(parts: Parts) -> None:
    event = HealthEvent("promo:FW-BOS:SKU-1:L1", "promotion_task", "FW-BOS", 1_000, {"qty": 5, "days_left": 30})
    await parts.publisher.publish_event(event)
    await parts.publisher.publish_event(event)  # a restart decides the same again
    got = [p for p in await parts.published() if p.get("event_id") == event.event_id]
    assert len(got) == 1


async def test_an_event_for_a_named_person_also_reaches_their_subject(nats_server: EmbeddedNats) -> None:  # noqa: F811
    """A shelf list for a site's sales rep: on the site's subject as ever, and a copy on
    `<events prefix>.for.<rep>.<kind>` — each stored once however often it is published."""
    made, close = await _jetstream(nats_server)
    try:
        event = HealthEvent("shelf:c1:ST-1:out_of_stock", "out_of_stock", "ST-1", 1_000, {"items": []}, "rep-wang")
        await made.publisher.publish_event(event)
        await made.publisher.publish_event(event)
        publisher = made.publisher
        assert isinstance(publisher, JetStreamHealthPublisher)
        prefix = publisher.config.events_prefix
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            got: dict[str, list[dict[str, object]]] = {}
            for subject in (f"{prefix}.out_of_stock.ST-1", f"{prefix}.for.rep-wang.>"):
                sub = await js.subscribe(subject, stream=publisher.config.stream, ordered_consumer=True)
                got[subject] = []
                while True:
                    try:
                        msg = await sub.next_msg(timeout=0.5)
                    except (TimeoutError, nats.errors.TimeoutError):
                        break
                    got[subject].append(json.loads(msg.data))
                await sub.unsubscribe()
        finally:
            await nc.close()
        assert [(m["event_id"], m["recipient"]) for m in got[f"{prefix}.out_of_stock.ST-1"]] == [
            (event.event_id, "rep-wang")
        ]
        assert [m["event_id"] for m in got[f"{prefix}.for.rep-wang.>"]] == [event.event_id]
    finally:
        await close()
