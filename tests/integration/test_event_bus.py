"""The business-event bus on a real nats-server: journal entries written with the real
journal adapter, the publisher consuming them, events read back from the events stream.

Each test uses a namespace of its own (its own journal stream, events stream and dead
letters) on the session's server; streams are kept small, since JetStream reserves each
stream's max_bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from prometheus_client import CollectorRegistry

from adapters.nats.bus import (
    AVRO,
    JSON,
    BusConfig,
    BusMetrics,
    EventBusPublisher,
    dead_letter_stream,
    dead_letter_subject,
    decode_event,
    decode_event_avro,
    decode_event_json,
    derive_events,
    engine_bus_config,
    events_stream_config,
    schema_fingerprint,
    start_bus,
)
from adapters.nats.journal import (
    JetStreamJournal,
    JournalConfig,
    NatsLink,
    PullReader,
    engine_journal_config,
    ensure_stream,
    journal_stream_config,
)
from adapters.nats.pull import delete_consumer
from adapters.nats.server import EmbeddedNats
from engine.domain.commands import Commit, Receive
from engine.domain.events import business_events
from engine.domain.model import Finance
from engine.domain.ports import JournalEntry
from tests.nats_fixtures import journal_entry, nats_server  # noqa: F401 - a real nats-server, session-scoped

pytestmark = pytest.mark.asyncio(loop_scope="session")

MiB = 1024 * 1024
FINANCE = Finance(currency="EUR", unit_cost="4.20", unit_price="6.99", tax_rate="0.19", terms="2/10 n/30")
# Quick redelivery after a "crash"; the duplicate window stays ≥ 2 min as in production.
QUICK = {"ack_wait_s": 1.0, "fetch_wait_s": 0.05, "retry_initial_s": 0.01, "retry_max_s": 0.2, "max_bytes": 16 * MiB}


@dataclass(slots=True)
class Rig:
    namespace: str
    journal_config: JournalConfig
    bus_config: BusConfig
    link: NatsLink
    journal: JetStreamJournal
    positions: dict[str, int]
    publishers: list[EventBusPublisher]

    async def write(self, entry: JournalEntry) -> int:
        self.positions[entry.shard] = await self.journal.append(entry, self.positions.get(entry.shard, 0))
        return self.positions[entry.shard]

    async def write_batches(self, shard: str, first: int, count: int) -> None:
        for batch_seq in range(first, first + count):
            await self.write(with_finance(journal_entry(shard, batch_seq)))

    def publisher(self, cls: type[EventBusPublisher] = EventBusPublisher) -> EventBusPublisher:
        made = cls(self.link, self.journal_config, self.bus_config, BusMetrics(CollectorRegistry()))
        self.publishers.append(made)
        return made

    async def stored(self) -> list[tuple[str, dict[str, str], bytes, int]]:
        """Every message of the events stream: (subject, headers, data, stream seq), in order."""
        nc, js = await self.link.client()
        state = (await js.stream_info(self.bus_config.stream)).state
        if not state.messages:
            return []
        out: list[tuple[str, dict[str, str], bytes, int]] = []
        reader = PullReader(nc, js, self.bus_config.stream, ">", 1, self.journal_config)
        async for batch in reader.batches():
            for d in batch:
                msg = await js.get_msg(self.bus_config.stream, d.stream_seq)
                out.append((d.subject, dict(msg.headers or {}), d.data, d.stream_seq))
                if d.stream_seq >= int(state.last_seq or 0):
                    return out
        return out


def with_finance(entry: JournalEntry) -> JournalEntry:
    """The fixture batch (a receipt and a reserve) with the receipt's command: doc ref and finance."""
    receipt = entry.movements[0]
    doc_ref = f"PO-{entry.batch_seq}"
    op = Receive(receipt.request_id, receipt.sku, receipt.site, receipt.lot_id, receipt.qty, finance=FINANCE)
    op = dataclasses.replace(op, doc_ref=doc_ref)
    movements = (dataclasses.replace(receipt, doc_ref=doc_ref), *entry.movements[1:])
    return dataclasses.replace(entry, ops=(op,), movements=movements)


