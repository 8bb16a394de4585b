"""Domain values ↔ the plain dicts of the journal's Avro schemas (schemas/*.avsc).

Pure conversion, no framing and no versions (adapters/nats/codec.py and
adapters/nats/snapshot_codec.py own those): records, unions as (name, value) pairs, enums
as their values. Imports only the domain.
"""

from __future__ import annotations

from typing import Any

from engine.domain.catalog import Site, Sku
from engine.domain.commands import (
    Adjust,
    Adjusted,
    ChangeStatus,
    Command,
    Commit,
    Committed,
    Consume,
    Consumed,
    Count,
    Counted,
    CountLine,
    CountSource,
    DeviceOp,
    DeviceOpDone,
    ExpireLots,
    FreezeStock,
    HoldCut,
    LotCount,
    LotOpened,
    LotsExpired,
    Move,
    Moved,
    OpenLot,
    Receive,
    Received,
    Release,
    Released,
    Reply,
    Reserve,
    Reserved,
    ReserveLine,
    ScrapOverAge,
    Scrapped,
    StatusChanged,
    StockFrozen,
    Strategy,
)
from engine.domain.errors import FieldViolation
from engine.domain.model import (
    Allocation,
    External,
    Finance,
    HoldState,
    HoldView,
    Lot,
    Movement,
    MovementKind,
    Provenance,
    QuantKey,
)
from engine.domain.shard import Adopt, Expect, HandOff, HoldHeader, Op, PutSite, PutSku, RegisterHold, Sweep
from engine.domain.state import (
    CellState,
    HoldRecord,
    MovedPair,
    QuantBalance,
    Refusal,
    RefusalArg,
    Remembered,
    ShardState,
)

NS = "lotwise.journal.v1."
Union = tuple[str, dict[str, Any]]  # an Avro union branch: (full record name, record)

_PLAIN_OPS: dict[type, str] = {
    Receive: "Receive",
    Move: "Move",
    ChangeStatus: "ChangeStatus",
    Release: "Release",
    Commit: "Commit",
    Adjust: "Adjust",
    Expect: "Expect",
    HandOff: "HandOff",
    Sweep: "Sweep",
    ExpireLots: "ExpireLots",
    ScrapOverAge: "ScrapOverAge",
    OpenLot: "OpenLot",
    FreezeStock: "FreezeStock",
}
_PLAIN_BY_NAME = {name: cls for cls, name in _PLAIN_OPS.items()}
_REPLIES: dict[type, str] = {
    Received: "Received",
    Moved: "Moved",
    StatusChanged: "StatusChanged",
    Adjusted: "Adjusted",
    LotOpened: "LotOpened",
}
_REPLIES_BY_NAME = {name: cls for cls, name in _REPLIES.items()}


def fields(obj: Any) -> dict[str, Any]:
    """A slotted dataclass's fields as a dict (shallow; StrEnums stay str-compatible)."""
    return {name: getattr(obj, name) for name in obj.__slots__}


# ---- ops ----


def op_out(op: Op) -> Union:
    name = _PLAIN_OPS.get(type(op))
    if name is not None:
        return NS + name, _command_out(op)
    match op:
        case Reserve():
            value = _command_out(op)
            value["lines"] = [fields(line) for line in op.lines]
            return NS + "Reserve", value
        case Consume():
            return NS + "Consume", _command_out(op)
        case Count():
            value = _command_out(op)
            value["lines"] = [fields(line) for line in op.lines]
            return NS + "Count", value
        case DeviceOp():
            value = _command_out(op)
            value["command"] = op_out(op.command)
            return NS + "DeviceOp", value
        case PutSku():
            return NS + "PutSku", {"sku": sku_out(op.sku)}
        case PutSite():
            return NS + "PutSite", {"site": fields(op.site)}
        case RegisterHold():
            return NS + "RegisterHold", header_out(op.header)
        case Adopt():
            return NS + "Adopt", {
                "sku": op.sku,
                "site": op.site,
                "cell_blob": b"",  # the v1/v2 pickle's place; empty since v3
                "skus": [sku_out(s) for s in op.skus],
                "sites": [fields(s) for s in op.sites],
                "cell": (NS + "CellState", cell_out(op.cell)),
            }
    raise TypeError(f"{type(op).__name__} is not a journaled op")


