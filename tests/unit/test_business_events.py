"""Business events derived from journal entries (engine.domain.events), their encodings
(adapters.nats.bus: pure functions, no server).

Entries are built the way a shard builds them: commands run on a real cell, the ops and
the movements they produced side by side.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.nats.bus import (
    AVRO,
    JSON,
    BusConfig,
    BusUnavailable,
    check_puback,
    decode_event,
    decode_event_avro,
    decode_event_json,
    encode_event_avro,
    encode_event_json,
    engine_bus_config,
    outgoing,
    schema,
    subject_token,
    token_text,
)
from engine.domain.commands import Command, ReserveLine
from engine.domain.events import (
    MONEY_PLACES,
    BusinessEvent,
    Place,
    business_events,
    event_finance,
    money,
)
from engine.domain.model import External, Finance, Lot, Movement, MovementKind, QuantKey
from engine.domain.ports import JournalEntry
from engine.domain.shard import Sweep
from tests.unit.conftest import SITE, SKU, T0_MS, TTL_MS, CellDriver

EUR = Finance(currency="EUR", unit_cost="12.50", unit_price="19.99", tax_rate="0.20", terms="2/10 n/30")


def run_batch(driver: CellDriver, *cmds: Command, shard: str = "shard-0", batch_seq: int = 1) -> JournalEntry:
    """Run `cmds` on the driver's cell and journal them as one batch."""
    for cmd in cmds:
        driver.run(cmd)
    return JournalEntry(shard, batch_seq, driver.now_ms, tuple(cmds), tuple(driver.drain()))


def test_every_movement_becomes_one_event_in_order_with_its_commands_context(driver: CellDriver) -> None:
    receive = dataclasses.replace(driver.receive_cmd("L1", 10, doc_ref="PO-7"), finance=EUR)
    reserve = driver.reserve_cmd("H1", ReserveLine(4))
    commit = dataclasses.replace(driver.commit_cmd("H1", 3), doc_ref="SO-9", finance=EUR)
    entry = run_batch(driver, receive, reserve, commit, batch_seq=42)

    events = business_events(entry, stream_seq=1234)

    kinds = [e.kind for e in events]
    assert kinds == ["receive", "reserve", "commit", "release"]  # the partial commit releases the rest
    assert [e.event_id for e in events] == [f"shard-0:42:{i}" for i in range(4)]
    assert [e.seq for e in events] == [m.seq for m in entry.movements]
    assert all((e.shard, e.batch_seq, e.stream_seq) == ("shard-0", 42, 1234) for e in events)
    received, reserved, committed, released = events
    assert received.from_ == Place(external="@supplier")
    assert received.to == Place(bin="", status="available", owner="own")
    assert received.doc_ref == "PO-7"
    assert received.lot is not None
    assert received.lot.received_at_ms == driver.now_ms
    assert received.finance is not None
    assert received.finance.extended_cost == "125.00"
    assert received.finance.extended_price == "199.90"
    assert received.finance.tax_amount == "39.9800"
    assert (received.finance.discount_pct, received.finance.discount_days, received.finance.net_days) == ("2", 10, 30)
    assert reserved.finance is None  # its command carried none
    assert (reserved.qty, reserved.held_delta, reserved.hold_id) == (0, 4, "H1")
    assert reserved.hold_expires_at_ms == driver.now_ms + TTL_MS
    assert committed.to == Place(external="@customer")
    assert (committed.qty, committed.held_delta, committed.doc_ref) == (3, -3, "SO-9")
    assert committed.finance is not None
    assert committed.finance.extended_price == "59.97"
    assert committed.finance.tax_amount == "11.9940"
    # The release leg of a partial commit is the commit's doing: same request, same context;
    # it moves no quantity, so it books no amount.
    assert released.request_id == commit.request_id
    assert released.finance is not None
    assert (released.qty, released.held_delta, released.finance.extended_price) == (0, -1, "0.00")