@pytest_asyncio.fixture(loop_scope="session")
async def rig(nats_server: EmbeddedNats) -> AsyncIterator[Rig]:  # noqa: F811
    namespace = f"bus-{uuid.uuid4().hex[:8]}"
    journal_config = dataclasses.replace(
        engine_journal_config(namespace, nats_server.url, client_name="lotwise-bus"),
        max_bytes=64 * MiB,
        read_batch=64,
    )
    link = NatsLink(journal_config)
    await link.connect()
    _, js = await link.client()
    await ensure_stream(js, journal_stream_config(journal_config))
    made = Rig(
        namespace,
        journal_config,
        engine_bus_config(namespace, nats_server.url, **QUICK),
        link,
        JetStreamJournal(link),
        {},
        [],
    )
    yield made
    for publisher in made.publishers:
        await publisher.abort()
    await link.close()


async def test_every_movement_is_one_event_per_format_in_journal_order(rig: Rig) -> None:
    await rig.write_batches("s1", 1, 3)
    await rig.write_batches("s2", 1, 2)
    await rig.write_batches("s1", 4, 1)
    publisher = rig.publisher()
    await publisher.start()
    await publisher.wait_caught_up(timeout_s=20)

    stored = await rig.stored()
    expected = await derive_events(rig.link, rig.journal_config, 1)
    assert len(expected) == 12  # 6 batches of a receipt and a reserve
    assert len(stored) == 2 * len(expected)
    for event, (json_msg, avro_msg) in zip(expected, zip(stored[::2], stored[1::2], strict=True), strict=True):
        json_subject, json_headers, json_data, _ = json_msg
        avro_subject, avro_headers, avro_data, _ = avro_msg
        assert json_subject == f"lotwise.{rig.namespace}.events.{event.kind}.site-1"
        assert avro_subject == f"lotwise.{rig.namespace}.avro.events.{event.kind}.site-1"
        assert decode_event_json(json_data) == decode_event_avro(avro_data) == event
        assert json_headers["Nats-Msg-Id"] == f"{event.event_id}:json"
        assert (json_headers["Content-Type"], avro_headers["Content-Type"]) == ("application/json", "avro/binary")
        assert json_headers["Lotwise-Event-Id"] == avro_headers["Lotwise-Event-Id"] == event.event_id
        assert avro_headers["Lotwise-Event-Kind"] == event.kind
        assert avro_headers["Lotwise-Schema"] == schema_fingerprint()
    # Journal order: shard s1's first three batches, s2's two, then s1's fourth.
    assert [e.event_id.rsplit(":", 1)[0] for e in expected[::2]] == ["s1:1", "s1:2", "s1:3", "s2:1", "s2:2", "s1:4"]
    receipt = expected[0]
    assert receipt.doc_ref == "PO-1"
    assert receipt.finance is not None
    assert (receipt.finance.currency, receipt.finance.extended_cost, receipt.finance.extended_price) == (
        "EUR",
        "42.00",
        "69.90",
    )
    assert receipt.finance.tax_amount == "13.2810"
    assert publisher.metrics.published.labels("receive", "json")._value.get() == 6
    assert (await publisher.lag()).pending_messages == 0
    await publisher.stop()


class _Crashing(EventBusPublisher):
    """Publishes normally, but after `acks_left` journal-message acks it publishes without
    acking: the moment between PubAcks and the journal ack where a crash hurts most."""

    acks_left = 2
    frozen = asyncio.Event()

    async def _send_acks(self, nc: Client, msgs: list[Msg]) -> None:
        for msg in msgs:
            if self.acks_left == 0:
                self.frozen.set()
                await asyncio.Event().wait()  # hangs here until aborted
            self.acks_left -= 1
            await super()._send_acks(nc, [msg])
            await nc.flush()