def op_in(name: str, value: dict[str, Any]) -> Op:
    """An op from its record; an Adopt must carry its cell state (v3 on: the codec
    upcasts older ones first)."""
    short = name.removeprefix(NS)
    plain = _PLAIN_BY_NAME.get(short)
    if plain is not None:
        op: Op = plain(**_command_in(value))
        return op
    match short:
        case "Reserve":
            reserve_lines = tuple(
                ReserveLine(**{**line, "strategy": Strategy(line["strategy"])}) for line in value["lines"]
            )
            return Reserve(**{**_command_in(value), "lines": reserve_lines})
        case "Consume":
            return Consume(**{**_command_in(value), "strategy": Strategy(value["strategy"])})
        case "Count":  # its `source` is who counted, not an external bucket
            count_lines = tuple(CountLine(**line) for line in value["lines"])
            source = CountSource(value["source"])
            return Count(**{**_command_in({**value, "source": None}), "lines": count_lines, "source": source})
        case "DeviceOp":
            inner = command_in(value["command"])
            if not isinstance(inner, Receive | Consume | Count | Adjust | Move | ChangeStatus):
                raise ValueError(f"a device op cannot carry {type(inner).__name__}")
            return DeviceOp(**{**_command_in(value), "command": inner})
        case "PutSku":
            return PutSku(sku_in(value["sku"]))
        case "PutSite":
            return PutSite(Site(**value["site"]))
        case "RegisterHold":
            return RegisterHold(header_in(value))
        case "Adopt":
            cell = value.get("cell")
            if cell is None:
                raise ValueError(f"Adopt of {value['sku']}@{value['site']} carries no cell state")
            return Adopt(
                value["sku"],
                value["site"],
                cell_in(cell[1]),
                tuple(sku_in(s) for s in value["skus"]),
                tuple(Site(**s) for s in value["sites"]),
            )
    raise ValueError(f"unknown op {name}")


def command_out(cmd: Command) -> Union:
    return op_out(cmd)


def command_in(branch: Union) -> Command:
    cmd = op_in(*branch)
    if not isinstance(
        cmd,
        Receive
        | Move
        | ChangeStatus
        | Reserve
        | Commit
        | Release
        | Consume
        | Adjust
        | Count
        | ExpireLots
        | ScrapOverAge
        | OpenLot
        | FreezeStock
        | DeviceOp,
    ):
        raise ValueError(f"{branch[0]} is not a command")
    return cmd


def sku_out(sku: Sku) -> dict[str, Any]:
    return {**fields(sku), "substitutes": list(sku.substitutes)}


def sku_in(value: dict[str, Any]) -> Sku:
    """A catalog sku; one written before v4 lacks the hours and substitutes (defaults)."""
    return Sku(**{**value, "substitutes": tuple(value.get("substitutes", ()))})


def header_out(header: HoldHeader) -> dict[str, Any]:
    value = fields(header)
    value["pairs"] = [{"sku": sku, "site": site} for sku, site in header.pairs]
    return value


def header_in(value: dict[str, Any]) -> HoldHeader:
    pairs = tuple((p["sku"], p["site"]) for p in value["pairs"])
    return HoldHeader(**{**value, "pairs": pairs})


def _command_out(op: Any) -> dict[str, Any]:
    """An op's fields; a command's finance context as its branch of the Avro union."""
    value = fields(op)
    if "finance" in value:
        finance = value["finance"]
        value["finance"] = None if finance is None else (NS + "Finance", fields(finance))
    return value


