"""A direct Avro writer for the journal entries of the order path (schemas/journal_batch.avsc).

Why. A shard encodes every journal entry it appends, and at 64 callers that encoding was
~45 % of a shard's CPU (bench/results/2026-12-08/shard/SECTION.md): records.py first turns
each op and movement into a dict, then fastavro walks the schema for every field of every
dict (~10 µs per movement on this machine). This module writes the same bytes straight
from the domain values: one small writer per schema node, compiled once from the schema
itself, reading each record's fields by name as attributes.

Same bytes, not a new format. The writers follow the schema's own field order and types,
so what they produce is exactly what fastavro writes for the same entry (the tests compare
the two byte for byte over every op type the writer takes and every committed sample).
It covers what the order path journals — Reserve, Commit, Release, RegisterHold and every
movement; an entry with any other op (a receipt, a count, a hand-off…), or a value of a
type the writer does not expect, returns None and the caller encodes it through fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from engine.domain.commands import Commit, Release, Reserve
from engine.domain.model import Movement, QuantKey
from engine.domain.shard import RegisterHold

Write = Callable[[bytearray, Any], None]

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = [bytes([n]) for n in range(128)]  # zig-zag values below 128 are one byte
_DOUBLE = struct.Struct("<d")


class NotWritable(Exception):
    """A value this writer does not take as it is: the caller falls back to fastavro."""


def write_long(buf: bytearray, value: int) -> None:
    """Avro int/long: zig-zag, then base-128 varint, low groups first."""
    if type(value) is not int and type(value) is not bool:
        raise NotWritable(f"{type(value).__name__} where a long is expected")
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise NotWritable("a long out of range")
    n = (value << 1) ^ (value >> 63)
    if n < 128:
        buf += _SMALL[n]
        return
    while n >= 128:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


def write_string(buf: bytearray, value: str) -> None:
    if not isinstance(value, str):
        raise NotWritable(f"{type(value).__name__} where a string is expected")
    data = value.encode()
    write_long(buf, len(data))
    buf += data


def write_bytes(buf: bytearray, value: bytes) -> None:
    write_long(buf, len(value))
    buf += value


def write_double(buf: bytearray, value: float) -> None:
    if type(value) is not float and type(value) is not int:
        raise NotWritable(f"{type(value).__name__} where a double is expected")
    buf += _DOUBLE.pack(value)


def write_boolean(buf: bytearray, value: bool) -> None:
    if type(value) is not bool:
        raise NotWritable(f"{type(value).__name__} where a boolean is expected")
    buf += b"\x01" if value else b"\x00"


_PRIMITIVES: dict[str, Write] = {
    "long": write_long,
    "int": write_long,
    "string": write_string,
    "double": write_double,
    "boolean": write_boolean,
}


class _Compiler:
    """Schema nodes → writers; named records are compiled once and shared by name."""

    def __init__(self, named: dict[str, dict[str, Any]]) -> None:
        self._named = named
        self._records: dict[str, Write] = {}

    def node(self, node: Any) -> Write:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _PRIMITIVES[node]
            return self.record(node)
        if isinstance(node, list):
            return self._union(node)
        kind = node["type"]
        if kind == "record":
            return self.record(node["name"])
        if kind == "array":
            return _array(self.node(node["items"]))
        return self.node(kind)

    def record(self, name: str) -> Write:
        writer = self._records.get(name)
        if writer is None:
            fields = tuple((f["name"], self.node(f["type"])) for f in self._named[name]["fields"])
            writer = self._records[name] = _record(fields)
        return writer

    def _union(self, branches: list[Any]) -> Write:
        """The unions the order path's records use: [null, X] and [string, QuantKey]."""
        if len(branches) == 2 and branches[0] == "null":
            return _optional(self.node(branches[1]))
        if branches == ["string", "QuantKey"]:
            return _bucket(self.record("QuantKey"))
        raise ValueError(f"union {branches} is not one the entry writer takes")


def _record(fields: Sequence[tuple[str, Write]]) -> Write:
    """One function per record, generated so that each field is a plain attribute read and
    a direct call (a loop over (name, writer) pairs cost twice as much per field); strings
    and longs, the commonest fields, are written inline."""
    names = [name for name, _ in fields]
    if any(not name.isidentifier() for name in names):
        raise ValueError(f"field names {names} are not all identifiers")
    scope: dict[str, Any] = {"_SMALL": _SMALL, "_write_long": write_long, "_str": str}
    lines = ["def write(buf, value):"]
    for i, (name, field) in enumerate(fields):
        if field is write_string:
            lines += [
                f"    text = value.{name}",
                "    if not isinstance(text, _str): raise TypeError('not a string')",
                "    data = text.encode()",
                "    size = len(data)",
                "    if size < 64: buf += _SMALL[size << 1]",
                "    else: _write_long(buf, size)",
                "    buf += data",
            ]
        elif field is write_long:
            lines += [
                f"    number = value.{name}",
                "    if type(number) is int and 0 <= number < 64: buf += _SMALL[number << 1]",
                "    else: _write_long(buf, number)",
            ]
        else:
            scope[f"_w{i}"] = field
            lines.append(f"    _w{i}(buf, value.{name})")
    if not fields:
        lines.append("    pass")
    exec("\n".join(lines), scope)
    write: Write = scope["write"]
    return write


