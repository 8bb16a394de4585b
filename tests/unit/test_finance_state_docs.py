"""A voucher's stored document is written field by field in declared order: voucher_to_doc
(dict displays, for speed) must give the very bytes a construction by field name gives,
for any voucher — its scalars, then "format", lines, sources, notes."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.finance.money import text
from engine.finance.state import VOUCHER_FORMAT, voucher_from_doc, voucher_to_doc
from engine.finance.vouchers import Line, Note, Source, Voucher

_SCALARS = tuple(f.name for f in fields(Voucher) if f.name not in ("lines", "sources", "notes"))
_SOURCE_FIELDS = tuple(name for name in Source._fields if name != "layer_ids")


def by_field_name(v: Voucher) -> dict[str, Any]:
    """The reference: every field by its name, in the dataclass's and named tuples' order."""
    doc = {name: getattr(v, name) for name in _SCALARS}
    doc["format"] = VOUCHER_FORMAT
    doc["lines"] = [
        {**dict(zip(Line._fields, ln, strict=True)), "debit": text(ln.debit), "credit": text(ln.credit)}
        for ln in v.lines
    ]
    doc["sources"] = [{**{n: getattr(s, n) for n in _SOURCE_FIELDS}, "layer_ids": list(s.layer_ids)} for s in v.sources]
    doc["notes"] = [{"author": n.author, "at_ms": n.at_ms, "text": n.text} for n in v.notes]
    return doc


_texts = st.text(max_size=12)
_ints = st.integers(-(2**62), 2**62)
_amounts = st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.sampled_from(
    [Decimal("0"), Decimal("0.00"), Decimal("1E+3"), Decimal("-12.40"), Decimal("1E-9")]
)
_lines = st.builds(Line, _ints, _texts, _texts, _amounts, _amounts, _texts, _texts, _texts, _texts, _ints, _texts)
_sources = st.builds(
    Source,
    _texts,
    _texts,
    _texts,
    _texts,
    _ints,
    _texts,
    _ints,
    st.lists(_texts, max_size=3).map(tuple),
    _texts,
    _texts,
    _texts,
    _texts,
)
_vouchers = st.builds(
    Voucher,
    _texts,
    _texts,
    _texts,
    _ints,
    _texts,
    st.lists(_lines, max_size=6).map(tuple),
    st.lists(_sources, max_size=3).map(tuple),
    _texts,
    preparer=_texts,
    state=_texts,
    reversal_of=_texts,
    terms=_texts,
    notes=st.lists(st.builds(Note, _texts, _ints, _texts), max_size=2).map(tuple),
    reviewer=_texts,
    reason=_texts,
    posted_at_ms=_ints,
    version=st.integers(0, 2**31),
)


@settings(max_examples=300, deadline=None)
@given(_vouchers)
def test_the_stored_document_is_the_field_by_field_one_byte_for_byte(v: Voucher) -> None:
    assert orjson.dumps(voucher_to_doc(v)) == orjson.dumps(by_field_name(v))


@settings(max_examples=100, deadline=None)
@given(_vouchers)
def test_a_stored_document_reads_back_as_the_voucher(v: Voucher) -> None:
    back = voucher_from_doc(orjson.loads(orjson.dumps(voucher_to_doc(v))))
    assert back == v