def _command_in(value: dict[str, Any]) -> dict[str, Any]:
    """An op's decoded fields as its dataclass takes them: the finance record and the
    external buckets (Receive.source, Consume.destination) back to their types. Fields a
    v1 message lacks are simply absent, so the dataclass defaults apply."""
    out = dict(value)
    finance = out.get("finance")
    if finance is not None:
        out["finance"] = Finance(**finance[1])
    for name in ("source", "destination"):
        if out.get(name) is not None:
            out[name] = External(out[name])
    return out


# ---- movements ----


def _bucket_out(bucket: QuantKey | External) -> Any:
    if isinstance(bucket, QuantKey):
        return (NS + "QuantKey", fields(bucket))
    return bucket.value


def movement_out(m: Movement) -> dict[str, Any]:
    return {
        "seq": m.seq,
        "kind": m.kind.value,
        "sku": m.sku,
        "site": m.site,
        "lot_id": m.lot_id,
        "qty": m.qty,
        "src": _bucket_out(m.src),
        "dst": _bucket_out(m.dst),
        "held_key": None if m.held_key is None else (NS + "QuantKey", fields(m.held_key)),
        "held_delta": m.held_delta,
        "hold_id": m.hold_id,
        "request_id": m.request_id,
        "doc_ref": m.doc_ref,
        "at_ms": m.at_ms,
        "lot": None if m.lot is None else (NS + "Lot", fields(m.lot)),
        "expires_at_ms": m.expires_at_ms,
        "source": m.source,
        "confidence": m.confidence,
        "business_at_ms": m.business_at_ms,
    }


_KINDS = {kind.value: kind for kind in MovementKind}
_EXTERNALS = {bucket.value: bucket for bucket in External}


def movement_in(value: dict[str, Any], keys: dict[tuple[str, ...], QuantKey] | None = None) -> Movement:
    """A movement from its record. `keys`: the quant keys already made while decoding this
    entry, by their fields: a reserve names one quant three times (src, dst, held), a batch
    the same few quants often, and each is one immutable QuantKey. The shared decode builds
    every movement of every journal message (adapters/nats/codec.py), so this is hot."""
    if keys is None:
        keys = {}
    held_key = value["held_key"]
    lot = value["lot"]
    kind = _KINDS.get(value["kind"])
    if kind is None:
        raise ValueError(f"unknown movement kind {value['kind']!r}")
    return Movement(
        value["seq"],
        kind,
        value["sku"],
        value["site"],
        value["lot_id"],
        value["qty"],
        _bucket_of(value["src"], keys),
        _bucket_of(value["dst"], keys),
        None if held_key is None else _quant_key(held_key[1], keys),
        value["held_delta"],
        value["hold_id"],
        value["request_id"],
        value["doc_ref"],
        value["at_ms"],
        None if lot is None else Lot(**lot[1]),
        value["expires_at_ms"],
        _provenance_in(value),
    )


def _bucket_of(value: Any, keys: dict[tuple[str, ...], QuantKey]) -> QuantKey | External:
    if isinstance(value, tuple):
        return _quant_key(value[1], keys)
    bucket = _EXTERNALS.get(value)
    return External(value) if bucket is None else bucket  # External(): the enum's own refusal


def _quant_key(fields: dict[str, str], keys: dict[tuple[str, ...], QuantKey]) -> QuantKey:
    # A QuantKey record has exactly these four fields, in this order (schemas/journal_batch).
    known = tuple(fields.values())
    key = keys.get(known)
    if key is None:
        key = keys[known] = QuantKey(**fields)
    return key


def _provenance_in(value: dict[str, Any]) -> Provenance | None:
    """Since v4: who counted, how sure, when it happened; absent (older entries) or empty: None."""
    source, confidence, business_at_ms = (
        value.get("source", ""),
        value.get("confidence", 0.0),
        value.get("business_at_ms", 0),
    )
    if not source and not confidence and not business_at_ms:  # what Provenance() == Provenance(...) says
        return None
    return Provenance(source, confidence, business_at_ms)


# ---- remembered answers ----


