"""Inbound events from smart cabinets and WMS systems, and how their bytes are read.

One pydantic model per event type; JSON payloads (orjson) and Avro payloads (fastavro,
`schemas/inbound_event.avsc`) decode into the same flat dict and are validated by the
same model, so both formats mean exactly the same thing. `adapters/nats/ingest/EVENTS_IN.md`
documents every type with examples (tested: tests/unit/test_ingest_events.py reads them).

A message that cannot be read raises `BadEvent` (engine.domain.ingestion) with a
dead-letter code and a reason naming the field; nothing here touches the engine.
"""

from __future__ import annotations

import io
import json
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import fastavro
import orjson
from fastavro.schema import fingerprint, to_parsing_canonical_form
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

from engine.domain.deadletters import DeadLetterCode
from engine.domain.ingestion import BadEvent
from engine.domain.vague_dates import vague_reason, vague_word

MAX_QTY = 1_000_000  # one event moves at most this many base units: more is a typo, not stock
MAX_LINES = 256  # lines of one receipt / count / transfer (the engine's hold bound)
MAX_TAGS = 10_000  # RFID tags in one full count of one cabinet
MAX_PAYLOAD_BYTES = 1 << 20  # the inbound stream refuses bigger messages at publish time anyway
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

Qty = Annotated[StrictInt, Field(gt=0, le=MAX_QTY)]
CountQty = Annotated[StrictInt, Field(ge=0, le=MAX_QTY)]
Id = Annotated[str, Field(min_length=1, max_length=96, pattern=r"^[A-Za-z0-9._:\-@#+]+$")]
OptId = Annotated[str, Field(max_length=96, pattern=r"^[A-Za-z0-9._:\-@#+]*$")]
Bin = Annotated[str, Field(max_length=128)]
Text = Annotated[str, Field(max_length=256)]
Attribute = Annotated[str, Field(max_length=64, pattern=r"^([a-z0-9][a-z0-9_.\-]*)?$")]  # commands.check_finance


def _refuse_vague(value: Any) -> Any:
    """ "常温", "long-term" in an expiry are not dates: refused by name (issue 14)."""
    if isinstance(value, str) and vague_word(value) is not None:
        raise ValueError(vague_reason(value))
    return value


