"""GS1 barcodes → sku, lot and expiry (DESIGN.md §1: a lot and its dates).

Hospital smart cabinets and WMS scanners send GS1 element strings (GS1-128, GS1
DataMatrix, GS1 QR, GS1 DataBar); ingestion turns one scan into a GTIN (the sku), a lot
and its dates. Pure: text in, values out; no clock, no I/O.

Accepted forms of one scan:
- human-readable, with parentheses: ``(01)09506000134352(17)261231(10)ABC123``;
- a raw element string, FNC1 sent as ASCII GS (0x1D) after each variable-length field,
  optionally prefixed by a symbology identifier (``]C1``, ``]d2``, ``]Q3``, ``]e0``, ``]J1``);
  GS may be written literally as ``<GS>`` or ``{GS}``, as scanner configs and logs do;
- a bare GTIN-8/12/13/14, i.e. a UPC/EAN scan, which carries no AI (optionally ``]E0``/``]E4``).
  A bare string of 8, 12, 13 or 14 digits is always read as a GTIN: an element string that
  happens to look like one (``17261231`` = expiry only) needs its symbology identifier.

Reading is lenient only where scanners differ and nothing is ambiguous (a leading FNC1,
a GS after a fixed-length field, a trailing CR/LF from a keyboard-wedge scanner). Writing
is strict: `encode_gs1` checks every value with the same rules as `parse_gs1`.

Dates (YYMMDD) are read as 20YY. The GS1 rule (General Specifications §7.12) picks the
century from a window around the current year, which needs a clock this module does not
have; every date on goods in circulation lies in 2000–2099, where the two agree until 2050.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Literal

from engine.domain.model import MS_PER_DAY, NO_EXPIRY_MS

MAX_INPUT_CHARS: Final = 512  # a DataMatrix holds more, but no GS1 label needs it: refuse early
GS: Final = "\x1d"  # ASCII group separator: how scanners transmit FNC1 inside the data
# How a separator may be spelt in the input; the real one first, as it is the common case.
_SEPARATORS: Final = (GS, "<GS>", "{GS}")

# GS1 AI encodable character set 82 (General Specifications §7.11, figure 7.11-1).
CSET82: Final = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
_DIGITS: Final = frozenset("0123456789")  # not str.isdigit(): that also accepts "²" and "٣"
_GTIN_LENGTHS: Final = frozenset({8, 12, 13, 14})

# Symbology identifiers (ISO/IEC 15424) whose data is a GS1 element string …
_ELEMENT_STRING_IDS: Final = frozenset({"]C1", "]d2", "]Q3", "]e0", "]J1"})
# … and those of EAN/UPC scans, whose data is a bare GTIN.
_GTIN_IDS: Final = frozenset({"]E0", "]E4"})

# An AI in the human-readable form. [0-9], not \d: \d matches every Unicode digit.
_HR_AI: Final = re.compile(r"\(([0-9]{2,4})\)")

_EPOCH: Final = date(1970, 1, 1)

_Kind = Literal["key", "date", "digits", "text"]


@dataclass(frozen=True, slots=True)
class _Ai:
    title: str
    kind: _Kind  # key: digits ending in a mod-10 check digit; text: GS1 character set 82
    length: int  # exact when fixed, else the maximum
    fixed: bool  # predefined length: needs no FNC1 after it


def _fixed(title: str, kind: _Kind, length: int) -> _Ai:
    return _Ai(title, kind, length, fixed=True)


def _var(title: str, kind: _Kind, max_length: int) -> _Ai:
    return _Ai(title, kind, max_length, fixed=False)


# The AIs we read. GS1 AIs are prefix-free (the first two digits fix an AI's length), so a
# scanner reads an AI by trying 2, 3 then 4 digits against this table.
_AIS: Final[dict[str, _Ai]] = {
    "00": _fixed("SSCC", "key", 18),
    "01": _fixed("GTIN", "key", 14),
    "02": _fixed("CONTENT", "key", 14),
    "10": _var("BATCH/LOT", "text", 20),
    "11": _fixed("PROD DATE", "date", 6),
    "12": _fixed("DUE DATE", "date", 6),
    "13": _fixed("PACK DATE", "date", 6),
    "15": _fixed("BEST BEFORE", "date", 6),
    "16": _fixed("SELL BY", "date", 6),
    "17": _fixed("USE BY", "date", 6),
    "20": _fixed("VARIANT", "digits", 2),
    "21": _var("SERIAL", "text", 20),
    "30": _var("VAR. COUNT", "digits", 8),
    "37": _var("COUNT", "digits", 8),
    "240": _var("ADDITIONAL ID", "text", 30),
    "241": _var("CUST. PART No.", "text", 30),
    "250": _var("SECONDARY SERIAL", "text", 30),
    "251": _var("REF. TO SOURCE", "text", 30),
    "400": _var("ORDER NUMBER", "text", 30),
    **{str(n): _var("INTERNAL", "text", 90) for n in range(91, 100)},
}

# AIs that have their own field in Gs1Data; every other AI read lands in `extra`.
_FIELD_OF_AI: Final = {
    "01": "gtin",
    "10": "lot",
    "11": "production_date",
    "15": "best_before",
    "17": "expiry",
    "21": "serial",
    "30": "count",
    "37": "count",
}


class Gs1Error(ValueError):
    """A scan that is not a valid GS1 barcode, or a Gs1Data that cannot be encoded.

    Carries the AI (``""`` when none applies) and the 0-based position in the input text
    (``-1`` when none applies), so ingestion can put both in its dead-letter reason.
    """

    def __init__(self, message: str, *, ai: str = "", position: int = -1) -> None:
        super().__init__(message)
        self.message = message
        self.ai = ai
        self.position = position


@dataclass(frozen=True, slots=True)
class Gs1Data:
    """What one scan says about the item.

    `extra` keeps every other AI read, in scan order, as (AI, value as scanned): the SSCC
    (00) of a pallet label, the content GTIN (02) that goes with a count (37), dates
    without a field, internal AIs (91–99). Nothing read is dropped.
    """

    gtin: str = ""  # AI (01), 14 digits, check digit verified; "" when absent
    lot: str = ""  # AI (10)
    expiry: date | None = None  # AI (17); DD "00" means the last day of the month
    best_before: date | None = None  # AI (15)
    production_date: date | None = None  # AI (11)
    serial: str = ""  # AI (21)
    count: int | None = None  # AI (30) variable count, or AI (37) count of trade items
    extra: tuple[tuple[str, str], ...] = ()

    def expires_at_ms(self) -> int:
        """00:00 UTC of the day after the expiry date, in epoch ms; 0 (never) without one.

        GS1 (17) is the last day the item may be used, so the lot stays usable through the
        whole expiry day, and a cell (which treats ``expires_at_ms <= now_ms`` as expired)
        refuses it from the first millisecond of the next day. Days are UTC days, as every
        time in Lotwise is (DESIGN.md §1).
        """
        if self.expiry is None:
            return NO_EXPIRY_MS
        return (self.expiry + timedelta(days=1) - _EPOCH).days * MS_PER_DAY


# --- check digits ------------------------------------------------------------------------


def _mod10(body: str) -> int:
    # GS1 mod-10: weights 3, 1, 3, … from the rightmost digit of the body (GTIN, SSCC alike).
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gtin_check_digit(first13: str) -> int:
    """The check digit that completes a GTIN-14 whose first 13 digits are `first13`."""
    if len(first13) != 13 or not _DIGITS.issuperset(first13):
        raise Gs1Error(f"a GTIN body is 13 digits, got {first13!r}")
    return _mod10(first13)


def _gtin14(code: str, position: int, hint: str = "") -> str:
    bad = _first_outside(code, _DIGITS)
    if bad >= 0:
        raise Gs1Error(
            f"GTIN {code!r}: {code[bad]!r} at position {position + bad} is not a digit", position=position + bad
        )
    if len(code) not in _GTIN_LENGTHS:
        raise Gs1Error(f"GTIN {code!r} has {len(code)} digits, not 8, 12, 13 or 14", position=position)
    expected = _mod10(code[:-1])
    if int(code[-1]) != expected:
        at = position + len(code) - 1
        raise Gs1Error(
            f"GTIN-{len(code)} {code!r}: check digit {code[-1]} at position {at}, expected {expected}{hint}",
            position=at,
        )
    return code.rjust(14, "0")  # GTIN-8/12/13 are GTIN-14s with leading zeros


def normalize_gtin(code: str) -> str:
    """A GTIN-8/12/13/14 as 14 digits, check digit verified."""
    return _gtin14(code, 0)


# --- one AI's value ----------------------------------------------------------------------


def _first_outside(value: str, allowed: frozenset[str]) -> int:
    return next((i for i, c in enumerate(value) if c not in allowed), -1)


def _date(ai: str, value: str, position: int) -> date:
    year, month, day = 2000 + int(value[0:2]), int(value[2:4]), int(value[4:6])
    if not 1 <= month <= 12:
        raise Gs1Error(
            f"AI ({ai}) {value!r}: month {month:02} at position {position + 2}", ai=ai, position=position + 2
        )
    last = calendar.monthrange(year, month)[1]
    if day == 0:
        return date(year, month, last)  # DD "00": no day given, the date is the month's end
    if day > last:
        raise Gs1Error(
            f"AI ({ai}) {value!r}: day {day:02} at position {position + 4} does not exist in {year}-{month:02}",
            ai=ai,
            position=position + 4,
        )
    return date(year, month, day)


def _check(ai: str, value: str, position: int) -> None:
    """Refuse `value` unless it is a valid value of `ai`; `position` is where it starts."""
    spec = _AIS[ai]
    where = f"AI ({ai}) {spec.title} at position {position}"
    if spec.fixed and len(value) != spec.length:
        raise Gs1Error(f"{where}: needs {spec.length} characters, got {len(value)}", ai=ai, position=position)
    if not value:
        raise Gs1Error(f"{where}: empty", ai=ai, position=position)
    if len(value) > spec.length:
        raise Gs1Error(f"{where}: {len(value)} characters, at most {spec.length}", ai=ai, position=position)
    if spec.kind == "text":
        # "<GS>" is made of set-82 characters, but it would read back as a separator.
        for sep in _SEPARATORS:
            at = value.find(sep)
            if at >= 0:
                raise Gs1Error(
                    f"{where}: group separator at position {position + at} inside the value",
                    ai=ai,
                    position=position + at,
                )
        bad = _first_outside(value, CSET82)
        if bad >= 0:
            raise Gs1Error(
                f"{where}: {value[bad]!r} at position {position + bad} is outside GS1 character set 82",
                ai=ai,
                position=position + bad,
            )
        return
    bad = _first_outside(value, _DIGITS)
    if bad >= 0:
        raise Gs1Error(
            f"{where}: {value[bad]!r} at position {position + bad} is not a digit", ai=ai, position=position + bad
        )
    if spec.kind == "key" and int(value[-1]) != _mod10(value[:-1]):
        at = position + len(value) - 1
        raise Gs1Error(
            f"{where}: check digit {value[-1]} at position {at}, expected {_mod10(value[:-1])}", ai=ai, position=at
        )
    if spec.kind == "date":
        _date(ai, value, position)


# --- reading -----------------------------------------------------------------------------

_Element = tuple[str, str, int]  # (AI, value, position of the value in the input)


def _separator_at(text: str, i: int, end: int) -> int:
    """Length of the separator starting at `i`, 0 if none."""
    return next((len(sep) for sep in _SEPARATORS if text.startswith(sep, i, end)), 0)


def _next_separator(text: str, i: int, end: int) -> int:
    found = [at for sep in _SEPARATORS if (at := text.find(sep, i, end)) >= 0]
    return min(found, default=end)


def _read_ai(text: str, i: int, end: int) -> str:
    for n in (2, 3, 4):
        if i + n <= end and text[i : i + n] in _AIS:
            return text[i : i + n]
    raise Gs1Error(
        f"unknown application identifier {text[i : i + 4]!r}… at position {i}", ai=text[i : i + 4], position=i
    )


def _scan_raw(text: str, i: int, end: int) -> list[_Element]:
    elements: list[_Element] = []
    i += _separator_at(text, i, end)  # some scanners transmit the leading FNC1 too
    # Terminates: every pass consumes an AI (≥ 2 characters) of a ≤ 512-character input.
    while i < end:
        ai = _read_ai(text, i, end)
        spec, start = _AIS[ai], i + len(ai)
        stop = min(start + spec.length, end) if spec.fixed else _next_separator(text, start, end)
        elements.append((ai, text[start:stop], start))
        # After a variable-length field the separator is required (or the end); after a
        # fixed-length one it is redundant, and some encoders emit it anyway.
        i = stop + _separator_at(text, stop, end)
    return elements


def _scan_human(text: str, i: int, end: int) -> list[_Element]:
    elements: list[_Element] = []
    # Terminates: every pass consumes a "(AI)" marker of a ≤ 512-character input.
    while i < end:
        m = _HR_AI.match(text, i, end)
        if m is None:
            raise Gs1Error(f"expected '(AI)' at position {i}, found {text[i : i + 6]!r}", position=i)
        ai = m.group(1)
        if ai not in _AIS:
            raise Gs1Error(f"unknown application identifier ({ai}) at position {i}", ai=ai, position=i)
        # A value runs to the next "(digits)": encode_gs1 refuses values that contain one.
        nxt = _HR_AI.search(text, m.end(), end)
        stop = nxt.start() if nxt else end
        value = text[m.end() : stop]
        for sep in _SEPARATORS:  # a separator before the next "(" is harmless: drop it
            if value.endswith(sep):
                value = value[: -len(sep)]
                break
        elements.append((ai, value, m.end()))
        i = stop
    return elements


def _assemble(elements: Iterable[_Element]) -> Gs1Data:
    fields: dict[str, str | date | int] = {}
    extra: list[tuple[str, str]] = []
    seen: set[str] = set()
    for ai, value, position in elements:
        _check(ai, value, position)
        field = _FIELD_OF_AI.get(ai)
        # A repeated AI is invalid per the spec even with equal values; (30) with (37) would
        # leave two answers for one count.
        if ai in seen or (field is not None and field in fields):
            raise Gs1Error(f"AI ({ai}) at position {position} repeats an earlier element", ai=ai, position=position)
        seen.add(ai)
        if field is None:
            extra.append((ai, value))
        elif _AIS[ai].kind == "date":
            fields[field] = _date(ai, value, position)
        elif field == "count":
            fields[field] = int(value)
        else:
            fields[field] = value
    return Gs1Data(**fields, extra=tuple(extra))  # type: ignore[arg-type]


def parse_gs1(text: str) -> Gs1Data:
    """Read one scan (see the module docstring for the forms accepted); Gs1Error if invalid."""
    if len(text) > MAX_INPUT_CHARS:
        raise Gs1Error(f"scan of {len(text)} characters, at most {MAX_INPUT_CHARS}", position=MAX_INPUT_CHARS)
    end = len(text.rstrip("\r\n"))  # CR/LF is never data: keyboard-wedge scanners append it
    start = 0
    if text.startswith("]"):
        symbology = text[:3]
        if symbology in _GTIN_IDS:
            return Gs1Data(gtin=_gtin14(text[3:end], 3))
        if symbology not in _ELEMENT_STRING_IDS:
            raise Gs1Error(f"unsupported symbology identifier {symbology!r} at position 0", position=0)
        start = 3
    elif end in _GTIN_LENGTHS and _DIGITS.issuperset(text[:end]):
        hint = "; prefix ]C1 to read it as a GS1 element string"
        return Gs1Data(gtin=_gtin14(text[:end], 0, hint))
    if start >= end:
        raise Gs1Error(f"empty scan at position {start}", position=start)
    human = text.startswith("(", start)
    elements = _scan_human(text, start, end) if human else _scan_raw(text, start, end)
    if not elements:  # only separators, e.g. "]C1<GS>"
        raise Gs1Error(f"no element string at position {start}", position=start)
    return _assemble(elements)


# --- writing -----------------------------------------------------------------------------


def _yymmdd(ai: str, day: date) -> str:
    if not 2000 <= day.year <= 2099:
        raise Gs1Error(f"AI ({ai}): year {day.year} is outside 2000–2099, which YY can say", ai=ai)
    return day.strftime("%y%m%d")


def encode_gs1(data: Gs1Data, *, human_readable: bool = False) -> str:
    """The element string of `data`: ``parse_gs1(encode_gs1(d)) == d`` for every valid `d`.

    Raw form: no symbology identifier, GS after each variable-length field but the last;
    the one exception is a string a reader would take for a bare GTIN (all digits, 8–14
    long, no (01)), which gets ``]C1`` in front. Fixed-length fields come first, as the
    spec recommends, then `extra` in its own order. Gs1Error if any value is invalid.
    """
    elements: list[tuple[str, str]] = []
    if data.gtin:
        elements.append(("01", data.gtin))
    for ai, day in (("11", data.production_date), ("15", data.best_before), ("17", data.expiry)):
        if day is not None:
            elements.append((ai, _yymmdd(ai, day)))
    if data.count is not None:
        # (37) counts the trade items of a (02) content GTIN; (30) goes with (01) or alone.
        count_ai = "37" if any(ai == "02" for ai, _ in data.extra) else "30"
        elements.append((count_ai, str(data.count)))
    if data.lot:
        elements.append(("10", data.lot))
    if data.serial:
        elements.append(("21", data.serial))
    for ai, value in data.extra:
        if ai in _FIELD_OF_AI:
            raise Gs1Error(f"AI ({ai}) has its own Gs1Data field, not extra", ai=ai)
        if ai not in _AIS:
            raise Gs1Error(f"unknown application identifier ({ai}) in extra", ai=ai)
        if any(ai == seen for seen, _ in elements):
            raise Gs1Error(f"AI ({ai}) twice in extra", ai=ai)
        elements.append((ai, value))
    if not elements:
        raise Gs1Error("nothing to encode: every field is empty")

    parts: list[str] = []
    position = 0
    for n, (ai, value) in enumerate(elements):
        head = f"({ai})" if human_readable else ai
        _check(ai, value, position + len(head))
        if human_readable and (m := _HR_AI.search(value)):
            raise Gs1Error(
                f"AI ({ai}): {m.group()!r} inside the value would read as an AI in the human-readable form",
                ai=ai,
                position=position + len(head) + m.start(),
            )
        parts.append(head + value)
        position += len(head) + len(value)
        if not human_readable and not _AIS[ai].fixed and n < len(elements) - 1:
            parts.append(GS)
            position += 1
    text = "".join(parts)
    if not human_readable and len(text) in _GTIN_LENGTHS and _DIGITS.issuperset(text):
        text = "]C1" + text
    if len(text) > MAX_INPUT_CHARS:
        raise Gs1Error(f"encoded scan of {len(text)} characters, over {MAX_INPUT_CHARS}")
    return text
