"""The business-event bus: journal stream → business events on NATS (DESIGN.md §9, §10).

Every journaled movement leaves Lotwise as one business event (engine.domain.events),
published on `<prefix>.<kind>.<site>` as JSON and/or on `<avro_prefix>.<kind>.<site>` as
schemaless Avro (schemas/business_event.avsc). The catalogue — subjects, headers, fields,
kinds, guarantees, replay — is adapters/nats/EVENTS.md.

The publisher is a sink of the journal follower (adapters.nats.follower), as history is:
a durable pull consumer (`lotwise-bus`) of the journal stream with explicit acks. For each
fetched batch of journal messages, in journal order: decode them (undecodable: to the
bus's dead-letter stream with the reason, then acked — §12), derive their events, publish
every event in every format with asynchronous JetStream publishes (bounded in flight),
wait for all their PubAcks, and only then ack the journal messages. A crash anywhere
loses nothing: unacked journal messages come back, and their events are published again
— except that nothing is stored twice:
1. `Nats-Msg-Id = <event_id>:<format>`: the events stream drops a republished event
   within its duplicate window;
2. the publisher knows the last event the stream holds (read from the stream at start,
   then kept up to date from the PubAcks): events of a redelivered journal message up to
   that point are skipped, so even a restart after a long outage doubles nothing.

Order. Publishes go out in journal order over one connection, and a server stores one
connection's messages in the order it receives them; so after a failure the events stored
are a prefix of those sent, and the retry sends the rest, in order, again (duplicates of
the stored ones are dropped by 1.). Only a server refusing one message while storing a
later one could break the order; with this stream's limits (discard old, no per-subject
limits, events far below the size limit) nothing refuses one event and not the next.

When NATS refuses or does not confirm publishes, the follower keeps what it holds,
retries with capped exponential backoff (the retry skips what was confirmed), tells
JetStream it is still working on the held journal messages and fetches nothing more:
bounded, and it catches up afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import fastavro
import orjson
import structlog
from fastavro.schema import fingerprint, to_parsing_canonical_form
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from adapters.nats.codec import decode_entry
from adapters.nats.event_avro import event_avro
from adapters.nats.follower import DELAY_BUCKETS_S, FollowerConfig, JournalFollower, LoopTurns
from adapters.nats.journal import JournalConfig, NatsLink, PullReader, ensure_stream
from adapters.nats.outbound import check_payloads, header_block, send_commands
from adapters.nats.pull import consumer_positions
from engine.domain.events import (
    BusinessEvent,
    EventFinance,
    LotDates,
    Place,
    TransferEvent,
    business_events,
    event_finance,
    ops_by_request,
)
from engine.domain.model import External, QuantKey
from engine.domain.ports import EntryRejected, FollowedEntry, JournalEntry, JournalUnavailable

log = structlog.get_logger("lotwise.bus")

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
DAY_S = 86_400.0

# 2 adds the provenance fields (source, confidence, business_at_ms); 3 the typed finance
# attributes (customer_tier, sales_channel, tax_attribute, gift, return_of, to_site, to_company)
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # an older event reads with the later fields at their defaults
SCHEMA_DIR = Path(__file__).with_name("schemas")
SCHEMA_PATH = SCHEMA_DIR / "business_event.avsc"
JSON, AVRO = "json", "avro"
FORMATS = (JSON, AVRO)  # the order an event's formats are published in
CONTENT_TYPES = {JSON: "application/json", AVRO: "avro/binary"}

ERR_PERSIST_MODE_FIXED = 10052  # update_stream: a stream's persist mode cannot change
H_CONTENT_TYPE = "Content-Type"
H_EVENT_ID = "Lotwise-Event-Id"
H_EVENT_KIND = "Lotwise-Event-Kind"
H_SCHEMA = "Lotwise-Schema"  # CRC-64-AVRO fingerprint (hex) of the schema's canonical form
H_JOURNAL_POSITION = "Lotwise-Journal-Position"  # <journal stream seq>:<index in the batch>

# Characters a subject token keeps as they are; everything else is %XX (UTF-8, upper-case hex).
_TOKEN_SAFE = re.compile(r"[A-Za-z0-9_\-:@#+]")
# Namespaces whose prefixes would overlap another namespace's subjects (see engine_bus_config).
_RESERVED_TAGS = frozenset({"events", "avro", "journal", "dlq", "transfers", "replenish"})


# ---- the schema and the encodings ----


@functools.cache
def schema(version: int = SCHEMA_VERSION) -> Any:
    path = SCHEMA_PATH if version == SCHEMA_VERSION else SCHEMA_DIR / f"business_event.v{version}.avsc"
    return fastavro.parse_schema(json.loads(path.read_text()))


@functools.cache
def schema_fingerprint() -> str:
    """CRC-64-AVRO of the schema's parsing canonical form, hex: what the Lotwise-Schema
    header carries, so a consumer can tell which schema a message was written with."""
    return str(fingerprint(to_parsing_canonical_form(schema()), "CRC-64-AVRO"))


def event_record(e: BusinessEvent) -> dict[str, Any]:
    """The event as a record with the Avro schema's field names (the JSON keys too)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": e.event_id,
        "kind": e.kind,
        "sku": e.sku,
        "site": e.site,
        "seq": e.seq,
        "lot_id": e.lot_id,
        "qty": e.qty,
        "from": _slots(e.from_),
        "to": _slots(e.to),
        "held_delta": e.held_delta,
        "hold_id": e.hold_id,
        "request_id": e.request_id,
        "doc_ref": e.doc_ref,
        "at_ms": e.at_ms,
        "lot": None if e.lot is None else _slots(e.lot),
        "hold_expires_at_ms": e.hold_expires_at_ms,
        "shard": e.shard,
        "batch_seq": e.batch_seq,
        "index": e.index,
        "stream_seq": e.stream_seq,
        "finance": None if e.finance is None else _slots(e.finance),
        "source": e.source,
        "confidence": e.confidence,
        "business_at_ms": e.business_at_ms,
    }