def test_expiry_has_no_command_and_no_finance(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    driver.reserve("H1", ReserveLine(2))
    driver.drain()
    driver.advance(TTL_MS + 1)
    movements = driver.cell.expire_due(driver.now_ms)
    driver.drain()
    entry = JournalEntry("shard-0", 2, driver.now_ms, (Sweep(),), tuple(movements))

    (event,) = business_events(entry)

    assert (event.kind, event.request_id, event.finance, event.held_delta) == ("expire", "", None, -2)


def test_context_comes_from_the_same_cell_when_request_ids_repeat_across_cells() -> None:
    """Request ids are idempotent per cell: two cells of one batch may see the same one."""
    key = QuantKey("L1", "", "available", "own")

    def movement(site: str) -> Movement:
        return Movement(1, MovementKind.CONSUME, SKU, site, "L1", 2, key, External.CUSTOMER, request_id="r-1")

    from engine.domain.commands import Consume

    ops = (
        Consume("r-1", SKU, "A", 2, finance=dataclasses.replace(EUR, unit_price="1")),
        Consume("r-1", SKU, "B", 2, finance=dataclasses.replace(EUR, unit_price="2")),
    )
    entry = JournalEntry("s", 1, 0, ops, (movement("B"), movement("A")))

    prices = [(e.site, e.finance.extended_price if e.finance else None) for e in business_events(entry)]

    assert prices == [("B", "4"), ("A", "2")]


@pytest.mark.parametrize(
    ("qty", "unit", "rate", "extended", "tax"),
    [
        (3, "19.99", "0.20", "59.97", "11.9940"),  # exact: never rounded
        (1, "0.1234567", "0", "0.123457", "0.000000"),  # 7 places: rounded to 6, half even
        (1, "0.0000005", "1", "0.000000", "0.000000"),  # exactly half: to the even neighbour
        (1, "0.0000015", "1", "0.000002", "0.000002"),
        (10**12, "99999999.999999", "0.25", "99999999999999000000.000000", "24999999999999750000.000000"),
        (7, "", "0.2", "", ""),  # not given: not computed
    ],
)
def test_line_amounts_are_exact_decimal_strings(qty: int, unit: str, rate: str, extended: str, tax: str) -> None:
    finance = event_finance(Finance(currency="EUR", unit_price=unit, tax_rate=rate), qty)
    assert finance is not None
    assert (finance.extended_price, finance.tax_amount) == (extended, tax)


@given(st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False, places=9))
def test_money_rounds_only_past_six_places(value: Decimal) -> None:
    text = money(value)
    assert "E" not in text.upper()  # plain notation, whatever the exponent
    if -value.as_tuple().exponent <= MONEY_PLACES:  # type: ignore[operator]
        assert text == format(value, "f")  # exact, untouched
    else:
        assert len(text.partition(".")[2]) == MONEY_PLACES
        assert abs(Decimal(text) - value) <= Decimal("0.0000005")


def test_unparsable_terms_and_amounts_give_empty_values_never_an_error() -> None:
    finance = event_finance(Finance(currency="EUR", unit_price="abc", terms="pay whenever"), 3)
    assert finance is not None
    assert (finance.extended_price, finance.discount_pct, finance.net_days) == ("", None, None)
    net = event_finance(Finance(terms="n/30"), 1)
    assert net is not None
    assert (net.discount_pct, net.discount_days, net.net_days) == ("0", 0, 30)


# ---- random entries: one event per movement, in order, unique ids ----

_buckets = st.one_of(
    st.sampled_from(list(External)),
    st.builds(
        QuantKey,
        st.sampled_from(["L1", "L2"]),
        st.sampled_from(["", "A/01", "B/02/P3"]),
        st.sampled_from(["available", "qc_hold"]),
        st.sampled_from(["own", "consignment:acme"]),
    ),
)
_movements = st.builds(
    Movement,
    seq=st.integers(1, 10**9),
    kind=st.sampled_from(list(MovementKind)),
    sku=st.sampled_from(["s1", "s2"]),
    site=st.sampled_from(["a", "b.c"]),
    lot_id=st.sampled_from(["", "L1"]),
    qty=st.integers(0, 10**12),
    src=_buckets,
    dst=_buckets,
    held_delta=st.integers(-100, 100),
    request_id=st.sampled_from(["", "r1", "r2", "r3"]),
    doc_ref=st.text(max_size=8),
    at_ms=st.integers(0, 2**62),
    lot=st.none() | st.builds(Lot, st.just("L1"), st.integers(0, 2**40)),
)
_finances = st.none() | st.builds(
    Finance,
    currency=st.just("EUR"),
    unit_cost=st.sampled_from(["", "0", "12.5", "0.0000001"]),
    unit_price=st.sampled_from(["", "19.99", "3"]),
    tax_rate=st.sampled_from(["", "0.2", "0.0825"]),
    terms=st.sampled_from(["", "n/30", "2/10 n/30"]),
)


@st.composite
def entries(draw: st.DrawFn) -> JournalEntry:
    from engine.domain.commands import Consume

    movements = draw(st.lists(_movements, max_size=30))
    ops = [
        Consume(rid, sku, site, 1, finance=draw(_finances))
        for rid in ("r1", "r2")
        for sku in ("s1", "s2")
        for site in ("a", "b.c")
        if draw(st.booleans())
    ]
    return JournalEntry(
        draw(st.text("abc-_", min_size=1, max_size=6)), draw(st.integers(1, 10**6)), 0, tuple(ops), tuple(movements)
    )