def _view_out(view: HoldView) -> dict[str, Any]:
    value = fields(view)
    value["state"] = view.state.value
    value["allocations"] = [fields(a) for a in view.allocations]
    return value


def _view_in(value: dict[str, Any]) -> HoldView:
    allocations = tuple(Allocation(**a) for a in value["allocations"])
    return HoldView(**{**value, "state": HoldState(value["state"]), "allocations": allocations})


def _arg_out(arg: RefusalArg) -> Any:
    if isinstance(arg, tuple):
        return [fields(v) for v in arg]
    return arg


def _arg_in(value: Any) -> RefusalArg:
    if isinstance(value, list):
        return tuple(FieldViolation(**v) for v in value)
    if isinstance(value, str | int | dict):
        return value
    raise ValueError(f"a refusal argument of type {type(value).__name__}")


def answer_out(answer: Reply | Refusal) -> Union:
    name = _REPLIES.get(type(answer))
    if name is not None:
        return NS + name, fields(answer)
    match answer:
        case Reserved():
            return NS + "Reserved", {"hold": _view_out(answer.hold)}
        case Committed():
            value = {**fields(answer), "hold": _view_out(answer.hold)}
            return NS + "Committed", value
        case Released():
            return NS + "Released", {**fields(answer), "hold": _view_out(answer.hold)}
        case Consumed():
            return NS + "Consumed", {**fields(answer), "allocations": [fields(a) for a in answer.allocations]}
        case Counted():
            cuts = [fields(c) for c in answer.holds_cut]
            return NS + "Counted", {"lots": [fields(c) for c in answer.lots], "holds_cut": cuts}
        case DeviceOpDone():
            reply = None if answer.reply is None else answer_out(answer.reply)
            return NS + "DeviceOpDone", {**fields(answer), "reply": reply}
        case LotsExpired() | Scrapped() | StockFrozen():
            value = {**fields(answer), "lot_ids": list(answer.lot_ids)}
            value["holds_cut"] = [fields(c) for c in answer.holds_cut]
            return NS + type(answer).__name__, value
        case Refusal():
            return NS + "Refusal", {"kind": answer.kind, "args": [_arg_out(a) for a in answer.args]}
    raise TypeError(f"{type(answer).__name__} is not a remembered answer")


def answer_in(name: str, value: dict[str, Any]) -> Reply | Refusal:
    short = name.removeprefix(NS)
    plain = _REPLIES_BY_NAME.get(short)
    if plain is not None:
        reply: Reply = plain(**value)
        return reply
    match short:
        case "Reserved":
            return Reserved(_view_in(value["hold"]))
        case "Committed":
            return Committed(**{**value, "hold": _view_in(value["hold"])})
        case "Released":
            return Released(**{**value, "hold": _view_in(value["hold"])})
        case "Consumed":
            return Consumed(**{**value, "allocations": tuple(Allocation(**a) for a in value["allocations"])})
        case "Counted":
            lots = tuple(LotCount(**c) for c in value["lots"])
            return Counted(lots, tuple(HoldCut(**c) for c in value["holds_cut"]))
        case "DeviceOpDone":
            inner = None if value["reply"] is None else answer_in(*value["reply"])
            if not isinstance(inner, Received | Consumed | Counted | Adjusted | Moved | StatusChanged | None):
                raise ValueError(f"a device op cannot answer {type(inner).__name__}")
            return DeviceOpDone(**{**value, "reply": inner})
        case "LotsExpired" | "Scrapped" | "StockFrozen":
            cls = {"LotsExpired": LotsExpired, "Scrapped": Scrapped, "StockFrozen": StockFrozen}[short]
            cuts = tuple(HoldCut(**c) for c in value["holds_cut"])
            return cls(**{**value, "lot_ids": tuple(value["lot_ids"]), "holds_cut": cuts})
        case "Refusal":
            return Refusal(value["kind"], tuple(_arg_in(a) for a in value["args"]))
    raise ValueError(f"unknown answer {name}")