def event_from_record(r: dict[str, Any]) -> BusinessEvent:
    """The inverse of event_record (of any readable version: a version-1 record lacks the
    provenance, which then takes its defaults); raises ValueError on another version."""
    if r.get("schema_version") not in READABLE_VERSIONS:
        raise ValueError(f"unknown business event schema version {r.get('schema_version')!r}")
    try:
        lot, finance = r["lot"], r["finance"]
        return BusinessEvent(
            event_id=r["event_id"],
            kind=r["kind"],
            sku=r["sku"],
            site=r["site"],
            seq=r["seq"],
            lot_id=r["lot_id"],
            qty=r["qty"],
            from_=Place(**r["from"]),
            to=Place(**r["to"]),
            held_delta=r["held_delta"],
            hold_id=r["hold_id"],
            request_id=r["request_id"],
            doc_ref=r["doc_ref"],
            at_ms=r["at_ms"],
            lot=None if lot is None else LotDates(**lot),
            hold_expires_at_ms=r["hold_expires_at_ms"],
            shard=r["shard"],
            batch_seq=r["batch_seq"],
            index=r["index"],
            stream_seq=r["stream_seq"],
            finance=None if finance is None else EventFinance(**finance),
            source=r.get("source", ""),
            confidence=r.get("confidence", 0.0),
            business_at_ms=r.get("business_at_ms", 0),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a business event: {type(exc).__name__}: {exc}") from None


def _slots(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def encode_event_json(e: BusinessEvent) -> bytes:
    """UTF-8 JSON object; keys are the Avro field names; money stays decimal strings."""
    return orjson.dumps(event_record(e))


def decode_event_json(data: bytes) -> BusinessEvent:
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return event_from_record(record)


def encode_event_avro(e: BusinessEvent) -> bytes:
    """Schemaless Avro body (no container, no header): the schema is the catalogue's file,
    named by the message's Lotwise-Schema header."""
    return event_avro(event_record(e))


def decode_event_avro(data: bytes) -> BusinessEvent:
    version = _first_int(data)
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unknown business event schema version {version}")
    try:
        record = fastavro.schemaless_reader(io.BytesIO(data), schema(version))
    except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"undecodable business event: {type(exc).__name__}: {exc}") from None
    return event_from_record(record)  # type: ignore[arg-type]


def decode_event(data: bytes, content_type: str) -> BusinessEvent:
    """Decode a message body by its Content-Type header."""
    if content_type == CONTENT_TYPES[AVRO]:
        return decode_event_avro(data)
    if content_type == CONTENT_TYPES[JSON]:
        return decode_event_json(data)
    raise ValueError(f"unknown content type {content_type!r}")


def _first_int(data: bytes) -> int:
    """The first field (schema_version) as Avro writes it: a zig-zag varint."""
    shift, value = 0, 0
    for byte in data[:5]:
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
    raise ValueError("truncated schema version")


# ---- subjects ----


@functools.lru_cache(maxsize=4_096)  # kinds and sites repeat: escape each once
def subject_token(text: str) -> str:
    """`text` as one subject token, reversibly: letters, digits and `_-:@#+` stay, every
    other character (`.` above all: NATS splits tokens on it; also `%`, `*`, `>`, spaces)
    becomes %XX per UTF-8 byte; the empty string is `%`. "store.12" → "store%2E12"."""
    if not text:
        return "%"
    return "".join(c if _TOKEN_SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def token_text(token: str) -> str:
    """The inverse of subject_token."""
    if token == "%":
        return ""
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(token[i].encode())
            i += 1
    return out.decode()


# ---- configuration ----


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Where the events go and the publisher's bounds. Frozen: built once at start-up."""

    url: str = "nats://127.0.0.1:4222"  # the NATS of the events stream: the journal's (see start_bus)
    stream: str = "LOTWISE_EVENTS_lotwise"
    subject_prefix: str = "lotwise.events"  # JSON: <subject_prefix>.<kind>.<site>
    avro_prefix: str = "lotwise.avro.events"  # Avro: <avro_prefix>.<kind>.<site>
    formats: tuple[str, ...] = FORMATS  # which encodings are published, in FORMATS order
    replicas: int = 1
    # The stream is a copy the journal can always derive again (derive_events; or reset
    # the `lotwise-bus` consumer), so it may forget its oldest events: discard OLD, bounded
    # by age and size, and never stops the publisher for lack of room.
    # No fsync per event (the journal keeps `sync_interval: always`): a single-replica events
    # stream persists asynchronously (nats-server ≥ 2.12, ADR-56), so storing an event costs
    # nats-server no fsync and the journal's fsyncs, on the order path, do not queue behind
    # the events'. What a crash of nats-server or the machine loses of the newest events is
    # published again from the journal when the bus starts (EventBusPublisher.start: the
    # rewind). False: fsync every event as the journal does (bench/README.md, "Followers
    # that cost little").
    async_persist: bool = True
    max_age_s: float = 7 * DAY_S
    max_bytes: int = 2 * GiB  # ~1.5 KiB per event in both formats: about 1.4 million events
    max_msg_size: int = 64 * KiB  # one event is well under 2 KiB
    duplicate_window_s: float = 600.0  # ≥ 2 min and well above ack_wait_s: a redelivery lands inside it
    consumer: str = "lotwise-bus"  # the durable consumer on the journal stream
    fetch_batch: int = 256  # journal messages per pull
    fetch_wait_s: float = 0.2  # a pull with nothing to deliver ends after this
    # How long journal messages may gather before their events go out: one pull and one
    # window of publishes per 50 ms instead of one per journal append (events stay ≤ ~50 ms
    # behind the journal; bench/README.md, "Followers that cost little").
    batch_max_ms: float = 50.0
    busy_batch_max_ms: float = 250.0  # while the journal is busy: a fifth of the pulls and windows
    ack_wait_s: float = 30.0  # JetStream redelivers a journal message unacked this long
    max_ack_pending: int = 4_000  # journal messages delivered and not yet acked, at most
    max_in_flight: int = 1_024  # publishes awaiting their PubAck, at most
    publish_timeout_s: float = 5.0  # for one PubAck
    retry_initial_s: float = 0.05  # backoff between failed attempts: doubles up to retry_max_s
    retry_max_s: float = 5.0
    lag_interval_s: float = 1.0  # how often the lag gauges are refreshed
    stop_timeout_s: float = 10.0  # a stop publishes and acks what it holds for at most this long
    dead_letter_max_bytes: int = 64 * MiB

    def __post_init__(self) -> None:
        formats = self.formats
        if not formats or any(f not in FORMATS for f in formats) or len(set(formats)) != len(formats):
            raise ValueError(f"BusConfig.formats must be one or both of {FORMATS}, got {self.formats!r}")
        for name in ("fetch_batch", "max_ack_pending", "max_in_flight", "max_bytes", "max_msg_size", "replicas"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BusConfig.{name} must be positive")
        for name in ("subject_prefix", "avro_prefix"):
            prefix = getattr(self, name)
            if not prefix or any(not t or set(t) & set("*> \t\r\n") for t in prefix.split(".")):
                raise ValueError(f"bad BusConfig.{name} {prefix!r}")
        if self.subject_prefix == self.avro_prefix:
            raise ValueError("BusConfig.subject_prefix and avro_prefix must differ")
        if self.duplicate_window_s < max(120.0, 2 * self.ack_wait_s):
            raise ValueError("BusConfig.duplicate_window_s must be ≥ 120 s and ≥ 2 × ack_wait_s")

    def follower_config(self) -> FollowerConfig:
        """The journal follower's bounds: what gathers within batch_max_ms (at most a pull's
        worth) is one batch, published at once (windows of max_in_flight publishes)."""
        return FollowerConfig(
            consumer=self.consumer,
            dead_letter_tag=BUS_DEAD_LETTER_TAG,
            description="Lotwise business-event bus",
            batch_max_messages=self.fetch_batch,
            batch_max_ms=self.batch_max_ms,
            busy_batch_max_ms=self.busy_batch_max_ms,
            fetch_batch=self.fetch_batch,
            fetch_wait_s=self.fetch_wait_s,
            ack_wait_s=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
            retry_initial_s=self.retry_initial_s,
            retry_max_s=self.retry_max_s,
            lag_interval_s=self.lag_interval_s,
            stop_timeout_s=self.stop_timeout_s,
            dead_letter_max_bytes=self.dead_letter_max_bytes,
        )

    @property
    def ordered_formats(self) -> tuple[str, ...]:
        return tuple(f for f in FORMATS if f in self.formats)

    def subject(self, fmt: str, kind: str, site: str) -> str:
        prefix = self.subject_prefix if fmt == JSON else self.avro_prefix
        return f"{prefix}.{subject_token(kind)}.{subject_token(site)}"

    def wildcard(self, fmt: str = JSON) -> str:
        return f"{self.subject_prefix if fmt == JSON else self.avro_prefix}.>"


def engine_bus_config(namespace: str, nats_url: str, replicas: int = 1, **options: Any) -> BusConfig:
    """The event bus of one engine namespace (its journal: engine_journal_config).

    Namespace "lotwise" (the default) publishes on `lotwise.events.>` and
    `lotwise.avro.events.>`; another namespace on `lotwise.<tag>.events.>` and
    `lotwise.<tag>.avro.events.>`, tag = the namespace with characters other than
    letters, digits, `_` and `-` replaced by `_`. The tags events, avro, journal and dlq
    are refused: their subjects would overlap the default namespace's events, or a
    journal's, dead letters' subjects."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", namespace)
    if tag == "lotwise":
        prefix, avro_prefix = "lotwise.events", "lotwise.avro.events"
    elif tag in _RESERVED_TAGS:
        raise ValueError(f"namespace {namespace!r}: its event subjects would overlap others; choose another name")
    else:
        prefix, avro_prefix = f"lotwise.{tag}.events", f"lotwise.{tag}.avro.events"
    return BusConfig(
        url=nats_url,
        stream=f"LOTWISE_EVENTS_{tag}",
        subject_prefix=prefix,
        avro_prefix=avro_prefix,
        replicas=replicas,
        **options,
    )


def events_stream_config(config: BusConfig) -> api.StreamConfig:
    """Both prefixes in one stream, so one sequence orders all events (every limit explicit)."""
    return api.StreamConfig(
        name=config.stream,
        description="Lotwise business events (JSON and Avro), derived from the journal in journal order",
        subjects=[config.wildcard(JSON), config.wildcard(AVRO)],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_age=config.max_age_s,
        max_bytes=config.max_bytes,
        max_msgs=-1,
        max_msgs_per_subject=-1,
        max_msg_size=config.max_msg_size,
        num_replicas=config.replicas,
        duplicate_window=config.duplicate_window_s,
        allow_direct=True,  # consumers may get single events by sequence cheaply
        allow_rollup_hdrs=False,
        # Replicated streams have no asynchronous mode (ADR-56): they keep the server's sync.
        persist_mode=api.PersistMode.ASYNC if config.async_persist and config.replicas == 1 else None,
    )


BUS_DEAD_LETTER_TAG = "bus"  # its dead letters: <journal>_BUS_DLQ on lotwise.dlq.bus.<journal>


def dead_letter_stream(journal: JournalConfig) -> str:
    return f"{journal.stream}_{BUS_DEAD_LETTER_TAG.upper()}_DLQ"


def dead_letter_subject(journal: JournalConfig) -> str:
    # Outside the journal's and the events' subject spaces: neither stream may capture it.
    return f"lotwise.dlq.{BUS_DEAD_LETTER_TAG}.{journal.stream}"


# ---- outgoing messages and publishing them in order ----


class Outgoing(NamedTuple):
    """One event in one format, ready to publish: its HPUB frame but for the reply subject
    (given per window) is built once, with the message."""

    subject: str
    payload: bytes
    kind: str
    fmt: str
    mark: tuple[int, int, int]  # (journal stream seq, index, format rank): grows in publish order
    event_id: str
    position: str  # the Lotwise-Journal-Position header
    tail: bytes  # the header block, the payload and the closing CRLF
    header_size: int  # of the header block

    @property
    def headers(self) -> dict[str, str]:
        """The message's headers, by name (the frame carries them as bytes)."""
        return _headers(self.event_id, self.kind, self.fmt, schema_fingerprint(), self.position)

    def command(self, reply: str) -> bytes:
        """The HPUB command `Client.publish(subject, payload, reply, headers)` sends."""
        total = self.header_size + len(self.payload)
        return f"HPUB {self.subject} {reply} {self.header_size} {total}\r\n".encode() + self.tail


def outgoing(events: Sequence[BusinessEvent], config: BusConfig) -> list[Outgoing]:
    """Every event in every configured format, in publish order."""
    return _messages([event_record(e) for e in events], config)


def entry_outgoing(entry: JournalEntry, stream_seq: int, config: BusConfig) -> list[Outgoing]:
    """`outgoing(business_events(entry, stream_seq), config)`, the same messages byte for
    byte, without an event object per movement (event_records)."""
    return _messages(event_records(entry, stream_seq), config)


def _messages(records: list[dict[str, Any]], config: BusConfig) -> list[Outgoing]:
    """Each record in each configured format: the body, the subject and the frame.

    The bus's cost per movement is here (bench/README.md, "Followers that cost little"):
    one record per event serves both formats, Avro is written by a writer made for the
    schema (event_avro: fastavro's bytes), subjects are built once per (prefix, kind,
    site), and the header block is one string per message."""
    formats = config.ordered_formats
    fingerprint = schema_fingerprint()
    out: list[Outgoing] = []
    for r in records:
        event_id, kind, site = r["event_id"], r["kind"], r["site"]
        stream_seq, index = r["stream_seq"], r["index"]
        position = f"{stream_seq}:{index}"
        plain = not _LINE_BREAK.search(event_id) and not _LINE_BREAK.search(kind)
        for fmt in formats:
            if fmt == JSON:
                payload, prefix = orjson.dumps(r), config.subject_prefix
            else:
                payload, prefix = event_avro(r), config.avro_prefix
            if plain:  # what header_block builds for these six headers, in one string
                block = (
                    f"NATS/1.0\r\nNats-Msg-Id: {event_id}:{fmt}\r\nContent-Type: {CONTENT_TYPES[fmt]}\r\n"
                    f"Lotwise-Event-Id: {event_id}\r\nLotwise-Event-Kind: {kind}\r\n"
                    f"Lotwise-Schema: {fingerprint}\r\nLotwise-Journal-Position: {position}\r\n\r\n"
                ).encode()
            else:  # a shard or kind with a line break: the headers' own rule (header_value)
                block = header_block(_headers(event_id, kind, fmt, fingerprint, position))
            mark = (stream_seq, index, _RANKS[fmt])
            tail = b"".join((block, payload, b"\r\n"))
            out.append(
                Outgoing(_subject(prefix, kind, site), payload, kind, fmt, mark, event_id, position, tail, len(block))
            )
    return out


_LINE_BREAK = re.compile(r"[\r\n]")
_RANKS = {fmt: rank for rank, fmt in enumerate(FORMATS)}


def _headers(event_id: str, kind: str, fmt: str, fingerprint: str, position: str) -> dict[str, str]:
    return {
        api.Header.MSG_ID.value: f"{event_id}:{fmt}",
        H_CONTENT_TYPE: CONTENT_TYPES[fmt],
        H_EVENT_ID: event_id,
        H_EVENT_KIND: kind,
        H_SCHEMA: fingerprint,
        H_JOURNAL_POSITION: position,
    }


@functools.lru_cache(maxsize=8_192)  # (prefix, kind, site) repeat: one subject each
def _subject(prefix: str, kind: str, site: str) -> str:
    return f"{prefix}.{subject_token(kind)}.{subject_token(site)}"


def event_records(entry: JournalEntry, stream_seq: int = 0) -> list[dict[str, Any]]:
    """`[event_record(e) for e in business_events(entry, stream_seq)]`, equal value for
    value, built straight from the movements: no event, place or lot object per movement,
    and a command's finance worked out once per quantity for all its movements.
    (tests/unit/test_event_avro.py holds the two equal for any entry.)"""
    ops = ops_by_request(entry.ops)
    finances: dict[tuple[int, int], dict[str, Any] | None] = {}
    shard, batch_seq = entry.shard, entry.batch_seq
    id_prefix = f"{shard}:{batch_seq}:"  # engine.domain.events.event_id
    records: list[dict[str, Any]] = []
    for index, m in enumerate(entry.movements):
        finance = getattr(ops.get((m.sku, m.site, m.request_id)), "finance", None)
        amounts = None
        if finance is not None:
            key = (id(finance), m.qty)  # the op outlives this loop, so its id is its own
            if key not in finances:
                finances[key] = _slots(event_finance(finance, m.qty))
            amounts = finances[key]
        lot, provenance = m.lot, m.provenance
        records.append(
            {
                "schema_version": SCHEMA_VERSION,
                "event_id": f"{id_prefix}{index}",
                "kind": m.kind.value,
                "sku": m.sku,
                "site": m.site,
                "seq": m.seq,
                "lot_id": m.lot_id,
                "qty": m.qty,
                "from": _place_record(m.src),
                "to": _place_record(m.dst),
                "held_delta": m.held_delta,
                "hold_id": m.hold_id,
                "request_id": m.request_id,
                "doc_ref": m.doc_ref,
                "at_ms": m.at_ms,
                "lot": None
                if lot is None
                else {
                    "received_at_ms": lot.received_at_ms,
                    "expires_at_ms": lot.expires_at_ms,
                    "opened_at_ms": lot.opened_at_ms,
                },
                "hold_expires_at_ms": m.expires_at_ms,
                "shard": shard,
                "batch_seq": batch_seq,
                "index": index,
                "stream_seq": stream_seq,
                "finance": amounts,
                "source": "" if provenance is None else provenance.source,
                "confidence": 0.0 if provenance is None else provenance.confidence,
                "business_at_ms": 0 if provenance is None else provenance.business_at_ms,
            }
        )
    return records


def _place_record(bucket: QuantKey | External) -> dict[str, str]:
    """engine.domain.events.place as its record."""
    if isinstance(bucket, QuantKey):
        return {"external": "", "bin": bucket.bin, "status": bucket.status, "owner": bucket.owner}
    return {"external": bucket.value, "bin": "", "status": "", "owner": ""}


def _avro_body(record: dict[str, Any]) -> bytes:
    """fastavro's writer: the reference event_avro is held to (tests), and older versions."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema(), record)
    return out.getvalue()


class BusUnavailable(JournalUnavailable):
    """NATS did not confirm every publish: the events are not all stored (retry them)."""


class _Incomplete(Exception):
    def __init__(self, done: int, cause: BaseException) -> None:
        super().__init__(f"{done} publishes confirmed, then {type(cause).__name__}: {cause}")
        self.done, self.cause = done, cause


class AckInbox:
    """Where the PubAcks of the bus's publishes come back: one wildcard subscription per
    connection, each publish's reply subject `<inbox>.<window>.<index>`.

    nats-py's `publish_async` pays, per message, a future, a semaphore wait under
    `wait_for`, a timer and a PubAck dataclass; most of the bus's own CPU went there
    (bench/README.md, "Followers that cost little"). Here a window of publishes costs one
    future: the replies are kept as bytes and read in order once the window is complete."""

    def __init__(self) -> None:
        self._nc: Any = None
        self._sub: Any = None
        self._base = ""
        self._window = 0
        self._replies: list[bytes | None] = []
        self._missing = 0
        self._complete: asyncio.Future[None] | None = None

    async def open_window(self, nc: Any, size: int) -> str:
        """Start a window of `size` publishes; returns the reply prefix (`<prefix><index>`)."""
        if self._nc is not nc:  # a new connection: its own subscription
            self._base = nc.new_inbox()
            self._sub = await nc.subscribe(f"{self._base}.*.*", cb=self._reply)
            self._nc = nc
        self._window += 1
        self._replies = [None] * size
        self._missing = size
        self._complete = asyncio.get_running_loop().create_future()
        return f"{self._base}.{self._window}."

    async def _reply(self, msg: Any) -> None:
        _, window, index = msg.subject.rsplit(".", 2)
        if int(window) != self._window or self._complete is None:
            return  # a late answer to a window given up on
        i = int(index)
        if self._replies[i] is None:
            # No body: a status message (503, no stream captured the subject) — a failure.
            self._replies[i] = msg.data or b"{}"
            self._missing -= 1
            if not self._missing and not self._complete.done():
                self._complete.set_result(None)

    async def wait(self, timeout_s: float) -> list[bytes | None]:
        """The window's replies in publish order (None: none came within `timeout_s`)."""
        assert self._complete is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._complete), timeout_s)
        replies, self._complete = self._replies, None
        return replies


async def publish_in_order(
    nc: Any,
    inbox: AckInbox,
    outs: Sequence[Outgoing],
    config: BusConfig,
    on_ack: Callable[[Outgoing, bool], None] | None = None,
) -> int:
    """Publish `outs` in order, in windows of at most `max_in_flight` awaiting their PubAck,
    and wait for every PubAck; `on_ack(out, duplicate)` sees them in order. Returns the
    number of duplicates. Raises _Incomplete(done) when only the first `done` were
    confirmed (the rest are retried)."""
    done = duplicates = 0
    try:
        for start in range(0, len(outs), config.max_in_flight):
            window = outs[start : start + config.max_in_flight]
            prefix = await inbox.open_window(nc, len(window))
            # The window's publishes in one call (outbound: what nc.publish sends, built
            # and queued once per window instead of once per message).
            check_payloads(nc, (o.payload for o in window))
            await send_commands(nc, b"".join([o.command(f"{prefix}{i}") for i, o in enumerate(window)]))
            replies = await inbox.wait(config.publish_timeout_s)
            for out, reply in zip(window, replies, strict=True):
                duplicate = check_puback(out, reply, config.stream)
                duplicates += duplicate
                if on_ack is not None:
                    on_ack(out, duplicate)
                done += 1
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise _Incomplete(done, exc) from exc
    return duplicates


@functools.lru_cache(maxsize=64)
def _plain_puback(stream: str) -> bytes:
    """How nats-server's PubAck of a newly stored message of `stream` begins."""
    return b'{"stream":' + orjson.dumps(stream) + b',"seq":'


def check_puback(out: Outgoing, reply: bytes | None, stream: str) -> bool:
    """Whether the stored event is a duplicate; raises unless `reply` is a PubAck of `stream`."""
    if reply is None:
        raise TimeoutError(f"no PubAck for {out.subject}")
    plain = _plain_puback(stream)
    if reply.startswith(plain) and reply.endswith(b"}") and reply[len(plain) : -1].isdigit():
        return False  # {"stream":"<stream>","seq":<n>} and nothing else: stored, not a duplicate
    try:
        ack = orjson.loads(reply)
    except orjson.JSONDecodeError:
        raise BusUnavailable(f"{out.subject}: not a PubAck: {reply[:200]!r}") from None
    if "error" in ack or "stream" not in ack:
        raise BusUnavailable(f"{out.subject} not stored: {ack.get('error', 'no stream answered')}")
    if ack["stream"] != stream:
        raise BusUnavailable(f"{out.subject} is captured by stream {ack['stream']}, not {stream}")
    return bool(ack.get("duplicate"))


# ---- metrics ----


class BusMetrics:
    """Prometheus metrics of the publisher. Pass a fresh CollectorRegistry in tests."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.published = Counter(
            "lotwise_bus_events_published",
            "Business events published (PubAck received), by kind and format",
            ["kind", "format"],
            registry=registry,
        )
        self.duplicates = Counter(
            "lotwise_bus_duplicates", "Publishes the events stream dropped as duplicates", registry=registry
        )
        self.skipped = Counter(
            "lotwise_bus_redelivered_skipped",
            "Events of redelivered journal messages that were published already",
            registry=registry,
        )
        self.failures = Counter("lotwise_bus_publish_failures", "Failed publish attempts", registry=registry)
        self.dead_letters = Counter(
            "lotwise_bus_dead_letters", "Journal messages sent to the bus dead letters", registry=registry
        )
        self.lag_messages = Gauge(
            "lotwise_bus_lag_messages", "Journal messages whose events are not yet acknowledged", registry=registry
        )
        self.stream_position = Gauge(
            "lotwise_bus_journal_position", "Last position of the journal stream", registry=registry
        )
        self.acked_position = Gauge(
            "lotwise_bus_acked_position", "Journal position up to which every event is published", registry=registry
        )
        self.delay = Histogram(
            "lotwise_bus_delay_seconds",
            "From journal append to its events acknowledged",
            buckets=DELAY_BUCKETS_S,
            registry=registry,
        )


@functools.cache
def default_bus_metrics() -> BusMetrics:
    """The process-wide publisher metrics on the default registry (created once)."""
    return BusMetrics(REGISTRY)


# ---- the publisher: a sink of the journal follower ----


class EventBusSink:
    """Publishes the business events of the journal batches the follower hands it (a
    FollowerSink), in journal order, and returns once NATS confirmed every one of them."""

    name = "event bus"

    def __init__(self, link: NatsLink, config: BusConfig, metrics: BusMetrics) -> None:
        self._link = link
        self.config = config
        self.metrics = metrics
        self._mark: tuple[int, int, int] = (0, 0, -1)  # the newest event the events stream holds
        self._ever_stored = False  # the events stream has stored an event at some time (open)
        self._rewound = False  # the follower was rewound (lost_from): skip what the stream holds
        self._inbox = AckInbox()
        self.published_events = 0  # PubAcks, every format counted
        self._published: dict[tuple[str, str], int] = {}  # this batch's, by (kind, format): _count_published

    async def open(self) -> None:
        """Make sure the events stream exists and learn the newest event it holds."""
        _, js = await self._link.client()
        wanted = events_stream_config(self.config)
        try:
            await ensure_stream(js, wanted)
        except APIError as exc:
            if exc.err_code != ERR_PERSIST_MODE_FIXED:
                raise
            # A stream made before asynchronous persistence keeps its mode (JetStream cannot
            # change it); deleting the events stream makes it anew (EVENTS.md, "Replay").
            known = (await js.stream_info(self.config.stream)).config.persist_mode
            log.warning("events stream keeps its persistence mode", events=self.config.stream, mode=str(known))
            await ensure_stream(js, replace(wanted, persist_mode=known))
        self._mark = await _stored_mark(js, self.config.stream)
        self._ever_stored = int((await js.stream_info(self.config.stream)).state.last_seq or 0) > 0
        log.info("event bus sink open", events=self.config.stream, mark=self._mark)

    def lost_from(self, acked_position: int) -> int:
        """The journal position to derive events again from, because the events stream
        may have lost its newest ones (0: nothing to do). `acked_position` is the bus's ack
        floor on the journal: every event up to it was confirmed once, but an asynchronously
        persisted stream loses what it had not flushed when nats-server or the machine
        crashed. From the newest stored event's journal message on, everything is derived
        again; events up to that one are skipped (`_outgoing`), so nothing is stored twice.
        A stream whose events all aged out (it stored some once) has lost nothing."""
        if self._mark[0] > 0:
            lost_from = self._mark[0] if acked_position > self._mark[0] else 0
        else:
            lost_from = 1 if acked_position > 0 and not self._ever_stored else 0
        self._rewound = lost_from > 0
        return lost_from

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        outs = await self._outgoing(entries)
        if not outs:
            return
        nc, _ = await self._link.client()
        try:
            duplicates = await publish_in_order(nc, self._inbox, outs, self.config, self._on_ack)
        except _Incomplete as exc:  # transient: the follower retries what is not confirmed
            raise BusUnavailable(f"{self.config.stream}: {exc}") from exc.cause
        finally:
            self._count_published()
        self.metrics.duplicates.inc(duplicates)

    async def _outgoing(self, entries: tuple[FollowedEntry, ...]) -> list[Outgoing]:
        """The batch's events, in journal order; the loop gets a turn every couple of ms of
        deriving (a busy batch carries thousands of movements; the order path shares the loop)."""
        outs: list[Outgoing] = []
        turns = LoopTurns()
        for followed in entries:
            await turns.maybe()
            try:
                fresh = entry_outgoing(followed.entry, followed.position, self.config)
            except Exception as exc:  # an entry no event can be made of: a bug, but not one to stop on
                raise EntryRejected(
                    followed.position, f"cannot derive business events: {type(exc).__name__}: {exc}"
                ) from exc
            if followed.redelivered or (self._rewound and fresh and fresh[0].mark <= self._mark):
                # A previous attempt may have published some or all of its events (a
                # redelivery, or a rewind after a crash: lost_from): those up to the stream's
                # newest are skipped (publish order = mark order).
                kept = [o for o in fresh if o.mark > self._mark]
                self.metrics.skipped.inc(len(fresh) - len(kept))
                fresh = kept
            outs.extend(fresh)
        return outs

    def _on_ack(self, out: Outgoing, duplicate: bool) -> None:
        """A PubAck, in publish order: the event is stored."""
        self._mark = max(self._mark, out.mark)
        if not duplicate:  # duplicates are counted apart (metrics.duplicates)
            self.published_events += 1
            key = (out.kind, out.fmt)
            self._published[key] = self._published.get(key, 0) + 1

    def _count_published(self) -> None:
        """The batch's PubAcks into the metrics: one labelled counter per kind and format,
        not one lookup per message."""
        for (kind, fmt), n in self._published.items():
            self.metrics.published.labels(kind, fmt).inc(n)
        self._published.clear()


async def _stored_mark(js: JetStreamContext, stream: str) -> tuple[int, int, int]:
    """The position of the newest event in the events stream ((0, 0, -1): none)."""
    info = await js.stream_info(stream)
    last = int(info.state.last_seq or 0)
    if not info.state.messages or not last:
        return (0, 0, -1)
    try:
        msg = await js.get_msg(stream, last)
    except NotFoundError:
        return (0, 0, -1)
    return _mark_of(msg.headers or {})


def _mark_of(headers: dict[str, str]) -> tuple[int, int, int]:
    """(journal stream seq, index, format rank) from an event message's headers."""
    try:
        stream_seq, index = (int(t) for t in headers[H_JOURNAL_POSITION].split(":"))
        fmt = next(f for f, t in CONTENT_TYPES.items() if t == headers[H_CONTENT_TYPE])
    except (KeyError, ValueError, StopIteration):
        return (0, 0, -1)  # not one of ours: assume nothing is published
    return (stream_seq, index, FORMATS.index(fmt))


class EventBusPublisher(JournalFollower):
    """Publishes the journal's business events: the journal follower with the event bus
    sink; `await start()`, `lag()`, `await stop()`."""

    def __init__(
        self,
        link: NatsLink,
        journal: JournalConfig,
        config: BusConfig = BusConfig(),
        metrics: BusMetrics | None = None,
        decode: Callable[[bytes], JournalEntry] | None = None,
    ) -> None:
        if journal.stream != link.config.stream:
            raise ValueError(f"the publisher follows its link's journal {link.config.stream}, not {journal.stream}")
        bus_metrics = metrics or BusMetrics(CollectorRegistry())
        self.events = EventBusSink(link, config, bus_metrics)
        super().__init__(link, self.events, config.follower_config(), bus_metrics, decode)
        self.metrics: BusMetrics = bus_metrics

    @property
    def published_events(self) -> int:
        return self.events.published_events

    async def start(self) -> None:
        """The events stream first (and where it is), then the follower: rewound when the
        events stream lost events it had confirmed (EventBusSink.lost_from)."""
        await self.events.open()
        with contextlib.suppress(NotFoundError):  # no consumer yet: it starts from the first message
            acked = (
                await consumer_positions(self._link, self.stream, self.consumer, self._journal.api_timeout_s)
            ).acked_position
            lost_from = self.events.lost_from(acked)
            if lost_from:
                # Also after journal messages with no movements (nothing to store): cheap, so info.
                log.info(
                    "events stream behind the bus's journal position: deriving again from there",
                    events=self.events.config.stream,
                    from_position=lost_from,
                    acked=acked,
                )
                self.rewind_to(lost_from)
        await super().start()


# ---- deriving events straight from the journal ----


async def derive_events(
    link: NatsLink,
    journal: JournalConfig,
    from_stream_seq: int = 1,
    limit: int = 10_000,
    decode: Callable[[bytes], JournalEntry] | None = None,
) -> list[BusinessEvent]:
    """The business events of the journal from stream sequence `from_stream_seq` on (up to
    the journal's last message when the call starts), at most `limit`, in journal order:
    what the publisher publishes, derived again (an ephemeral consumer, no acks). Journal
    messages that do not decode are skipped, as the publisher dead-letters them."""
    decode = decode or decode_entry
    if limit <= 0:
        raise ValueError("limit must be positive")
    nc, js = await link.client()
    end = int((await js.stream_info(journal.stream)).state.last_seq or 0)
    if end < max(1, from_stream_seq):
        return []
    events: list[BusinessEvent] = []
    reader = PullReader(nc, js, journal.stream, f"{journal.subject_prefix}.>", from_stream_seq, journal)
    async for batch in reader.batches():
        for delivered in batch:
            try:
                entry = decode(delivered.data)
            except Exception as exc:  # the publisher dead-letters these; so skip them here
                log.warning("undecodable journal message skipped", position=delivered.stream_seq, error=str(exc))
            else:
                events.extend(business_events(entry, delivered.stream_seq))
            if len(events) >= limit:
                return events[:limit]
            if delivered.stream_seq >= end:
                return events
    return events


# ---- one call for the composition root ----


@dataclass(slots=True)
class BusRuntime:
    publisher: EventBusPublisher
    link: NatsLink

    async def stop(self) -> None:
        """The publisher first (it publishes and acks what it holds), then the link."""
        await self.publisher.stop()
        await self.link.close()
        log.info("event bus runtime stopped")


async def start_bus(config: BusConfig, journal: JournalConfig, registry: CollectorRegistry | None = None) -> BusRuntime:
    """Connect to the journal's NATS, start the publisher; `runtime.stop()` on the way down.

    `await start_bus(engine_bus_config(ns, url), engine_journal_config(ns, url, client_name="lotwise-bus"))`"""
    if config.url != journal.url:
        raise ValueError(f"the events stream lives beside the journal: bus url {config.url} ≠ journal {journal.url}")
    link = NatsLink(journal)
    try:
        await link.connect()
        publisher = EventBusPublisher(
            link, journal, config, BusMetrics(registry) if registry is not None else default_bus_metrics()
        )
        await publisher.start()
    except BaseException:
        await link.close()
        raise
    return BusRuntime(publisher, link)


# ---- transfer steps (published by the transfers desk, not derived from the journal) ----

TRANSFER_SCHEMA_VERSION = 1
TRANSFERS_TAG = "transfers"  # the subject token after the namespace (reserved as a namespace tag)


@dataclass(frozen=True, slots=True)
class TransferBusConfig:
    """Where transfer-step events go: `<prefix>.<kind>.<from_site>.<to_site>` (tokens
    escaped as business events' are) in a stream of their own, so the journal publisher's
    bookkeeping (the newest journal position in its stream) never meets them."""

    url: str
    stream: str = "LOTWISE_TRANSFERS_lotwise"
    subject_prefix: str = "lotwise.transfers"
    replicas: int = 1
    max_age_s: float = 30 * DAY_S  # transfers run for days: keep a month
    max_bytes: int = 256 * MiB  # ~0.5 KiB per step: about half a million steps
    duplicate_window_s: float = 600.0  # a retried step republishes within this
    publish_timeout_s: float = 5.0

    def subject(self, kind: str, from_site: str, to_site: str) -> str:
        return f"{self.subject_prefix}.{subject_token(kind)}.{subject_token(from_site)}.{subject_token(to_site)}"


def engine_transfer_bus_config(namespace: str, nats_url: str, replicas: int = 1) -> TransferBusConfig:
    """`lotwise.transfers.>` for the default namespace, `lotwise.<tag>.transfers.>` for
    another (the tag `transfers` is refused as a namespace, as events' tags are)."""
    tag = engine_bus_config(namespace, nats_url).stream.removeprefix("LOTWISE_EVENTS_")  # the same tag rules
    prefix = f"lotwise.{TRANSFERS_TAG}" if tag == "lotwise" else f"lotwise.{tag}.{TRANSFERS_TAG}"
    return TransferBusConfig(url=nats_url, stream=f"LOTWISE_TRANSFERS_{tag}", subject_prefix=prefix, replicas=replicas)


def transfer_event_record(e: TransferEvent) -> dict[str, Any]:
    return {"schema_version": TRANSFER_SCHEMA_VERSION, **{f: getattr(e, f) for f in e.__slots__}}


def transfer_event_from_record(r: dict[str, Any]) -> TransferEvent:
    if r.get("schema_version") != TRANSFER_SCHEMA_VERSION:
        raise ValueError(f"unknown transfer event schema version {r.get('schema_version')!r}")
    return TransferEvent(**{f: r[f] for f in TransferEvent.__slots__})


class TransferEventPublisher:
    """engine.domain.events.TransferEventSink on JetStream: one JSON message per step,
    with the business events' headers; `publish` returns once the stream stored it."""

    def __init__(self, link: NatsLink, config: TransferBusConfig) -> None:
        self._link = link
        self.config = config

    async def open(self) -> None:
        _, js = await self._link.client()
        await ensure_stream(js, transfer_stream_config(self.config))

    async def publish(self, event: TransferEvent) -> None:
        _, js = await self._link.client()
        headers = {
            api.Header.MSG_ID.value: f"{event.event_id}:{JSON}",
            H_CONTENT_TYPE: CONTENT_TYPES[JSON],
            H_EVENT_ID: event.event_id,
            H_EVENT_KIND: event.kind,
        }
        subject = self.config.subject(event.kind, event.from_site, event.to_site)
        payload = orjson.dumps(transfer_event_record(event))
        await js.publish(subject, payload, timeout=self.config.publish_timeout_s, headers=headers)

    async def close(self) -> None:
        await self._link.close()


def transfer_stream_config(config: TransferBusConfig) -> api.StreamConfig:
    return api.StreamConfig(
        name=config.stream,
        description="Lotwise transfer steps (JSON), as the transfers desk records them",
        subjects=[f"{config.subject_prefix}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_age=config.max_age_s,
        max_bytes=config.max_bytes,
        max_msgs=-1,
        max_msgs_per_subject=-1,
        max_msg_size=64 * KiB,
        num_replicas=config.replicas,
        duplicate_window=config.duplicate_window_s,
    )


async def start_transfer_events(config: TransferBusConfig) -> TransferEventPublisher:
    """Connect, make sure the stream is there; `close()` on the way down."""
    link = NatsLink(JournalConfig(url=config.url, client_name="lotwise-transfer-events"))
    await link.connect()
    publisher = TransferEventPublisher(link, config)
    try:
        await publisher.open()
    except BaseException:
        await link.close()
        raise
    return publisher