async def test_a_crashed_publisher_is_replaced_with_no_gap_and_no_duplicate(rig: Rig) -> None:
    await rig.write_batches("s1", 1, 6)
    _Crashing.frozen = asyncio.Event()
    crashing = rig.publisher(_Crashing)
    await crashing.start()
    await asyncio.wait_for(_Crashing.frozen.wait(), 20)
    await crashing.abort()  # its third journal message's events are stored, not acked
    before = await rig.stored()
    assert len(before) >= 6  # two journal messages acked, and at least the third's events

    await rig.write_batches("s1", 7, 2)
    second = rig.publisher()
    await second.start()
    await second.wait_caught_up(timeout_s=20)
    stored = await rig.stored()

    expected = await derive_events(rig.link, rig.journal_config, 1)
    ids = [(h["Lotwise-Event-Id"], h["Content-Type"]) for _, h, _, _ in stored]
    assert ids == [(e.event_id, ct) for e in expected for ct in ("application/json", "avro/binary")]
    assert [decode_event(d, h["Content-Type"]) for _, h, d, _ in stored[::2]] == expected
    assert second.metrics.skipped._value.get() >= 4  # the redelivered third message's events

    # Forget the publisher's position altogether: every journal message is delivered afresh
    # and published again; within the duplicate window the stream keeps one copy of each.
    await second.stop()
    await delete_consumer(rig.link, rig.bus_config.consumer)
    third = rig.publisher()
    await third.start()
    await third.wait_caught_up(timeout_s=20)
    assert await rig.stored() == stored
    assert third.metrics.duplicates._value.get() == len(stored)
    await third.stop()


async def test_the_events_stream_persists_without_fsync_and_a_lost_tail_is_published_again(rig: Rig) -> None:
    """The events stream is asynchronously persisted (no fsync per event): a crash of
    nats-server or the machine may lose its newest events after the bus acknowledged their
    journal messages. The next publisher sees that the stream is behind its ack floor and
    derives those events again from the journal: in order, none missing, none twice."""
    await rig.write_batches("s1", 1, 6)
    first = rig.publisher()
    await first.start()
    await first.wait_caught_up(timeout_s=20)
    await first.stop()
    _, js = await rig.link.client()
    assert (await js.stream_info(rig.bus_config.stream)).config.persist_mode == api.PersistMode.ASYNC
    whole = await rig.stored()
    assert len(whole) == 24  # 6 batches × 2 movements × 2 formats

    # What a crash leaves: the events stream holds only the events of the first two
    # journal messages and half of the third's, while the bus's consumer acked all six.
    await js.delete_stream(rig.bus_config.stream)
    await ensure_stream(js, events_stream_config(rig.bus_config))
    for subject, headers, data, _ in whole[:10]:
        await js.publish(subject, data, headers=headers)
    second = rig.publisher()
    await second.start()
    await second.wait_caught_up(timeout_s=20)
    again = await rig.stored()
    assert [(h["Lotwise-Event-Id"], h["Content-Type"], d) for _, h, d, _ in again] == [
        (h["Lotwise-Event-Id"], h["Content-Type"], d) for _, h, d, _ in whole
    ]
    assert second.metrics.skipped._value.get() == 2  # the third message's events the stream held
    # A restart with nothing lost rewinds nothing.
    await second.stop()
    third = rig.publisher()
    await third.start()
    await rig.write_batches("s1", 7, 1)
    await third.wait_caught_up(timeout_s=20)
    assert len(await rig.stored()) == 28
    assert third.metrics.skipped._value.get() == 0
    await third.stop()


