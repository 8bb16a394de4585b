"""The journal's Avro codec: every field round-trips, and every schema version ever
written still decodes (adapters/nats/codec.py states the evolution rule).

A v1 message here is written with the v1 schema file itself, as a v1 engine wrote it:
it must decode to the same commands with the fields v1 lacked at their defaults.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zlib
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.nats.codec import (
    READABLE_VERSIONS,
    SCHEMA_DIR,
    SCHEMA_VERSION,
    decode_entry,
    encode_entry,
    schema,
    schema_path,
)
from adapters.nats.records import movement_in, movement_out, op_out
from engine.domain.commands import (
    Adjust,
    ChangeStatus,
    Commit,
    Consume,
    Move,
    Receive,
    Release,
    Reserve,
    ReserveLine,
    Strategy,
)
from engine.domain.formats import UnsupportedFormat
from engine.domain.model import External, Finance, Lot, Movement, MovementKind, Provenance, QuantKey
from engine.domain.ports import JournalEntry

NS = "lotwise.journal.v1."
EUR = Finance(currency="EUR", unit_cost="12.50", unit_price="19.99", tax_rate="0.20", terms="2/10 n/30")
KEY = QuantKey("L1", "A/01", "available", "own")
COMMANDS = ("Receive", "Move", "ChangeStatus", "Reserve", "Commit", "Release", "Consume", "Adjust")


def frame(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


def round_trip(*ops: Any) -> JournalEntry:
    entry = JournalEntry("shard-0", 7, 1_767_225_600_000, tuple(ops), ())
    decoded = decode_entry(encode_entry(entry))
    assert decoded == entry
    return decoded


# ---- v2: every new field round-trips ----


def test_the_current_version_is_7_and_every_version_is_readable() -> None:
    assert SCHEMA_VERSION == 7
    assert READABLE_VERSIONS == (1, 2, 3, 4, 5, 6, 7)
    assert encode_entry(JournalEntry("s", 1, 0, (), ()))[0] == 14  # zig-zag varint of 7


@pytest.mark.parametrize("finance", [None, Finance(), EUR, Finance(currency="USD", terms="net 30")])
def test_finance_round_trips_on_every_command(finance: Finance | None) -> None:
    ops = round_trip(
        Receive("r1", "s", "x", "L1", 5, finance=finance),
        Move("r2", "s", "x", "L1", 1, "", "A/01", finance=finance),
        ChangeStatus("r3", "s", "x", "L1", 1, "available", "damaged", finance=finance),
        Reserve("r4", "s", "x", "H1", (ReserveLine(2, Strategy.FIFO),), 60_000, "SO-1", finance=finance),
        Commit("r5", "s", "x", "H1", 1, finance=finance),
        Commit("r5b", "s", "x", "H1", None, finance=finance),
        Release("r6", "s", "x", "H1", abort=True, finance=finance),
        Consume("r7", "s", "x", 1, finance=finance),
        Adjust("r8", "s", "x", "L1", 3, finance=finance),
    ).ops
    assert [op.finance for op in ops] == [finance] * len(ops)


@pytest.mark.parametrize("source", list(External))
def test_receive_source_round_trips(source: External) -> None:
    [op] = round_trip(Receive("r1", "s", "x", "L1", 5, source=source, finance=EUR)).ops
    assert op.source is source


@pytest.mark.parametrize("destination", list(External))
@pytest.mark.parametrize("status", ["", "packed", "damaged"])
def test_consume_destination_and_status_round_trip(destination: External, status: str) -> None:
    cmd = Consume("r7", "s", "x", 3, "L1", "A", "own", Strategy.LOT, "D-1", destination, status, EUR)
    [op] = round_trip(cmd).ops
    assert (op.destination, op.status, op.strategy) == (destination, status, Strategy.LOT)
    assert op.destination is destination


def test_movements_to_and_from_every_bucket_round_trip() -> None:
    movements = tuple(
        Movement(i + 1, MovementKind.CONSUME, "s", "x", "L1", 2, KEY, bucket, request_id=f"r{i}")
        for i, bucket in enumerate(External)
    )
    entry = JournalEntry("shard-0", 1, 5, (), movements)
    assert decode_entry(encode_entry(entry)) == entry


_texts = st.sampled_from(["", "L1", "A/01", "available", "own", "é"])
_keys = st.builds(QuantKey, _texts, _texts, _texts, _texts)
_decoded_movements = st.builds(
    Movement,
    seq=st.integers(1, 2**40),
    kind=st.sampled_from(list(MovementKind)),
    sku=_texts,
    site=_texts,
    lot_id=_texts,
    qty=st.integers(0, 10**12),
    src=st.sampled_from(list(External)) | _keys,
    dst=st.sampled_from(list(External)) | _keys,
    held_key=st.none() | _keys,
    held_delta=st.integers(-(2**40), 2**40),
    lot=st.none() | st.builds(Lot, _texts, st.integers(0, 2**42), st.integers(0, 2**42), st.integers(0, 2**42)),
    expires_at_ms=st.integers(0, 2**42),
    provenance=st.none() | st.builds(Provenance, _texts, st.sampled_from([0.0, -0.0, 0.5, 1.0]), st.integers(0, 2**42)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_decoded_movements, max_size=12))
def test_any_movements_round_trip_and_each_quant_is_one_key(movements: list[Movement]) -> None:
    """The decode builds one QuantKey per quant the entry names (a reserve names its quant
    three times): equal keys are the same object, and the entry is what was written. An
    empty provenance (all defaults, -0.0 too) decodes as none, as before."""
    entry = JournalEntry("shard-0", 1, 5, (), tuple(movements))
    decoded = decode_entry(encode_entry(entry))
    expected = [dataclasses.replace(m, provenance=None) if m.provenance == Provenance() else m for m in movements]
    assert list(decoded.movements) == expected
    keys: dict[QuantKey, QuantKey] = {}
    for m in decoded.movements:
        for bucket in (m.src, m.dst, m.held_key):
            if isinstance(bucket, QuantKey):
                assert keys.setdefault(bucket, bucket) is bucket


# ---- v1: written with the v1 schema, read by this code ----


def v1_message(ops: list[tuple[str, dict[str, Any]]], movements: list[dict[str, Any]]) -> bytes:
    record = {"schema_version": 1, "shard": "shard-0", "batch_seq": 3, "now_ms": 1_000, "ops": ops}
    record["movements"] = movements
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema(1), record)
    return frame(out.getvalue())


def test_a_v1_message_decodes_with_the_defaults_of_the_new_fields() -> None:
    ops = [
        (
            NS + "Receive",
            {
                "request_id": "r1",
                "sku": "s",
                "site": "x",
                "lot_id": "L1",
                "qty": 5,
                "bin": "A/01",
                "status": "available",
                "owner": "own",
                "expires_at_ms": 9_000,
                "received_at_ms": 0,
                "opened_at_ms": 0,
                "doc_ref": "PO-1",
            },
        ),
        (
            NS + "Move",
            {
                "request_id": "r2",
                "sku": "s",
                "site": "x",
                "lot_id": "L1",
                "qty": 1,
                "from_bin": "A/01",
                "to_bin": "B/01",
                "status": "available",
                "owner": "own",
                "doc_ref": "",
            },
        ),
        (
            NS + "ChangeStatus",
            {
                "request_id": "r3",
                "sku": "s",
                "site": "x",
                "lot_id": "L1",
                "qty": 1,
                "from_status": "available",
                "to_status": "damaged",
                "bin": "A/01",
                "owner": "own",
                "doc_ref": "",
            },
        ),
        (
            NS + "Reserve",
            {
                "request_id": "r4",
                "sku": "s",
                "site": "x",
                "hold_id": "H1",
                "lines": [
                    {
                        "qty": 2,
                        "strategy": "fefo",
                        "lot_id": "",
                        "owner": "",
                        "min_shelf_life_days": 1.5,
                        "bin_prefix": "A",
                    }
                ],
                "ttl_ms": 60_000,
                "doc_ref": "SO-1",
            },
        ),
        (NS + "Commit", {"request_id": "r5", "sku": "s", "site": "x", "hold_id": "H1", "qty": 1, "doc_ref": ""}),
        (NS + "Commit", {"request_id": "r5b", "sku": "s", "site": "x", "hold_id": "H1", "qty": None, "doc_ref": ""}),
        (
            NS + "Release",
            {"request_id": "r6", "sku": "s", "site": "x", "hold_id": "H1", "doc_ref": "", "abort": True},
        ),
        (
            NS + "Consume",
            {
                "request_id": "r7",
                "sku": "s",
                "site": "x",
                "qty": 3,
                "lot_id": "",
                "bin_prefix": "",
                "owner": "",
                "strategy": "fifo",
                "doc_ref": "scan-1",
            },
        ),
        (
            NS + "Adjust",
            {
                "request_id": "r8",
                "sku": "s",
                "site": "x",
                "lot_id": "L1",
                "counted_qty": 0,
                "bin": "A/01",
                "status": "available",
                "owner": "own",
                "reason": "count",
                "doc_ref": "",
            },
        ),
        (NS + "Sweep", {"max_cells": 10}),
    ]
    movements = [
        {
            "seq": 1,
            "kind": "receive",
            "sku": "s",
            "site": "x",
            "lot_id": "L1",
            "qty": 5,
            "src": "@supplier",
            "dst": (NS + "QuantKey", {"lot_id": "L1", "bin": "A/01", "status": "available", "owner": "own"}),
            "held_key": None,
            "held_delta": 0,
            "hold_id": "",
            "request_id": "r1",
            "doc_ref": "PO-1",
            "at_ms": 1_000,
            "lot": (NS + "Lot", {"lot_id": "L1", "received_at_ms": 1_000, "expires_at_ms": 9_000, "opened_at_ms": 0}),
            "expires_at_ms": 0,
        }
    ]

    entry = decode_entry(v1_message(ops, movements))

    assert (entry.shard, entry.batch_seq, entry.now_ms) == ("shard-0", 3, 1_000)
    assert list(entry.ops[:-1]) == [
        Receive("r1", "s", "x", "L1", 5, "A/01", "available", "own", 9_000, 0, 0, "PO-1"),
        Move("r2", "s", "x", "L1", 1, "A/01", "B/01", "available", "own", ""),
        ChangeStatus("r3", "s", "x", "L1", 1, "available", "damaged", "A/01", "own", ""),
        Reserve("r4", "s", "x", "H1", (ReserveLine(2, Strategy.FEFO, "", "", 1.5, "A"),), 60_000, "SO-1"),
        Commit("r5", "s", "x", "H1", 1, ""),
        Commit("r5b", "s", "x", "H1", None, ""),
        Release("r6", "s", "x", "H1", "", abort=True),
        Consume("r7", "s", "x", 3, "", "", "", Strategy.FIFO, "scan-1"),
        Adjust("r8", "s", "x", "L1", 0, "A/01", "available", "own", "count", ""),
    ]
    receive, consume = entry.ops[0], entry.ops[7]
    assert receive.source is External.SUPPLIER
    assert (consume.destination, consume.status) == (External.CUSTOMER, "")
    assert all(op.finance is None for op in entry.ops[:-1])
    [m] = entry.movements
    assert (m.src, m.dst, m.lot) == (External.SUPPLIER, KEY, Lot("L1", 1_000, 9_000))


def test_the_v1_schema_file_is_the_v1_shape() -> None:
    """Kept unchanged: old messages are decoded with it. No v2 field may leak into it."""
    v1 = json.loads((SCHEMA_DIR / "journal_batch.v1.avsc").read_text())
    ops = {o["name"]: [f["name"] for f in o["fields"]] for o in v1["fields"][4]["type"]["items"]}
    assert all("finance" not in ops[name] for name in COMMANDS)
    assert ops["Receive"][-1] == "doc_ref"
    assert ops["Consume"][-1] == "doc_ref"


def test_v2_only_appends_fields_with_defaults() -> None:
    """The evolution rule: v2 is v1 plus fields at the end of records, each with a default."""
    v1 = json.loads((SCHEMA_DIR / "journal_batch.v1.avsc").read_text())
    v2 = json.loads((SCHEMA_DIR / "journal_batch.v2.avsc").read_text())
    old = {o["name"]: o["fields"] for o in v1["fields"][4]["type"]["items"]}
    new = {o["name"]: o["fields"] for o in v2["fields"][4]["type"]["items"]}
    assert list(new) == list(old)
    for name, fields in old.items():
        assert new[name][: len(fields)] == fields
        assert all("default" in f for f in new[name][len(fields) :])
    assert [f["name"] for f in new["Receive"][len(old["Receive"]) :]] == ["source", "finance"]
    assert [f["name"] for f in new["Consume"][len(old["Consume"]) :]] == ["destination", "status", "finance"]
    assert v2["fields"][5] == v1["fields"][5]  # movements unchanged


def test_v2_decodes_a_v1_message_by_schema_resolution_too() -> None:
    """A reader that holds only the newest schema (another language, the bus) can read v1
    messages through Avro schema resolution: the defaults are the dataclasses' defaults."""
    receive = {
        "request_id": "r1",
        "sku": "s",
        "site": "x",
        "lot_id": "L1",
        "qty": 5,
        "bin": "",
        "status": "available",
        "owner": "own",
        "expires_at_ms": 0,
        "received_at_ms": 0,
        "opened_at_ms": 0,
        "doc_ref": "",
    }
    body = v1_message([(NS + "Receive", receive)], [])[:-4]
    record = fastavro.schemaless_reader(io.BytesIO(body), schema(1), schema(2), return_record_name=True)
    [(name, value)] = record["ops"]
    assert name == NS + "Receive"
    assert (value["source"], value["finance"]) == (External.SUPPLIER.value, None)