Expiry = Annotated[date | None, BeforeValidator(_refuse_vague)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FinanceIn(_Model):
    """The financial context the sender attaches; carried to the business events."""

    currency: str = ""
    unit_cost: str = ""
    unit_price: str = ""
    tax_rate: str = ""
    terms: str = ""
    # The attributes the finance rules match on (JSON only: the Avro form's Finance record
    # keeps its five fields, since a schemaless reader cannot tell an older sender's bytes).
    customer_tier: Attribute = ""
    sales_channel: Attribute = ""
    tax_attribute: Attribute = ""
    gift: StrictBool = False
    return_of: Annotated[str, Field(max_length=256, pattern=r"^[^?]*$")] = ""
    to_site: OptId = ""
    to_company: OptId = ""


class Envelope(_Model):
    event_id: Id  # becomes the commands' request id: a redelivery changes nothing
    occurred_at_ms: Annotated[StrictInt, Field(ge=0)] = 0
    doc_ref: Text = ""  # the sender's document: patient case, ASN, order, transfer note
    finance: FinanceIn | None = None


class Item(_Model):
    """What was scanned: a GS1 barcode, or the sku (and lot) spelled out."""

    barcode: Annotated[str, Field(max_length=512)] = ""
    sku: OptId = ""
    lot: OptId = ""
    expiry: Expiry = None


# ---- smart cabinets (a cabinet_id or a ward scanner's id, mapped to a site in the config) ----


class _CabinetEvent(Envelope):
    cabinet_id: Id


class ScanTake(_CabinetEvent, Item):
    """A unit taken out of the cabinet and scanned: consumed at once (never refused)."""

    type: Literal["scan_take"]
    qty: Qty = 1


class ScanReturn(_CabinetEvent, Item):
    """A unit scanned back in: unopened goes back to stock, damaged to the rejected role's status."""

    type: Literal["scan_return"]
    qty: Qty = 1
    condition: Literal["unopened", "damaged"] = "unopened"


class CountItem(Item):
    qty: CountQty = 1  # RFID: one tag = one unit; a line may aggregate


class RfidCount(_CabinetEvent):
    """A full RFID count of the cabinet: the books are set to what was counted."""

    type: Literal["rfid_count"]
    items: Annotated[tuple[CountItem, ...], Field(max_length=MAX_TAGS)]


class Door(_CabinetEvent):
    type: Literal["door"]
    state: Literal["open", "close"]
    user: OptId = ""


class TemperatureExcursion(_CabinetEvent):
    """The cabinet left its range: everything sellable in it is frozen for QA."""

    type: Literal["temperature_excursion"]
    temp_c: StrictFloat | StrictInt
    limit_c: StrictFloat | StrictInt
    skus: Annotated[tuple[Id, ...], Field(max_length=MAX_LINES)] = ()  # () = every sku in the cabinet


CabinetEvent = ScanTake | ScanReturn | RfidCount | Door | TemperatureExcursion

# ---- WMS (a warehouse code, mapped to a site in the config) ----


class _WmsEvent(Envelope):
    site: Id


class ReceiptLine(Item):
    qty: Qty
    owner: OptId = ""  # '' = own; consignment:<supplier>, custody:<party>
    bin: Bin = ""
    status: OptId = ""  # '' = the configured receipt status


class Receipt(_WmsEvent):
    """ASN lines received at the dock."""

    type: Literal["receipt"]
    asn: OptId = ""
    lines: Annotated[tuple[ReceiptLine, ...], Field(min_length=1, max_length=MAX_LINES)]


class StockLine(_Model):
    sku: Id
    lot: Id
    qty: Qty
    bin: Bin = ""
    owner: OptId = ""


class Putaway(_WmsEvent, StockLine):
    type: Literal["putaway"]
    from_bin: Bin = ""
    to_bin: Bin
    status: OptId = ""  # the status of the moved stock; '' = receiving


class Qc(_WmsEvent, StockLine):
    type: Literal["qc"]
    result: Literal["pass", "fail"]
    from_status: OptId = ""  # '' = receiving


class Pick(_WmsEvent, StockLine):
    type: Literal["pick"]


class Pack(_WmsEvent, StockLine):
    type: Literal["pack"]


class ShipLine(_Model):
    sku: Id
    lot: OptId = ""  # '' = FEFO
    qty: Qty
    bin: Bin = ""
    owner: OptId = ""


class Ship(_WmsEvent):
    """Goods left: the commit of a hold (hold_id), or packed stock issued line by line."""

    type: Literal["ship"]
    hold_id: OptId = ""
    # With hold_id: how much of each sku to commit (the rest is released); none = all.
    # Without: packed stock issued, line by line.
    lines: Annotated[tuple[ShipLine, ...], Field(max_length=MAX_LINES)] = ()


class CountLine(_Model):
    sku: Id
    lot: Id
    qty: CountQty
    status: OptId = ""  # '' = available
    owner: OptId = ""
    expiry: Expiry = None  # for a lot the books do not know yet


class CycleCount(_WmsEvent):
    type: Literal["cycle_count"]
    bin: Bin = ""
    lines: Annotated[tuple[CountLine, ...], Field(min_length=1, max_length=MAX_LINES)]


class TransferLine(_Model):
    sku: Id
    lot: OptId = ""  # '' = FEFO
    qty: Qty
    bin: Bin = ""


class TransferOut(_WmsEvent):
    """Goods dispatched to another site: they leave `site` and are in transit to `to_site`."""

    type: Literal["transfer_out"]
    transfer_id: Id
    to_site: Id
    lines: Annotated[tuple[TransferLine, ...], Field(min_length=1, max_length=MAX_LINES)]
    # Expected arrival (UTC epoch ms; 0 = not given): kept as the ship step's ETA of an engine
    # transfer it names (replenishment counts the units by it); a WMS-only transfer has no document to keep it.
    eta_ms: Annotated[StrictInt, Field(ge=0)] = 0


class ArrivalLine(TransferLine):
    lot: Id  # the lot that arrived (scanned at the dock): in-transit stock is kept by lot


class TransferIn(_WmsEvent):
    """The transfer arrived at `site`: its in-transit stock is received (into `bin`)."""

    type: Literal["transfer_in"]
    transfer_id: Id
    lines: Annotated[tuple[ArrivalLine, ...], Field(min_length=1, max_length=MAX_LINES)]


WmsEvent = Receipt | Putaway | Qc | Pick | Pack | Ship | CycleCount | TransferOut | TransferIn
InboundEvent = CabinetEvent | WmsEvent

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "cabinet": TypeAdapter(Annotated[CabinetEvent, Field(discriminator="type")]),
    "wms": TypeAdapter(Annotated[WmsEvent, Field(discriminator="type")]),
}
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "cabinet": ("scan_take", "scan_return", "rfid_count", "door", "temperature_excursion"),
    "wms": ("receipt", "putaway", "qc", "pick", "pack", "ship", "cycle_count", "transfer_out", "transfer_in"),
}


