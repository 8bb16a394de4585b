"""Reading inbound events: the documented examples in both encodings, typed failures for
bad bytes, the config file, and the consumer's pure decisions (no NATS, no engine)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.nats.ingest.config import (
    EXAMPLE_CONFIG,
    Consumer,
    IngestConfigError,
    SubjectBinding,
    default_subjects,
    load_ingest_config,
)
from adapters.nats.ingest.consumer import _Order, binding_for, verdict
from adapters.nats.ingest.events import EVENT_TYPES, BadEvent, decode, encode_avro
from engine.domain.deadletters import DeadLetterCode
from engine.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InsufficientStock,
    InvalidArgument,
    NotFound,
    RequestConflict,
    Unavailable,
)

README = Path(__file__).resolve().parents[2] / "adapters" / "nats" / "ingest" / "README.md"


def documented_examples() -> list[tuple[str, dict[str, Any]]]:
    text = README.read_text()
    return [(src, orjson.loads(body)) for src, body in re.findall(r"```json (cabinet|wms)\n(.*?)```", text, re.S)]


def test_the_readme_documents_every_event_type() -> None:
    documented = {(src, raw["type"]) for src, raw in documented_examples()}
    assert documented == {(src, t) for src, types in EVENT_TYPES.items() for t in types}


@pytest.mark.parametrize(("source", "raw"), documented_examples(), ids=lambda v: v if isinstance(v, str) else v["type"])
def test_documented_examples_read_the_same_in_json_and_avro(source: str, raw: dict[str, Any]) -> None:
    from_json = decode(orjson.dumps(raw), "json", source)
    from_avro = decode(encode_avro(raw), "avro", source)
    assert from_json == from_avro
    assert from_json.event_id == raw["event_id"]


@pytest.mark.parametrize(
    ("payload", "fmt", "code", "words"),
    [
        (b"{not json", "json", DeadLetterCode.DECODE, "not JSON"),
        (b"\x00\x01\x02", "avro", DeadLetterCode.DECODE, "Avro"),
        (b"[1, 2]", "json", DeadLetterCode.SCHEMA, "must be an object"),
        (
            b'{"event_id": "e", "type": "beam_up", "cabinet_id": "C"}',
            "json",
            DeadLetterCode.SCHEMA,
            "not a cabinet event",
        ),
        (b'{"event_id": "e", "type": "scan_take"}', "json", DeadLetterCode.SCHEMA, "cabinet_id"),
        (
            b'{"event_id": "e", "type": "scan_take", "cabinet_id": "C", "qty": "2"}',
            "json",
            DeadLetterCode.SCHEMA,
            "qty",
        ),
        (
            b'{"event_id": "e", "type": "scan_take", "cabinet_id": "C", "colour": 1}',
            "json",
            DeadLetterCode.SCHEMA,
            "colour",
        ),
        (b'{"event_id": "e", "type": "scan_take", "cabinet_id": "C", "qty": 0}', "json", DeadLetterCode.INVALID, "qty"),
        (
            b'{"event_id": "e", "type": "scan_take", "cabinet_id": "C", "qty": 5000000}',
            "json",
            DeadLetterCode.INVALID,
            "qty",
        ),
        (
            b'{"event_id": "has space", "type": "door", "cabinet_id": "C", "state": "open"}',
            "json",
            DeadLetterCode.INVALID,
            "event_id",
        ),
    ],
)
def test_bad_payloads_are_typed_and_name_the_field(payload: bytes, fmt: str, code: DeadLetterCode, words: str) -> None:
    with pytest.raises(BadEvent) as bad:
        decode(payload, fmt, "cabinet")
    assert bad.value.code is code
    assert words in bad.value.reason


def test_a_wms_event_on_a_cabinet_subject_is_a_schema_violation() -> None:
    raw = {"event_id": "e", "type": "receipt", "site": "dc", "lines": [{"sku": "s", "lot": "l", "qty": 1}]}
    with pytest.raises(BadEvent) as bad:
        decode(orjson.dumps(raw), "json", "cabinet")
    assert bad.value.code is DeadLetterCode.SCHEMA


@given(st.binary(max_size=300))
def test_any_bytes_either_decode_or_are_a_typed_bad_event(data: bytes) -> None:
    for fmt in ("json", "avro"):
        for source in ("cabinet", "wms"):
            reason = "decoded"
            try:
                decode(data, fmt, source)
            except BadEvent as bad:
                reason = bad.reason
            assert reason  # anything else raised fails the test


# ---- configuration ----


def test_the_example_config_loads_and_maps_the_demo_devices() -> None:
    config = load_ingest_config(EXAMPLE_CONFIG, "lotwise")
    assert config.stream == "LOTWISE_INGEST_lotwise"
    assert config.cabinets["ICU-CAB-01"].site == "CAB-MGH-ICU"
    assert config.subjects == default_subjects("lotwise")


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[cabinets.X]\nsite = 'a'\nreturn_status = 'teleported'\n", "ingest_config"),
        ("[gtins]\n'123' = 'sku'\n", "ingest_config:gtins"),
        ("[[subjects]]\nsubject = 'a.>.b'\nsource = 'cabinet'\n", "ingest_config:subjects.0.subject"),
        ("[consumer]\nmax_deliver = 2\nbackoff_s = [1.0, 2.0]\n", "ingest_config:consumer"),
        ("[consumer]\nack_wait_s = 300\n", "ingest_config:consumer"),
        ("[consumer]\nfetch_size = 3\n", "ingest_config:consumer.fetch_size"),
        ("not = [valid", "ingest_config"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, toml: str, field: str) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text(toml)
    with pytest.raises(IngestConfigError) as err:
        load_ingest_config(path, "lotwise")
    assert err.value.field == field


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(IngestConfigError, match="cannot read"):
        load_ingest_config(tmp_path / "nope.toml", "lotwise")


def test_namespaces_get_subjects_of_their_own() -> None:
    assert default_subjects("lotwise")[0].subject == "lotwise.in.cabinet.>"
    assert default_subjects("east")[0].subject == "lotwise.east.in.cabinet.>"


# ---- the consumer's decisions ----


def test_bindings_match_nats_wildcards() -> None:
    bindings = (
        SubjectBinding(subject="in.avro.cabinet.>", source="cabinet", format="avro"),
        SubjectBinding(subject="in.*.cab", source="cabinet"),
        SubjectBinding(subject="in.wms.>", source="wms"),
    )
    assert binding_for("in.avro.cabinet.X.Y", bindings) is bindings[0]
    assert binding_for("in.x.cab", bindings) is bindings[1]
    assert binding_for("in.x.cab.more", bindings) is None
    assert binding_for("in.wms", bindings) is None  # '>' needs at least one token
    assert binding_for("in.wms.dc", bindings) is bindings[2]


CFG = Consumer(max_deliver=4, backoff_s=(0.5, 2.0), refused_deliveries=2)


@pytest.mark.parametrize(
    ("exc", "deliveries", "dead", "code"),
    [
        (BadEvent(DeadLetterCode.UNKNOWN_REF, "cabinet"), 1, True, DeadLetterCode.UNKNOWN_REF),
        (InvalidArgument([FieldViolation("qty", "must be > 0")]), 1, True, DeadLetterCode.INVALID),
        (NotFound("sku", "x"), 1, True, DeadLetterCode.UNKNOWN_REF),
        (NotFound("site", "x"), 1, True, DeadLetterCode.UNKNOWN_REF),
        (RequestConflict("e1"), 1, True, DeadLetterCode.REFUSED),
        (FailedPrecondition("TRANSITION_NOT_ALLOWED", "no"), 1, True, DeadLetterCode.REFUSED),
        (NotFound("lot", "x"), 1, False, DeadLetterCode.REFUSED),  # maybe its receipt comes later
        (NotFound("lot", "x"), 2, True, DeadLetterCode.REFUSED),
        (InsufficientStock("s", "x", 5, 1), 1, False, DeadLetterCode.REFUSED),
        (Unavailable("recovering"), 3, False, DeadLetterCode.GAVE_UP),
        (Unavailable("recovering"), 4, True, DeadLetterCode.GAVE_UP),
        (TimeoutError(), 1, False, DeadLetterCode.GAVE_UP),
    ],
)
def test_verdicts(exc: BaseException, deliveries: int, dead: bool, code: DeadLetterCode) -> None:
    v = verdict(exc, deliveries, CFG)
    assert (v.dead, v.code) == (dead, code)
    if not dead:
        assert v.delay_s == CFG.backoff_s[min(deliveries, 2) - 1]


async def test_ordering_pairs_in_sequence_scans_commute_and_site_events_are_barriers() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    order = _Order()
    receipt, putaway, scan, count, after = (loop.create_future() for _ in range(5))
    order.add([("cath", "dc")], False, receipt)
    assert order.after([("cath", "dc")], False) == [receipt]
    order.add([("cath", "dc")], False, putaway)
    assert order.after([("strip", "dc")], False) == []  # another pair: concurrent
    assert order.after([("cath", "dc")], True) == []  # a scan does not wait for its pair
    order.add([("strip", "dc")], True, scan)
    assert set(order.after([("*", "dc")], False)) == {receipt, putaway, scan}
    order.add([("*", "dc")], False, count)
    assert order.after([("cath", "dc")], False) == [count]
    order.add([("cath", "dc")], False, after)
    assert order.after([("cath", "icu")], False) == []


def test_a_json_event_carries_the_typed_finance_attributes_and_a_bad_one_is_named() -> None:
    from adapters.nats.ingest.apply import finance_of
    from engine.domain.model import Finance

    fields = {
        "currency": "CNY",
        "unit_price": "300",
        "customer_tier": "key",
        "sales_channel": "pos",
        "tax_attribute": "deemed_sale",
        "gift": True,
        "return_of": "SO 2026/1",
        "to_site": "BJ01",
        "to_company": "acme-bj",
    }
    raw = {"event_id": "e1", "type": "scan_take", "cabinet_id": "C", "sku": "strip", "finance": fields}
    event = decode(orjson.dumps(raw), "json", "cabinet")
    assert finance_of(event.finance) == Finance(**fields)  # type: ignore[attr-defined]
    for name, bad in (("customer_tier", "Key"), ("gift", "yes"), ("return_of", "SO?x"), ("to_site", "B J")):
        payload = orjson.dumps({**raw, "finance": {**fields, name: bad}})
        with pytest.raises(BadEvent) as refused:
            decode(payload, "json", "cabinet")
        assert name in refused.value.reason


SAMPLES = Path(__file__).resolve().parents[1] / "data" / "ingest"
# A transfer_out with finance, as a sender wrote it with inbound_event.v1.avsc (bare record):
# committed bytes, never regenerated, so the engine keeps reading what senders already send.
V1_SAMPLE = {
    "event_id": "wms-tro-v1",
    "type": "transfer_out",
    "site": "WH-EAST",
    "to_site": "FW-BOS",
    "transfer_id": "TR-4410",
    "lines": [{"sku": "IVC-20G", "qty": 100}],
    "doc_ref": "TN-4410?tier=key",
    "finance": {"currency": "USD", "unit_cost": "1.25"},
}


def test_a_version_1_payload_still_reads() -> None:
    payload = (SAMPLES / "inbound-v1-transfer_out.bin").read_bytes()
    assert payload == encode_avro(V1_SAMPLE, version=1)  # the frozen schema still writes them
    event = decode(payload, "avro", "wms")
    assert event == decode(orjson.dumps(V1_SAMPLE), "json", "wms")
    assert event.eta_ms == 0  # type: ignore[union-attr]
    assert event.finance is not None
    assert (event.finance.unit_cost, event.finance.customer_tier) == ("1.25", "")


def test_the_current_schema_carries_the_finance_attributes_and_the_eta() -> None:
    raw = {
        **V1_SAMPLE,
        "event_id": "wms-tro-v2",
        "eta_ms": 1_765_180_800_000,
        "finance": {
            "currency": "USD",
            "unit_cost": "1.25",
            "customer_tier": "key",
            "sales_channel": "pos",
            "tax_attribute": "deemed_sale",
            "gift": True,
            "return_of": "SO-1",
            "to_site": "FW-BOS",
            "to_company": "acme-east",
        },
    }
    payload = encode_avro(raw)
    assert payload[:2] == b"\xc3\x01"  # single-object: the writer schema named by fingerprint
    event = decode(payload, "avro", "wms")
    assert event == decode(orjson.dumps(raw), "json", "wms")
    assert event.eta_ms == 1_765_180_800_000  # type: ignore[union-attr]
    assert event.finance is not None
    assert event.finance.gift
    assert event.finance.to_company == "acme-east"


def test_a_payload_naming_an_unknown_schema_is_a_decode_dead_letter() -> None:
    from adapters.nats.ingest.events import avro_schema, schema_fingerprint

    body = encode_avro(V1_SAMPLE)[10:]
    with pytest.raises(BadEvent, match="does not know") as refused:
        decode(b"\xc3\x01" + b"\x01" * 8 + body, "avro", "wms")
    assert refused.value.code is DeadLetterCode.DECODE
    # The frozen version's fingerprint is fixed: editing inbound_event.v1.avsc would strand senders.
    assert schema_fingerprint(avro_schema(1)).hex() == "878196f487e20613"
    assert schema_fingerprint(avro_schema()) != schema_fingerprint(avro_schema(1))