@pytest.mark.parametrize("version", [0, max(READABLE_VERSIONS) + 1, -1, 99])
def test_an_unknown_version_is_refused(version: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out, {"type": "record", "name": "V", "fields": [{"name": "v", "type": "int"}]}, {"v": version}
    )
    with pytest.raises(UnsupportedFormat, match="unknown journal schema version") as caught:
        decode_entry(frame(out.getvalue() + b"\x00" * 8))
    assert isinstance(caught.value, ValueError)
    assert (caught.value.format, caught.value.version) == ("journal batch (Avro)", version)


# ---- v3: the handed-off cell as a typed record; only appended fields ----


def _records(schema_json: object) -> dict[str, list[object]]:
    """Every named record of a schema, by name: its fields."""
    out: dict[str, list[object]] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "record":
                out[node["name"]] = node["fields"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema_json)
    return out


def _shallow(node: object) -> object:
    """A schema fragment with each nested record replaced by its name (records are compared
    one by one, so a grown nested record is not counted against the record that holds it)."""
    if isinstance(node, dict):
        if node.get("type") == "record":
            return node["name"]
        return {k: _shallow(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_shallow(v) for v in node]
    return node


def test_v4_only_appends_records_branches_and_defaulted_fields() -> None:
    """The evolution rule: every v3 record keeps its fields in order (new ones, with a
    default, at the end), every union keeps its branches (new ones at the end), and a v3
    message reads through Avro schema resolution with the v4 schema."""
    v3 = json.loads((SCHEMA_DIR / "journal_batch.v3.avsc").read_text())
    v4 = json.loads((SCHEMA_DIR / "journal_batch.avsc").read_text())
    old, new = _records(v3), _records(v4)
    grown_unions = {"JournalBatch", "Remembered"}  # ops; remembered command and answer
    for name, fields in old.items():
        kept = new[name][: len(fields)]
        assert [f["name"] for f in kept] == [f["name"] for f in fields], name  # type: ignore[index]
        assert name in grown_unions or _shallow(kept) == _shallow(fields), name
        assert all("default" in f for f in new[name][len(fields) :]), name  # type: ignore[operator]
    assert set(new) - set(old) == {
        *("Count", "CountLine", "ExpireLots", "ScrapOverAge", "OpenLot"),
        *("Counted", "LotCount", "HoldCut", "LotsExpired", "Scrapped", "LotOpened"),
        *("FreezeStock", "StockFrozen", "ZeroedLot", "DeviceOp", "DeviceOpDone", "DeviceMark"),
    }

    def names(items: list[object]) -> list[str]:
        return [i if isinstance(i, str) else i["name"] for i in items]  # type: ignore[index]

    ops_old, ops_new = (names(s["fields"][4]["type"]["items"]) for s in (v3, v4))
    assert ops_new[: len(ops_old)] == ops_old
    assert ops_new[len(ops_old) :] == ["Count", "ExpireLots", "ScrapOverAge", "OpenLot", "FreezeStock", "DeviceOp"]
    body = io.BytesIO(sample_v3_batch())
    writer, reader = (fastavro.parse_schema(json.loads(schema_path(v).read_text()), expand=True) for v in (3, 4))
    resolved = fastavro.schemaless_reader(body, writer, reader, return_record_name=True)
    assert resolved["movements"]
    assert all(m["source"] == "" and m["confidence"] == 0.0 for m in resolved["movements"])


def sample_v3_batch() -> bytes:
    return (Path(__file__).parents[1] / "data" / "journal" / "v3-batch-2.bin").read_bytes()[:-4]


def test_v3_only_appends_the_cell_to_adopt() -> None:
    """The evolution rule: v3 is v2 plus `Adopt.cell` (a default of null) at its end, and
    every v2 message reads through Avro schema resolution with the v3 schema."""
    v2 = json.loads((SCHEMA_DIR / "journal_batch.v2.avsc").read_text())
    v3 = json.loads((SCHEMA_DIR / "journal_batch.v3.avsc").read_text())
    old = {o["name"]: o["fields"] for o in v2["fields"][4]["type"]["items"]}
    new = {o["name"]: o["fields"] for o in v3["fields"][4]["type"]["items"]}
    assert list(new) == list(old)
    for name, fields in old.items():
        assert new[name][: len(fields)] == fields
        assert all("default" in f for f in new[name][len(fields) :])
    assert [f["name"] for f in new["Adopt"][len(old["Adopt"]) :]] == ["cell"]
    assert fastavro.schema.to_parsing_canonical_form(schema(3)) != fastavro.schema.to_parsing_canonical_form(schema(2))
    receipt = Movement(1, MovementKind.RECEIVE, "s", "x", "L1", 5, External.SUPPLIER, KEY, lot=Lot("L1", 1, 2))
    body = io.BytesIO()
    record = {"schema_version": 2, "shard": "s", "batch_seq": 1, "now_ms": 0, "ops": []}
    fastavro.schemaless_writer(body, schema(2), {**record, "movements": [movement_out(receipt)]})
    body.seek(0)
    # v3 names QuantKey and Lot in Movement instead of defining them there (CellState, earlier
    # in the schema, defines them): the same types, so resolution holds, given expanded schemas.
    writer, reader = (fastavro.parse_schema(json.loads(schema_path(v).read_text()), expand=True) for v in (2, 3))
    resolved = fastavro.schemaless_reader(body, writer, reader, return_record_name=True)
    assert movement_in(resolved["movements"][0]) == receipt


# ---- v7: Finance's typed attributes ----

ATTRIBUTES = ("customer_tier", "sales_channel", "tax_attribute", "gift", "return_of", "to_site", "to_company")
_token = st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,20}", fullmatch=True) | st.just("")
_ref = st.from_regex(r"[A-Za-z0-9._:\-@#+]{1,30}", fullmatch=True) | st.just("")
_finances = st.builds(
    Finance,
    currency=st.sampled_from(["", "EUR", "CNY"]),
    unit_price=st.sampled_from(["", "19.99", "300"]),
    tax_rate=st.sampled_from(["", "0.13"]),
    customer_tier=_token,
    sales_channel=_token,
    tax_attribute=_token,
    gift=st.booleans(),
    return_of=st.text(st.characters(exclude_characters="?", exclude_categories=("Cs",)), max_size=40),
    to_site=_ref,
    to_company=_ref,
)