def _array(item: Write) -> Write:
    """fastavro writes one block: the count, the items, then the empty block (0)."""

    def write(buf: bytearray, values: Sequence[Any]) -> None:
        if values:
            write_long(buf, len(values))
            for value in values:
                item(buf, value)
        buf += b"\x00"

    return write


def _optional(present: Write) -> Write:
    def write(buf: bytearray, value: Any) -> None:
        if value is None:
            buf += b"\x00"
        else:
            buf += b"\x02"  # branch 1, zig-zag
            present(buf, value)

    return write


def _bucket(quant_key: Write) -> Write:
    """A movement's side: an external bucket (branch 0, its string) or a quant (branch 1)."""

    def write(buf: bytearray, value: Any) -> None:
        if isinstance(value, QuantKey):
            buf += b"\x02"
            quant_key(buf, value)
        elif isinstance(value, str):  # External is a StrEnum: written as its value
            buf += b"\x00"
            write_string(buf, value)
        else:
            raise NotWritable(f"a {type(value).__name__} as a movement's bucket")

    return write


def _pair(buf: bytearray, value: Any) -> None:
    """RegisterHold's pairs are (sku, site) tuples in the domain, records in the schema."""
    sku, site = value
    write_string(buf, sku)
    write_string(buf, site)


def _named_records(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "record":
                found.setdefault(node["name"], node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


class EntryWriter:
    """Writes a journal entry of `schema` (the raw JSON schema, current version) from its
    parts, or says it cannot (None): then fastavro writes it."""

    def __init__(self, schema: dict[str, Any]) -> None:
        named = _named_records(schema)
        compiler = _Compiler(named)
        ops = next(f for f in schema["fields"] if f["name"] == "ops")["type"]["items"]
        branch = {(b if isinstance(b, str) else b["name"]): i for i, b in enumerate(ops)}
        self._ops: dict[type, tuple[bytes, Write]] = {
            Reserve: (_branch(branch["Reserve"]), compiler.record("Reserve")),
            Commit: (_branch(branch["Commit"]), compiler.record("Commit")),
            Release: (_branch(branch["Release"]), compiler.record("Release")),
        }
        header = _register_hold(named["RegisterHold"])
        self._ops[RegisterHold] = (_branch(branch["RegisterHold"]), lambda buf, op: header(buf, op.header))
        self._movement = compiler.record("Movement")
        top = [f["name"] for f in schema["fields"]]
        expected = ["schema_version", "shard", "batch_seq", "now_ms", "ops", "movements", "receipts"]
        if top != expected:
            raise ValueError(f"journal entry fields {top}, the writer knows {expected}")

    def write(
        self, version: int, shard: str, batch_seq: int, now_ms: int, ops: Sequence[Any], movements: Sequence[Movement]
    ) -> bytes | None:
        """The entry's Avro body (no receipt columns), or None if an op or value is not one
        this writer takes."""
        buf = bytearray()
        try:
            write_long(buf, version)
            write_string(buf, shard)
            write_long(buf, batch_seq)
            write_long(buf, now_ms)
            if ops:
                write_long(buf, len(ops))
                for op in ops:
                    known = self._ops.get(type(op))
                    if known is None:
                        return None
                    buf += known[0]
                    known[1](buf, op)
            buf += b"\x00"
            if movements:
                write_long(buf, len(movements))
                for movement in movements:
                    if type(movement) is not Movement:
                        return None
                    self._movement(buf, movement)
            buf += b"\x00"
            buf += b"\x00"  # receipts: empty bytes
        except (NotWritable, TypeError, ValueError, AttributeError, UnicodeEncodeError):
            return None
        return bytes(buf)


def _branch(index: int) -> bytes:
    buf = bytearray()
    write_long(buf, index)
    return bytes(buf)


def _register_hold(schema: dict[str, Any]) -> Write:
    """RegisterHold's record is its HoldHeader's fields; `pairs` are tuples (see _pair)."""
    fields: list[tuple[str, Write]] = []
    for field in schema["fields"]:
        if field["name"] == "pairs":
            fields.append(("pairs", _array(_pair)))
        else:
            fields.append((field["name"], _PRIMITIVES[field["type"]]))
    return _record(fields)