@settings(max_examples=200, deadline=None)
@given(entries(), st.integers(0, 2**40))
def test_events_of_any_entry_are_one_per_movement_in_order_with_unique_ids(entry: JournalEntry, seq: int) -> None:
    events = business_events(entry, seq)
    assert len(events) == len(entry.movements)
    assert [(e.sku, e.site, e.seq, e.kind, e.qty) for e in events] == [
        (m.sku, m.site, m.seq, m.kind.value, m.qty) for m in entry.movements
    ]
    assert len({e.event_id for e in events}) == len(events)
    assert [e.index for e in events] == list(range(len(events)))
    assert business_events(entry, seq) == events  # pure: derived again, the same
    for e in events:  # and every event survives both encodings unchanged
        assert decode_event_json(encode_event_json(e)) == e
        assert decode_event_avro(encode_event_avro(e)) == e


# ---- encodings and subjects ----


def an_event(driver: CellDriver) -> BusinessEvent:
    receive = dataclasses.replace(driver.receive_cmd("L1", 10, doc_ref="PO-7"), finance=EUR)
    return business_events(run_batch(driver, receive))[0]


def test_json_keys_are_the_avro_field_names_and_money_is_strings(driver: CellDriver) -> None:
    import orjson

    event = an_event(driver)
    record = orjson.loads(encode_event_json(event))
    assert list(record) == [f["name"] for f in schema()["fields"]]
    assert record["schema_version"] == 3
    assert record["from"] == {"external": "@supplier", "bin": "", "status": "", "owner": ""}
    assert record["finance"]["extended_cost"] == "125.00"
    assert record["finance"]["tax_amount"] == "39.9800"


def test_each_format_has_its_subject_and_headers(driver: CellDriver) -> None:
    event = dataclasses.replace(an_event(driver), site="store.12")
    json_out, avro_out = outgoing([event], engine_bus_config("lotwise", "nats://x"))
    assert json_out.subject == "lotwise.events.receive.store%2E12"
    assert avro_out.subject == "lotwise.avro.events.receive.store%2E12"
    assert json_out.headers["Nats-Msg-Id"] == f"{event.event_id}:json"
    assert avro_out.headers["Content-Type"] == "avro/binary"
    assert avro_out.headers["Lotwise-Event-Kind"] == "receive"
    assert decode_event(avro_out.payload, avro_out.headers["Content-Type"]) == event
    assert decode_event(json_out.payload, json_out.headers["Content-Type"]) == event
    assert json_out.headers["Lotwise-Schema"] == avro_out.headers["Lotwise-Schema"]
    only_json = outgoing([event], BusConfig(formats=(JSON,)))
    assert [o.fmt for o in only_json] == [JSON]
    assert [o.fmt for o in outgoing([event], BusConfig(formats=(AVRO, JSON)))] == [JSON, AVRO]


def test_a_publish_is_confirmed_only_by_a_puback_of_the_events_stream(driver: CellDriver) -> None:
    out = outgoing([an_event(driver)], BusConfig())[0]
    stream = BusConfig().stream
    assert check_puback(out, b'{"stream":"%s","seq":7}' % stream.encode(), stream) is False
    assert check_puback(out, b'{"stream":"%s","seq":7,"duplicate":true}' % stream.encode(), stream) is True
    with pytest.raises(TimeoutError):
        check_puback(out, None, stream)  # no answer within the window
    with pytest.raises(BusUnavailable, match="captured by stream OTHER"):
        check_puback(out, b'{"stream":"OTHER","seq":1}', stream)
    with pytest.raises(BusUnavailable, match="not stored"):
        check_puback(out, b'{"error":{"code":503,"description":"insufficient resources"}}', stream)
    with pytest.raises(BusUnavailable, match="no stream answered"):
        check_puback(out, b"{}", stream)  # a status message without a body: no responders
    with pytest.raises(BusUnavailable, match="not a PubAck"):
        check_puback(out, b"\xff", stream)


@given(st.text(max_size=20))
def test_subject_tokens_are_reversible_and_safe(text: str) -> None:
    token = subject_token(text)
    assert token
    assert not set(token) & set(".*> \t\r\n")
    assert token_text(token) == text