async def test_an_events_stream_made_with_fsync_keeps_its_mode(rig: Rig) -> None:
    """JetStream cannot change a stream's persist mode: a stream made before asynchronous
    persistence stays as it is (the bus starts and publishes), until it is deleted."""
    _, js = await rig.link.client()
    synced = dataclasses.replace(rig.bus_config, async_persist=False)
    await ensure_stream(js, events_stream_config(synced))
    await rig.write_batches("s1", 1, 1)
    publisher = rig.publisher()
    await publisher.start()
    await publisher.wait_caught_up(timeout_s=20)
    assert len(await rig.stored()) == 4
    assert (await js.stream_info(rig.bus_config.stream)).config.persist_mode in (None, api.PersistMode.DEFAULT)
    await publisher.stop()


async def test_an_undecodable_journal_message_is_dead_lettered_and_later_ones_flow(rig: Rig) -> None:
    publisher = rig.publisher()
    await publisher.start()
    await rig.write_batches("s1", 1, 1)
    _, js = await rig.link.client()
    bad = await js.publish(rig.journal_config.subject("s1"), b"not an avro batch")
    rig.positions["s1"] = bad.seq
    await rig.write_batches("s1", 2, 1)
    await publisher.wait_caught_up(timeout_s=20)

    dead = await js.get_last_msg(dead_letter_stream(rig.journal_config), dead_letter_subject(rig.journal_config))
    assert dead.data == b"not an avro batch"
    assert dead.headers is not None
    assert dead.headers["Lotwise-Stream-Seq"] == str(bad.seq)
    assert "checksum mismatch" in dead.headers["Lotwise-Reason"]
    assert publisher.metrics.dead_letters._value.get() == 1
    assert [e.event_id for e in await derive_events(rig.link, rig.journal_config)] == [
        "s1:1:0",
        "s1:1:1",
        "s1:2:0",
        "s1:2:1",
    ]
    assert len(await rig.stored()) == 8
    await publisher.stop()


async def test_consumers_replay_from_a_stream_sequence_or_a_time(rig: Rig) -> None:
    await rig.write_batches("s1", 1, 2)
    publisher = rig.publisher()
    await publisher.start()
    await publisher.wait_caught_up(timeout_s=20)
    middle = time.time()
    await asyncio.sleep(0.05)
    await rig.write_batches("s1", 3, 2)
    await publisher.wait_caught_up(timeout_s=20)
    stored = await rig.stored()
    _, js = await rig.link.client()

    # As EVENTS.md shows it: an ordered consumer on the JSON subjects from a stream sequence.
    start_seq = stored[5][3]  # the third event's Avro copy: the JSON copies from there on
    sub = await js.subscribe(
        f"lotwise.{rig.namespace}.events.>",
        ordered_consumer=True,
        config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
    )
    replayed = [decode_event_json((await sub.next_msg(timeout=5)).data) for _ in range(5)]
    await sub.unsubscribe()
    everything = await derive_events(rig.link, rig.journal_config)
    assert replayed == everything[3:]

    # ... or from a time: the events published after `middle` are those of batches 3 and 4.
    sub = await js.subscribe(
        f"lotwise.{rig.namespace}.avro.events.>",
        ordered_consumer=True,
        config=api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_TIME,
            opt_start_time=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + f".{int(middle % 1 * 1e9):09d}Z",
        ),
    )
    replayed = [decode_event_avro((await sub.next_msg(timeout=5)).data) for _ in range(4)]
    await sub.unsubscribe()
    assert replayed == everything[4:]

    # The journal derives the same events again from any of its positions.
    third_batch_position = everything[4].stream_seq
    assert await derive_events(rig.link, rig.journal_config, third_batch_position) == everything[4:]
    assert await derive_events(rig.link, rig.journal_config, third_batch_position, limit=3) == everything[4:7]
    await publisher.stop()