# ---- cell and shard state ----


def _hold_out(record: HoldRecord) -> dict[str, Any]:
    value = fields(record)
    value["allocations"] = [{"key": fields(key), "qty": qty} for key, qty in record.allocations]
    value["state"] = record.state.value
    return value


def _hold_in(value: dict[str, Any]) -> HoldRecord:
    allocations = tuple((QuantKey(**a["key"]), a["qty"]) for a in value["allocations"])
    return HoldRecord(**{**value, "allocations": allocations, "state": HoldState(value["state"])})


def cell_out(cell: CellState) -> dict[str, Any]:
    return {
        "sku": cell.sku,
        "site": cell.site,
        "opened_shelf_life_ms": cell.opened_shelf_life_ms,
        "seq": cell.seq,
        "quants": [{"key": fields(b.key), "qty": b.qty, "held": b.held} for b in cell.quants],
        "externals": [{"bucket": bucket.value, "qty": qty} for bucket, qty in cell.externals],
        "lots": [fields(lot) for lot in cell.lots],
        "active": [_hold_out(r) for r in cell.active],
        "resolved": [_hold_out(r) for r in cell.resolved],
        "remembered": [
            {
                "request_id": r.request_id,
                "at_ms": r.at_ms,
                "command": command_out(r.command),
                "answer": answer_out(r.answer),
            }
            for r in cell.remembered
        ],
        "next_expiry_ms": cell.next_expiry_ms,
        "zeroed": [{"lot_id": lot_id, "since_ms": since} for lot_id, since in cell.zeroed],
        "devices": [{"device_id": device, "seq": seq} for device, seq in cell.devices],
    }


def cell_in(value: dict[str, Any]) -> CellState:
    return CellState(
        sku=value["sku"],
        site=value["site"],
        opened_shelf_life_ms=value["opened_shelf_life_ms"],
        seq=value["seq"],
        quants=tuple(QuantBalance(QuantKey(**b["key"]), b["qty"], b["held"]) for b in value["quants"]),
        externals=tuple((External(e["bucket"]), e["qty"]) for e in value["externals"]),
        lots=tuple(Lot(**lot) for lot in value["lots"]),
        active=tuple(_hold_in(r) for r in value["active"]),
        resolved=tuple(_hold_in(r) for r in value["resolved"]),
        remembered=tuple(
            Remembered(r["request_id"], r["at_ms"], command_in(r["command"]), answer_in(*r["answer"]))
            for r in value["remembered"]
        ),
        next_expiry_ms=value["next_expiry_ms"],
        zeroed=tuple((z["lot_id"], z["since_ms"]) for z in value.get("zeroed", ())),  # since v4
        devices=tuple((d["device_id"], d["seq"]) for d in value.get("devices", ())),  # since v4
    )


def shard_out(state: ShardState) -> dict[str, Any]:
    return {
        "skus": [sku_out(s) for s in state.skus],
        "sites": [fields(s) for s in state.sites],
        "headers": [header_out(h) for h in state.headers],
        "moved": [fields(m) for m in state.moved],
        "expecting": [{"sku": sku, "site": site} for sku, site in state.expecting],
        "with_holds": [{"sku": sku, "site": site} for sku, site in state.with_holds],
        "cells": [cell_out(c) for c in state.cells],
    }


def shard_in(name: str, value: dict[str, Any]) -> ShardState:
    return ShardState(
        name=name,
        skus=tuple(sku_in(s) for s in value["skus"]),
        sites=tuple(Site(**s) for s in value["sites"]),
        headers=tuple(header_in(h) for h in value["headers"]),
        moved=tuple(MovedPair(**m) for m in value["moved"]),
        expecting=tuple((p["sku"], p["site"]) for p in value["expecting"]),
        with_holds=tuple((p["sku"], p["site"]) for p in value["with_holds"]),
        cells=tuple(cell_in(c) for c in value["cells"]),
    )
