"""Exports to external ledgers, with field maps as data (engine/finance/exports.toml).

A profile names a format (csv, json, xlsx, u8 — a GBK text layout one line per entry, k3
— a DBF table in code page 936), an encoding, and its fields in order: each field's
column name and where its value comes from (`voucher.*`, `line.*`, `const:<text>`), with
an optional width that the value is cut to (in bytes of the encoding, as U8 counts).
Reversals are exported like any voucher: red-letter lines carry negative amounts in the
same column. Every voucher is checked before it is written: balanced, lines with exactly
one of debit or credit non-zero.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from engine.finance.money import ZERO, text
from engine.finance.vouchers import Line, Voucher

FORMATS = ("csv", "json", "xlsx", "u8", "k3")
REASON_UNBALANCED = "VOUCHER_UNBALANCED"
PROFILES_PATH = Path(__file__).with_name("exports.toml")


@dataclass(frozen=True, slots=True)
class ExportField:
    name: str
    source: str
    width: int = 0  # 0: no limit
    kind: str = "C"  # k3 DBF type: C (text), N (number), D (date)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    format: str
    encoding: str
    fields: tuple[ExportField, ...]
    extension: str


_VOUCHER_SOURCES = {
    "voucher_id", "company", "kind", "date", "period", "year", "summary", "preparer", "reviewer",
    "reversal_of", "currency", "number", "state", "terms",
}  # fmt: skip
_LINE_SOURCES = {
    "line_no",
    "account",
    "account_name",
    "role",
    "debit",
    "credit",
    "dc",
    "amount",
    "sku",
    "lot_id",
    "qty",
    "memo",
}


def parse_profiles(doc: dict[str, Any], source: str) -> dict[str, Profile]:
    problems: list[FieldViolation] = []
    out: dict[str, Profile] = {}
    for name, raw in (doc.get("profile") or {}).items():
        where = f"{source}: profile {name}"
        fmt = raw.get("format", "")
        if fmt not in FORMATS:
            problems.append(FieldViolation(f"profile.{name}.format", f"{where}: format must be one of {FORMATS}"))
        fields: list[ExportField] = []
        for i, f in enumerate(raw.get("fields", []), 1):
            src = str(f.get("source", ""))
            scope, _, attr = src.partition(".")
            ok = (
                src.startswith("const:")
                or (scope == "voucher" and attr in _VOUCHER_SOURCES)
                or (scope == "line" and attr in _LINE_SOURCES)
            )
            if not f.get("name") or not ok:
                problems.append(
                    FieldViolation(f"profile.{name}.fields[{i}]", f"{where}: field {i} has an unknown source {src!r}")
                )
                continue
            fields.append(ExportField(str(f["name"]), src, int(f.get("width", 0)), str(f.get("kind", "C"))))
        if not fields:
            problems.append(FieldViolation(f"profile.{name}.fields", f"{where}: needs fields"))
        ext = {"u8": "txt", "k3": "dbf"}.get(fmt, fmt)
        out[name] = Profile(name, fmt, str(raw.get("encoding", "utf-8")), tuple(fields), ext)
    if problems:
        raise InvalidArgument(problems)
    return out


def default_profiles() -> dict[str, Profile]:
    return parse_profiles(tomllib.loads(PROFILES_PATH.read_text(encoding="utf-8")), str(PROFILES_PATH))


def check_exportable(voucher: Voucher) -> None:
    """Balanced, and every line on exactly one side (U8 refuses anything else)."""
    if voucher.debit_total != voucher.credit_total or any(
        (ln.debit != ZERO) == (ln.credit != ZERO) for ln in voucher.lines
    ):
        raise FailedPrecondition(
            REASON_UNBALANCED, f"voucher {voucher.voucher_id} is not exportable: unbalanced or a two-sided line"
        )


def _value(f: ExportField, v: Voucher, ln: Line, number: int) -> Any:
    if f.source.startswith("const:"):
        return f.source[len("const:") :]
    scope, _, attr = f.source.partition(".")
    day = datetime.fromtimestamp(v.at_ms / 1000, UTC).date()
    if scope == "voucher":
        special = {"date": day.isoformat(), "period": day.month, "year": day.year, "number": number}
        return special[attr] if attr in special else getattr(v, attr)
    if attr == "dc":
        return "D" if ln.debit != ZERO else "C"
    if attr == "amount":
        return ln.debit if ln.debit != ZERO else ln.credit
    return getattr(ln, attr)


def _cut(value: Any, width: int, encoding: str) -> Any:
    if not width or not isinstance(value, str):
        return value
    raw = value.encode(encoding, errors="replace")[:width]
    return raw.decode(encoding, errors="ignore")


def rows(profile: Profile, vouchers: Sequence[Voucher]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for number, v in enumerate(vouchers, 1):
        check_exportable(v)
        for ln in v.lines:
            out.append([_cut(_value(f, v, ln, number), f.width, profile.encoding) for f in profile.fields])
    return out


def _plain(value: Any) -> Any:
    return text(value) if isinstance(value, Decimal) else value


def render(profile: Profile, vouchers: Sequence[Voucher]) -> bytes:
    """The file for `vouchers`, in order (the same vouchers give the same rows)."""
    table = rows(profile, vouchers)
    names = [f.name for f in profile.fields]
    if profile.format == "json":
        return json.dumps(
            [dict(zip(names, map(_plain, r), strict=True)) for r in table], ensure_ascii=False, indent=1
        ).encode(profile.encoding)
    if profile.format in ("csv", "u8"):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n" if profile.format == "u8" else "\n")
        if profile.format == "csv":
            writer.writerow(names)
        for r in table:
            writer.writerow([f"{x:.2f}" if isinstance(x, Decimal) and profile.format == "u8" else _plain(x) for x in r])
        return buf.getvalue().encode(profile.encoding, errors="replace")
    if profile.format == "xlsx":
        return _xlsx(names, table, vouchers)
    return _dbf(profile, table)


def _xlsx(names: list[str], table: list[list[Any]], vouchers: Sequence[Voucher]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook has its sheet
    ws.title = "vouchers"
    ws.append(names)
    for r in table:
        ws.append([float(x) if isinstance(x, Decimal) else x for x in r])
    stamp = datetime.fromtimestamp(max((v.at_ms for v in vouchers), default=0) / 1000, UTC).replace(tzinfo=None)
    wb.properties.created = wb.properties.modified = stamp  # the file depends on the vouchers only
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _dbf(profile: Profile, table: list[list[Any]]) -> bytes:
    import dbf

    specs = []
    for f in profile.fields:
        if f.kind == "N":
            specs.append(f"{f.name} N(16,2)")
        elif f.kind == "I":
            specs.append(f"{f.name} N(10,0)")
        else:
            specs.append(f"{f.name} C({f.width or 60})")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "export.dbf")
        t = dbf.Table(path, "; ".join(specs), codepage="cp936")
        t.open(dbf.READ_WRITE)
        for r in table:
            t.append(tuple(x if isinstance(x, Decimal | int) and not isinstance(x, bool) else str(x) for x in r))
        t.close()
        return Path(path).read_bytes()