async def test_start_bus_runs_the_publisher_in_one_call(nats_server: EmbeddedNats) -> None:  # noqa: F811
    namespace = f"bus-{uuid.uuid4().hex[:8]}"
    journal_config = dataclasses.replace(
        engine_journal_config(namespace, nats_server.url, client_name="lotwise-bus"), max_bytes=64 * MiB
    )
    writer = NatsLink(journal_config)
    await writer.connect()
    _, js = await writer.client()
    await ensure_stream(js, journal_stream_config(journal_config))
    journal = JetStreamJournal(writer)
    commit = Commit("req-c", "sku-1", "site.7", "hold-1", 2, doc_ref="SO-1", finance=FINANCE)
    entry = dataclasses.replace(journal_entry("s1", 1), ops=(commit,))
    entry = dataclasses.replace(entry, movements=tuple(dataclasses.replace(m, site="site.7") for m in entry.movements))
    runtime = await start_bus(
        engine_bus_config(namespace, nats_server.url, max_bytes=16 * MiB),
        journal_config,
        registry=CollectorRegistry(),
    )
    try:
        await journal.append(entry, 0)
        await runtime.publisher.wait_caught_up(timeout_s=20)
        msg = await js.get_last_msg(f"LOTWISE_EVENTS_{namespace}", f"lotwise.{namespace}.events.reserve.site%2E7")
        assert decode_event_json(msg.data) == business_events(entry, 1)[1]
    finally:
        await runtime.stop()
        await writer.close()
    assert not runtime.publisher.running


@pytest.mark.parametrize("formats", [(JSON,), (AVRO,)])
async def test_one_format_only(rig: Rig, formats: tuple[str, ...]) -> None:
    rig.bus_config = dataclasses.replace(rig.bus_config, formats=formats)
    await rig.write_batches("s1", 1, 2)
    publisher = rig.publisher()
    await publisher.start()
    await publisher.wait_caught_up(timeout_s=20)
    stored = await rig.stored()
    assert len(stored) == 4
    assert {h["Content-Type"] for _, h, _, _ in stored} == {"application/json" if formats == (JSON,) else "avro/binary"}
    await publisher.stop()


async def test_a_long_journal_is_published_whole(rig: Rig) -> None:
    """Many journal messages, several pulls: every event of every one is published once
    (the rate is measured by bench/followers.py, not asserted here)."""
    batches = 400
    for batch_seq in range(1, batches + 1):
        await rig.write(with_finance(journal_entry("s1", batch_seq)))
    publisher = rig.publisher()
    await publisher.start()
    await publisher.wait_caught_up(timeout_s=60, poll_s=0.01)
    publishes = 2 * 2 * batches
    assert publisher.published_events == publishes
    await publisher.stop()


async def test_publishes_nobody_stores_stall_the_bus_until_the_stream_is_back(rig: Rig) -> None:
    # The events stream vanishes under a running publisher: its publishes are answered by
    # no stream (or not at all), so no window is confirmed, nothing is acked and the bus
    # retries; once the stream is back every event is stored once, in journal order.
    publisher = rig.publisher()
    await publisher.start()
    await rig.write_batches("s1", 1, 2)
    await publisher.wait_caught_up(timeout_s=20)
    _, js = await rig.link.client()
    await js.delete_stream(rig.bus_config.stream)
    await rig.write_batches("s1", 3, 3)
    deadline = time.monotonic() + 20
    while not (await publisher.lag()).stalled:
        assert time.monotonic() < deadline, "the publisher never noticed its publishes went unstored"
        await asyncio.sleep(0.05)
    assert publisher.metrics.failures._value.get() >= 1
    await ensure_stream(js, events_stream_config(rig.bus_config))
    await publisher.wait_caught_up(timeout_s=30)
    stored = await rig.stored()
    expected = await derive_events(rig.link, rig.journal_config, 1)
    # The first two batches' events went with the old stream; the rest arrive once each.
    later = [e for e in expected if e.stream_seq >= 3]
    assert [h["Lotwise-Event-Id"] for _, h, _, _ in stored] == [e.event_id for e in later for _ in (JSON, AVRO)]
    assert not (await publisher.lag()).stalled
    await publisher.stop()