def test_namespaces_name_their_streams_and_prefixes() -> None:
    default = engine_bus_config("lotwise", "nats://x")
    assert (default.stream, default.subject_prefix, default.avro_prefix) == (
        "LOTWISE_EVENTS_lotwise",
        "lotwise.events",
        "lotwise.avro.events",
    )
    other = engine_bus_config("shop.eu", "nats://x")
    assert (other.stream, other.subject_prefix, other.avro_prefix) == (
        "LOTWISE_EVENTS_shop_eu",
        "lotwise.shop_eu.events",
        "lotwise.shop_eu.avro.events",
    )
    with pytest.raises(ValueError, match="overlap"):
        engine_bus_config("avro", "nats://x")
    with pytest.raises(ValueError, match="formats"):
        BusConfig(formats=("xml",))


def test_decoders_refuse_other_schema_versions(driver: CellDriver) -> None:
    data = bytearray(encode_event_avro(an_event(driver)))
    data[0] = 8  # zig-zag 4
    with pytest.raises(ValueError, match="version 4"):
        decode_event_avro(bytes(data))
    with pytest.raises(ValueError, match="version"):
        decode_event_json(b'{"schema_version": 4}')


def test_a_version_1_event_reads_with_no_provenance(driver: CellDriver) -> None:
    """Version 1 (before the provenance fields), in Avro with its own schema and in JSON."""
    import io

    import fastavro
    import orjson

    from adapters.nats import bus

    event = an_event(driver)
    record = {k: v for k, v in bus.event_record(event).items() if k not in ("source", "confidence", "business_at_ms")}
    record["schema_version"] = 1
    out = io.BytesIO()
    fastavro.schemaless_writer(out, bus.schema(1), record)
    assert decode_event_avro(out.getvalue()) == event
    assert decode_event_json(orjson.dumps(record)) == event


def test_counts_and_device_ops_carry_their_provenance(driver: CellDriver) -> None:
    """A count's events say who counted and how sure; a device op's, when it happened."""
    from engine.domain.commands import Count, CountLine, CountSource, DeviceOp, Receive

    run_batch(driver, Receive("r0", SKU, SITE, "L1", 10, status="available"))
    count = Count("c1", SKU, SITE, "", (CountLine("L1", 7, "available"),), source=CountSource.RFID, confidence=0.875)
    [counted] = business_events(run_batch(driver, count))
    assert (counted.kind, counted.source, counted.confidence, counted.business_at_ms) == ("count", "rfid", 0.875, 0)
    at = T0_MS - 7_200_000
    op = DeviceOp("d1", SKU, SITE, "POS-1", 1, at, Receive("", SKU, SITE, "L2", 2, status="available"), prev_seq=0)
    [received] = business_events(run_batch(driver, op))
    assert (received.kind, received.source, received.business_at_ms) == ("receive", "", at)
    assert decode_event_avro(encode_event_avro(counted)) == counted
    assert decode_event_json(encode_event_json(received)) == received


def test_the_catalogue_names_the_current_schema() -> None:
    """EVENTS.md tells consumers the schema's fingerprint: it must be this schema's."""
    from pathlib import Path

    from adapters.nats import bus

    catalogue = (Path(bus.__file__).with_name("EVENTS.md")).read_text()
    assert f"version {bus.SCHEMA_VERSION} is `{bus.schema_fingerprint()}`" in catalogue
    for kind in MovementKind:
        assert f"`{kind.value}`" in catalogue


def test_the_typed_finance_attributes_travel_and_a_version_2_event_reads_without_them(driver: CellDriver) -> None:
    """Version 3 carries Finance's typed attributes in both formats; a version-2 event (its
    own schema file) reads with them at their defaults."""
    import io

    import fastavro
    import orjson

    from adapters.nats import bus

    typed = dataclasses.replace(EUR, customer_tier="key", sales_channel="web", gift=True, return_of="SO 1", to_site="B")
    receive = dataclasses.replace(driver.receive_cmd("L1", 10, doc_ref="PO-7"), finance=typed)
    event = business_events(run_batch(driver, receive))[0]
    assert event.finance is not None
    assert (event.finance.customer_tier, event.finance.gift, event.finance.to_site) == ("key", True, "B")
    assert decode_event_avro(encode_event_avro(event)) == event
    assert decode_event_json(encode_event_json(event)) == event
    plain = an_event(driver)
    record = bus.event_record(plain)
    v2_finance = {k: v for k, v in record["finance"].items() if k not in ATTRIBUTES}
    record = {**record, "schema_version": 2, "finance": v2_finance}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, bus.schema(2), record)
    assert decode_event_avro(out.getvalue()) == plain
    assert decode_event_json(orjson.dumps(record)) == plain


ATTRIBUTES = ("customer_tier", "sales_channel", "tax_attribute", "gift", "return_of", "to_site", "to_company")
