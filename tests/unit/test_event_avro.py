"""The event bus's fast path gives the very bytes of the reference path, for any entry.

The bus builds its messages straight from the movements (`event_records`), writes Avro
with a writer made for the schema (`event_avro`) and each HPUB frame as one string
(`Outgoing.command`). Subscribers must not see a byte change (adapters/nats/EVENTS.md):
here every one of them is held equal to what the reference gives — business_events →
event_record → orjson / fastavro, and nats-py's own header framing (`hpub_command`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.nats import bus
from adapters.nats.bus import AVRO, JSON, BusConfig, engine_bus_config, entry_outgoing, event_record, event_records
from adapters.nats.event_avro import FIELDS, FINANCE_FIELDS, LOT_FIELDS, PLACE_FIELDS, event_avro
from adapters.nats.outbound import hpub_command
from engine.domain.commands import Consume, Receive
from engine.domain.events import business_events
from engine.domain.model import External, Finance, Lot, Movement, MovementKind, Provenance, QuantKey
from engine.domain.ports import JournalEntry


def fastavro_body(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, bus.schema(), record)
    return out.getvalue()


def test_the_writer_follows_the_schema_field_by_field() -> None:
    """A new schema version fails here until event_avro writes it."""
    raw = json.loads(Path(bus.SCHEMA_PATH).read_text())
    by_name = {f["name"]: f["type"] for f in raw["fields"]}
    assert tuple(by_name) == FIELDS
    assert tuple(f["name"] for f in by_name["from"]["fields"]) == PLACE_FIELDS
    assert by_name["to"] == "Place"
    assert tuple(f["name"] for f in by_name["lot"][1]["fields"]) == LOT_FIELDS
    assert tuple(f["name"] for f in by_name["finance"][1]["fields"]) == FINANCE_FIELDS
    assert bus.SCHEMA_VERSION == 3


# ---- any entry: records, bodies and frames as the reference gives them ----

_texts = st.text(max_size=3) | st.sampled_from(["", "A/01/P1", "store.12", "é€😀", "x" * 70, "a\r\nb"])
_longs = st.integers(-(2**63), 2**63 - 1) | st.integers(-70, 70)
_buckets = st.sampled_from(list(External)) | st.builds(QuantKey, _texts, _texts, _texts, _texts)
_provenance = st.none() | st.builds(Provenance, _texts, st.floats(allow_nan=False), _longs)
_movements = st.builds(
    Movement,
    seq=_longs,
    kind=st.sampled_from(list(MovementKind)),
    sku=st.sampled_from(["s1", "s.2"]),
    site=st.sampled_from(["a", "b.c", "é"]),
    lot_id=_texts,
    qty=st.integers(0, 10**12) | st.integers(0, 5),
    src=_buckets,
    dst=_buckets,
    held_delta=_longs,
    hold_id=_texts,
    request_id=st.sampled_from(["", "r1", "r2"]),
    doc_ref=_texts,
    at_ms=_longs,
    lot=st.none() | st.builds(Lot, _texts, _longs, _longs, _longs),
    expires_at_ms=_longs,
    provenance=_provenance,
)
_amounts = st.sampled_from(["", "0", "12.5", "19.99", "0.0000005", "-3", "abc", "1E+3", "9" * 40])
_finances = st.none() | st.builds(
    Finance,
    currency=_texts,
    unit_cost=_amounts,
    unit_price=_amounts,
    tax_rate=_amounts,
    terms=st.sampled_from(["", "n/30", "2/10 n/30", "1.5/7 n/99999999999", "whenever"]),
    customer_tier=_texts,
    sales_channel=_texts,
    tax_attribute=_texts,
    gift=st.booleans(),
    return_of=_texts,
    to_site=_texts,
    to_company=_texts,
)


@st.composite
def entries(draw: st.DrawFn) -> JournalEntry:
    movements = draw(st.lists(_movements, max_size=12))
    ops = [
        Consume(rid, sku, site, 1, finance=draw(_finances))
        for rid in ("r1", "r2")
        for sku in ("s1", "s.2")
        for site in ("a", "b.c", "é")
        if draw(st.booleans())
    ]
    shard = draw(st.sampled_from(["s1", "shard-0", "a\nb", " x\r"]))
    return JournalEntry(shard, draw(_longs), 0, tuple(ops), tuple(movements))


def reference(entry: JournalEntry, stream_seq: int) -> list[dict[str, Any]] | Exception:
    try:
        return [event_record(e) for e in business_events(entry, stream_seq)]
    except Exception as exc:  # an entry no event can be made of: the fast path must refuse it too
        return exc


@settings(max_examples=150, deadline=None)
@given(entries(), st.integers(0, 2**40))
def test_records_are_the_events_records(entry: JournalEntry, stream_seq: int) -> None:
    expected = reference(entry, stream_seq)
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)):
            event_records(entry, stream_seq)
        return
    assert event_records(entry, stream_seq) == expected


@settings(max_examples=150, deadline=None)
@given(entries(), st.integers(0, 2**40), st.sampled_from([(JSON, AVRO), (JSON,), (AVRO,)]))
def test_messages_are_the_reference_bytes(entry: JournalEntry, stream_seq: int, formats: tuple[str, ...]) -> None:
    config = BusConfig(formats=formats)
    records = reference(entry, stream_seq)
    if isinstance(records, Exception):
        return  # test_records_are_the_events_records: refused by both
    expected = []
    for r in records:
        for fmt in config.ordered_formats:
            try:
                body: bytes | None = orjson.dumps(r) if fmt == JSON else fastavro_body(r)
            except (ValueError, OverflowError):
                body = None  # fastavro cannot write it: the bus must refuse the entry
            expected.append((config.subject(fmt, r["kind"], r["site"]), body))
    if any(body is None for _, body in expected):
        with pytest.raises((ValueError, OverflowError)):
            entry_outgoing(entry, stream_seq, config)
        return
    outs = entry_outgoing(entry, stream_seq, config)
    assert [(o.subject, o.payload) for o in outs] == expected
    for i, o in enumerate(outs):
        reply = f"_INBOX.abc.7.{i}"
        assert o.command(reply) == hpub_command(o.subject, reply, o.headers, o.payload)
        assert o.headers["Nats-Msg-Id"] == f"{o.event_id}:{o.fmt}"
        assert o.headers["Lotwise-Journal-Position"] == f"{stream_seq}:{o.mark[1]}"


def test_a_receipt_with_finance_is_written_as_fastavro_writes_it() -> None:
    finance = Finance(currency="EUR", unit_cost="4.20", unit_price="6.99", tax_rate="0.19", terms="2/10 n/30")
    key = QuantKey("L1", "A/01/P1", "available", "own")
    receive = Movement(
        1, MovementKind.RECEIVE, "sku-1", "site.1", "L1", 10, External.SUPPLIER, key, request_id="r1", at_ms=17
    )
    entry = JournalEntry("s1", 3, 17, (Receive("r1", "sku-1", "site.1", "L1", 10, finance=finance),), (receive,))
    json_out, avro_out = entry_outgoing(entry, 99, engine_bus_config("lotwise", "nats://x"))
    [record] = [event_record(e) for e in business_events(entry, 99)]
    assert record["finance"]["extended_price"] == "69.90"
    assert avro_out.payload == fastavro_body(record)
    assert json_out.payload == orjson.dumps(record)
    assert avro_out.subject == "lotwise.avro.events.receive.site%2E1"


# ---- any record of the schema ----

_place_records = st.fixed_dictionaries({name: _texts for name in PLACE_FIELDS})
_finance_records = st.fixed_dictionaries(
    {
        **{name: _texts for name in FINANCE_FIELDS},
        "discount_pct": st.none() | _texts,
        "discount_days": st.none() | st.integers(-(2**31), 2**31 - 1) | st.integers(2**31, 2**40),
        "net_days": st.none() | st.integers(-(2**31), 2**31 - 1),
        "gift": st.booleans(),
    }
)
_records = st.fixed_dictionaries(
    {
        "schema_version": st.just(3),
        "event_id": _texts,
        "kind": _texts,
        "sku": _texts,
        "site": _texts,
        "seq": _longs,
        "lot_id": _texts,
        "qty": _longs | st.integers(2**63, 2**64),
        "from": _place_records,
        "to": _place_records,
        "held_delta": _longs,
        "hold_id": _texts,
        "request_id": _texts,
        "doc_ref": _texts,
        "at_ms": _longs,
        "lot": st.none() | st.fixed_dictionaries({name: _longs for name in LOT_FIELDS}),
        "hold_expires_at_ms": _longs,
        "shard": _texts,
        "batch_seq": _longs,
        "index": st.integers(0, 2**31 - 1),
        "stream_seq": _longs,
        "finance": st.none() | _finance_records,
        "source": _texts,
        "confidence": st.floats(),
        "business_at_ms": _longs,
    }
)


@settings(max_examples=300, deadline=None)
@given(_records)
def test_the_writer_writes_what_fastavro_writes(record: dict[str, Any]) -> None:
    try:
        expected = fastavro_body(record)
    except (ValueError, OverflowError):  # fastavro refuses it: so must the writer
        with pytest.raises((ValueError, OverflowError)):
            event_avro(record)
        return
    assert event_avro(record) == expected