# ---- reading bytes ----


SINGLE_OBJECT_MARKER = b"\xc3\x01"  # Avro single-object encoding: marker, 8-byte fingerprint, record
# A bare version-1 record can never start with the marker: its first field is a string, and
# C3 01 as its length would be a negative varint.


@cache
def avro_schema(version: int = 0) -> Any:
    """The inbound event schema: the current one (0), or a frozen older version."""
    name = "inbound_event.avsc" if version == 0 else f"inbound_event.v{version}.avsc"
    return fastavro.parse_schema(json.loads((SCHEMA_DIR / name).read_text()))


def schema_fingerprint(schema: Any) -> bytes:
    """The 8 bytes a single-object payload names its writer schema by (CRC-64-AVRO of the
    schema's parsing canonical form, little-endian as the spec writes it)."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@cache
def writer_schemas() -> dict[bytes, Any]:
    """Every version a sender may write, by fingerprint: each is read into the current one."""
    return {schema_fingerprint(avro_schema(v)): avro_schema(v) for v in (1, 0)}


def decode(payload: bytes, fmt: str, source: str) -> InboundEvent:
    """Bytes → a validated event of `source` ("cabinet" | "wms"), or BadEvent."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadEvent(DeadLetterCode.DECODE, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    raw = _read_json(payload) if fmt == "json" else _read_avro(payload)
    try:
        return validate_event(raw, source)
    except BadEvent:
        raise
    except Exception as exc:  # a validator bug must not stall the stream: dead-letter it, loudly
        raise BadEvent(DeadLetterCode.SCHEMA, f"unreadable event: {type(exc).__name__}: {exc}") from exc


def validate_event(raw: Any, source: str) -> InboundEvent:
    if not isinstance(raw, dict):
        raise BadEvent(DeadLetterCode.SCHEMA, f"payload must be an object, not {type(raw).__name__}")
    given_id = raw.get("event_id")
    event_id = given_id if isinstance(given_id, str) else ""
    kind = raw.get("type")
    if kind not in EVENT_TYPES[source]:
        raise BadEvent(
            DeadLetterCode.SCHEMA,
            f"type: {kind!r} is not a {source} event (one of {', '.join(EVENT_TYPES[source])})",
            event_id,
        )
    try:
        return _ADAPTERS[source].validate_python(raw)
    except ValidationError as exc:
        # Right shape, wrong value (a quantity ≤ 0, an id with spaces) is invalid input;
        # a missing field, a wrong type or an unknown key is a schema violation.
        values_only = all(e["type"] in _VALUE_ERRORS for e in exc.errors())
        code = DeadLetterCode.INVALID if values_only else DeadLetterCode.SCHEMA
        raise BadEvent(code, describe(exc), event_id, f"{source}.{kind}") from None


_VALUE_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "string_pattern_mismatch",
        "string_too_long",
        "string_too_short",
        "too_long",
        "too_short",
        "date_from_datetime_parsing",
        "date_parsing",
        "value_error",
    }
)


