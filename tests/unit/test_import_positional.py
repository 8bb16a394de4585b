"""A CSV file of lot rows parsed by position (CsvLots) gives the very rows, request ids and
refusals the parse by mapping (LotRows, then parse_row) gives."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.import_client import POSITIONAL, ImportTally, LotRow, parse_rows
from engine.domain.importing import ParsedRow
from engine.importfile import RowSource, read_rows

_CELLS = {
    "sku": ["gauze", " strip ", "", "bad sku"],
    "site": ["ward1", "ward2 ", ""],
    "lot_id": ["L1", "L2", " L3", "", "L 4"],
    "qty": ["5", "12", "0", "-1", " 3", "x", "٣", ""],
    "bin": ["", "A/01", " B/2 ", "A//B"],
    "status": ["", "available", "nope", " quarantine"],
    "owner": ["", "own", "consignment:acme", "mine"],
    "doc_ref": ["", "PO-1", " PO-2 "],
    "expires_at": ["", "2027-05-01", " 2027-05-01", "1790000000000", "soon", "2027-13-01"],
    "received_at": ["", "2026-12-01T10:00:00", "2026-12-01T10:00:00+01:00"],
    "opened_at": ["", "0", "later"],
    "record": ["lot", " LOT", "sku", "site", ""],
    "name": ["", " ", "Gauze"],
    "org_path": ["", "east"],
}
_HEADERS = st.lists(
    st.sampled_from(sorted(POSITIONAL & set(_CELLS) - {"record", "name", "org_path"})), unique=True
).map(lambda cols: ["sku", "site", "lot_id", "qty", *(c for c in cols if c not in ("sku", "site", "lot_id", "qty"))])


@st.composite
def _files(draw: st.DrawFn) -> list[list[str]]:
    header = draw(_HEADERS)
    if draw(st.booleans()):  # a file of mixed rows: each names its kind
        header += ["record", *draw(st.lists(st.sampled_from(["name", "org_path"]), unique=True))]
    rows = draw(st.lists(st.tuples(*(st.sampled_from(_CELLS[c]) for c in header)), max_size=25))
    short = draw(st.booleans())  # a short row leaves its last columns blank
    body = [list(row[:-1]) if short and i % 3 == 0 else list(row) for i, row in enumerate(rows)]
    return [header, *(body + body[:3])]  # identical rows again: their ids count occurrences


def _parse(source: RowSource) -> tuple[list[LotRow | ParsedRow], list[tuple[int, str]]]:
    tally = ImportTally()
    rows = list(parse_rows(source, tally))
    return rows, [(r.line, r.reason) for r in tally.refused]


@settings(max_examples=150, deadline=None)
@given(_files())
def test_by_position_and_by_mapping_give_the_same_rows(lines: list[list[str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lots.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(lines)
        by_position = read_rows(path)
        assert by_position.lines is not None
        fast = _parse(by_position)
        mapped = read_rows(path)
        slow = _parse(RowSource(mapped.rows, mapped.columns))  # no lines: the mapping path
    assert fast == slow


def test_a_file_with_request_ids_takes_the_mapping_path(tmp_path: Path) -> None:
    path = tmp_path / "lots.csv"
    path.write_text("sku,site,lot_id,qty,request_id\ngauze,ward1,L1,5,my-1\ngauze,ward1,L2,5,\n", encoding="utf-8")
    rows, refused = _parse(read_rows(path))
    assert refused == []
    first = rows[0]
    assert isinstance(first, ParsedRow)
    assert first.command.request_id == "my-1"  # type: ignore[union-attr]


def test_a_mixed_file_s_lines_of_other_kinds_or_with_their_columns_take_the_full_parse(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "record,sku,site,name,lot_id,qty\n"
        "sku,gauze,,Gauze,,\n"
        "site,,ward1,Ward 1,,\n"
        "lot,gauze,ward1,,L1,5\n"
        "lot,gauze,ward1,Gauze,L2,5\n",  # a lot that fills a sku's column
        encoding="utf-8",
    )
    assert read_rows(path).lines is not None
    fast = _parse(read_rows(path))
    mapped = read_rows(path)
    assert fast == _parse(RowSource(mapped.rows, mapped.columns))
    assert [type(row).__name__ for row in fast[0]] == ["ParsedRow", "ParsedRow", "LotRow"]
    assert [line for line, _ in fast[1]] == [5]