@settings(max_examples=200, deadline=None)
@given(finance=_finances)
def test_every_finance_attribute_round_trips_on_every_command(finance: Finance) -> None:
    ops = round_trip(
        Receive("r1", "s", "x", "L1", 5, finance=finance),
        Reserve("r4", "s", "x", "H1", (ReserveLine(2, Strategy.FIFO),), 60_000, "SO-1", finance=finance),
        Commit("r5", "s", "x", "H1", 1, finance=finance),
        Consume("r7", "s", "x", 1, finance=finance),
    ).ops
    assert [op.finance for op in ops] == [finance] * len(ops)


def test_v7_only_appends_the_typed_attributes_to_finance() -> None:
    """The evolution rule: v7 is v6 with seven defaulted fields at the end of Finance, and a
    v6 message decodes with them at their defaults (what a v6 Finance meant)."""
    v6 = json.loads((SCHEMA_DIR / "journal_batch.v6.avsc").read_text())
    v7 = json.loads((SCHEMA_DIR / "journal_batch.avsc").read_text())
    old, new = _records(v6), _records(v7)
    assert set(new) == set(old)
    for name, fields in old.items():
        extra = new[name][len(fields) :]
        assert _shallow(new[name][: len(fields)]) == _shallow(fields), name
        assert [f["name"] for f in extra] == (list(ATTRIBUTES) if name == "Finance" else []), name  # type: ignore[index]
        assert all("default" in f for f in extra), name  # type: ignore[operator]
    v6_finance = {"currency": "EUR", "unit_cost": "", "unit_price": "19.99", "tax_rate": "0.20", "terms": ""}
    reserve = Reserve("r4", "s", "x", "H1", (ReserveLine(2, Strategy.FIFO),), 60_000, "SO-1?tier=key", finance=EUR)
    [out] = round_trip(reserve).ops  # today's record, cut back to v6's Finance
    record = {"schema_version": 6, "shard": "s", "batch_seq": 1, "now_ms": 0, "movements": [], "receipts": b""}
    name, value = op_out(out)
    value = {**value, "finance": (NS + "Finance", v6_finance)}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema(6), {**record, "ops": [(name, value)]})
    [decoded] = decode_entry(frame(body.getvalue())).ops
    assert decoded.finance == Finance("EUR", "", "19.99", "0.20", "")
    assert all(getattr(decoded.finance, a) in ("", False) for a in ATTRIBUTES)
    assert decoded.doc_ref == "SO-1?tier=key"  # the attributes of a v6 entry ride here still