def describe(exc: ValidationError) -> str:
    """The first few field errors as `field.path: message`, skipping the union tag."""
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err["loc"]][1:]  # loc[0] is the discriminator's value
        parts.append(f"{'.'.join(loc) or 'payload'}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _read_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(DeadLetterCode.DECODE, f"not JSON: {exc}") from None


def _read_avro(payload: bytes) -> dict[str, Any]:
    """A single-object payload is read with the writer schema its fingerprint names, resolved
    into the current one (fields it lacks take their defaults); a bare record is version 1."""
    writer, body = avro_schema(1), io.BytesIO(payload)
    if payload.startswith(SINGLE_OBJECT_MARKER):
        named = writer_schemas().get(payload[2:10])
        if named is None:
            raise BadEvent(
                DeadLetterCode.DECODE,
                f"written with an inbound_event schema this engine does not know (fingerprint {payload[2:10].hex()})",
            )
        writer = named
        body.seek(10)
    try:
        record = fastavro.schemaless_reader(body, writer, avro_schema(), return_record_name=True)
    except Exception as exc:  # fastavro raises many types on garbage; all mean "undecodable"
        raise BadEvent(DeadLetterCode.DECODE, f"not an inbound_event Avro record: {type(exc).__name__}") from None
    if not isinstance(record, dict):  # the schema is a record; anything else is not one of ours
        raise BadEvent(DeadLetterCode.SCHEMA, f"Avro record of an unexpected shape: {type(record).__name__}")
    try:
        return flatten_avro(record)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadEvent(DeadLetterCode.SCHEMA, f"Avro record of an unexpected shape: {exc}") from None


def flatten_avro(record: dict[str, Any]) -> dict[str, Any]:
    """The Avro envelope + body union → the same flat dict a JSON payload gives. Avro has
    no "absent", so its defaults ("" / null) are dropped and the model's defaults apply."""
    body = record.pop("body")
    _, fields = body if isinstance(body, tuple) else (None, body)
    flat = {k: v for k, v in {**record, **fields}.items() if v not in ("", None)}
    for key in ("lines", "items"):
        if key in flat:
            flat[key] = [{k: v for k, v in line.items() if v not in ("", None)} for line in flat[key]]
    finance = flat.get("finance")
    if isinstance(finance, tuple):  # a union branch comes back as (record name, fields)
        finance = finance[1]
    if finance:
        flat["finance"] = {k: v for k, v in finance.items() if v}
    if "skus" in flat and not flat["skus"]:
        del flat["skus"]
    return flat


def encode_avro(event: dict[str, Any], version: int = 0) -> bytes:
    """A flat event dict (the JSON shape) → the Avro payload, for senders, tests, the bench:
    single-object encoded with the current schema, or (`version=1`) a bare version-1 record as
    senders wrote before (no finance attributes, no transfer ETA)."""
    envelope = {"event_id", "type", "occurred_at_ms", "doc_ref", "finance", "cabinet_id", "site"}
    record: dict[str, Any] = {k: event.get(k) for k in envelope if k in event}
    body = {k: v for k, v in event.items() if k not in envelope}
    name = "lotwise.ingest.v1." + "".join(part.title() for part in event["type"].split("_"))
    record["body"] = (name, _fill_defaults(name, body))
    out = io.BytesIO()
    if version == 1:
        fastavro.schemaless_writer(out, avro_schema(1), record)
        return out.getvalue()
    out.write(SINGLE_OBJECT_MARKER + schema_fingerprint(avro_schema()))
    fastavro.schemaless_writer(out, avro_schema(), record)
    return out.getvalue()


def _fill_defaults(name: str, body: dict[str, Any]) -> dict[str, Any]:
    body = dict(body)
    for key in ("expiry",):
        if isinstance(body.get(key), date):
            body[key] = body[key].isoformat()
    for key in ("lines", "items"):
        if key in body:
            body[key] = [
                {k: (v.isoformat() if isinstance(v, date) else v) for k, v in line.items()} for line in body[key]
            ]
    return body
