"""Import rows → commands (engine.domain.importing) and import files → rows (engine.importfile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.api.import_client import ImportTally, chunks, parse_rows
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.importing import (
    COLUMNS,
    REQUEST_ID_PREFIX,
    HeaderError,
    LotRow,
    LotRows,
    ParsedRow,
    RequestIds,
    RowError,
    RowKind,
    RowValue,
    header_problems,
    infer_kind,
    parse_row,
)
from engine.domain.model import External
from engine.importfile import FileFormat, ImportFileError, read_rows

# ---- rows → commands ----------------------------------------------------------------


def lot(**values: str | int | None) -> dict[str, str | int | None]:
    return {"sku": "strip", "site": "ward1", "lot_id": "L1", "qty": "5", **values}


def test_a_lot_row_becomes_a_receive_with_dates_in_utc_ms() -> None:
    parsed = parse_row(
        7,
        lot(expires_at="2027-03-31", received_at="2026-12-01T08:00:00+01:00", opened_at="1700000000000", bin="A/1"),
        RowKind.LOT,
        RequestIds(),
    )
    assert isinstance(parsed, ParsedRow)
    assert parsed.line == 7
    assert parsed.kind is RowKind.LOT
    cmd = parsed.command
    assert isinstance(cmd, Receive)
    assert (cmd.sku, cmd.site, cmd.lot_id, cmd.qty, cmd.bin) == ("strip", "ward1", "L1", 5, "A/1")
    assert cmd.expires_at_ms == 1_806_451_200_000  # 2027-03-31T00:00Z
    assert cmd.received_at_ms == 1_796_108_400_000  # 07:00Z
    assert cmd.opened_at_ms == 1_700_000_000_000
    assert cmd.status == "receiving"
    assert cmd.owner == "own"
    assert cmd.source is External.SUPPLIER
    assert cmd.request_id.startswith(REQUEST_ID_PREFIX)


def test_request_ids_repeat_on_a_rerun_and_differ_for_identical_rows_and_for_changed_rows() -> None:
    first, second = RequestIds(), RequestIds()
    run1 = [parse_row(i, lot(), RowKind.LOT, first) for i in (1, 2)]
    run2 = [parse_row(i, lot(), RowKind.LOT, second) for i in (1, 2)]
    ids1 = [r.command.request_id for r in run1 if isinstance(r, ParsedRow) and isinstance(r.command, Receive)]
    ids2 = [r.command.request_id for r in run2 if isinstance(r, ParsedRow) and isinstance(r.command, Receive)]
    assert ids1 == ids2  # a re-run sends the same ids: the engine changes nothing
    assert ids1[0] != ids1[1]  # two identical receipts are two receipts
    changed = parse_row(1, lot(qty="6"), RowKind.LOT, RequestIds())
    assert isinstance(changed, ParsedRow)
    assert isinstance(changed.command, Receive)
    assert changed.command.request_id not in ids1
    given = parse_row(1, lot(request_id="po-17:line-3"), RowKind.LOT, RequestIds())
    assert isinstance(given, ParsedRow)
    assert isinstance(given.command, Receive)
    assert given.command.request_id == "po-17:line-3"


def test_a_bad_row_names_every_field_at_fault() -> None:
    parsed = parse_row(
        3, lot(qty="five", expires_at="31/03/2027", source="@scrap", request_id="bad id"), RowKind.LOT, RequestIds()
    )
    assert isinstance(parsed, RowError)
    assert parsed.line == 3
    fields = {v.field for v in parsed.violations}
    assert fields == {"qty", "expires_at", "source", "request_id"}
    assert "qty: must be a whole number (got 'five')" in parsed.message


def test_missing_required_values_and_stray_values_are_refused() -> None:
    parsed = parse_row(4, {"sku": "strip", "site": "", "lot_id": "L1", "qty": None}, RowKind.LOT, RequestIds())
    assert isinstance(parsed, RowError)
    assert [(v.field, v.description) for v in parsed.violations] == [("qty", "is required"), ("site", "is required")]
    stray = parse_row(5, {"sku": "strip", "org_path": "acme"}, RowKind.SKU, RequestIds())
    assert isinstance(stray, RowError)
    assert stray.violations[0].field == "org_path"
    blank_stray = parse_row(5, {"sku": "strip", "org_path": ""}, RowKind.SKU, RequestIds())
    assert isinstance(blank_stray, ParsedRow)  # a mixed file's empty cells are no values


def test_catalog_rows_and_the_record_column() -> None:
    sku = parse_row(
        1, {"record": "sku", "sku": "strip", "name": "Strip", "opened_shelf_life_days": 30}, None, RequestIds()
    )
    assert isinstance(sku, ParsedRow)
    assert sku.command == Sku("strip", "Strip", "ea", 30)
    site = parse_row(2, {"record": "SITE", "site": "ward1", "org_path": "acme/east"}, None, RequestIds())
    assert isinstance(site, ParsedRow)
    assert site.command == Site("ward1", "acme/east", "warehouse", "")
    bad = parse_row(3, {"record": "pallet", "sku": "x"}, None, RequestIds())
    assert isinstance(bad, RowError)
    assert bad.violations[0].field == "record"
    inferred = parse_row(4, {"site": "ward2"}, None, RequestIds())  # JSONL: kind from the keys
    assert isinstance(inferred, ParsedRow)
    assert inferred.kind is RowKind.SITE


def test_kinds_and_headers() -> None:
    assert infer_kind(frozenset({"sku", "site", "lot_id", "qty"})) is RowKind.LOT
    assert infer_kind(frozenset({"site", "org_path"})) is RowKind.SITE
    assert infer_kind(frozenset({"sku", "name"})) is RowKind.SKU
    assert infer_kind(frozenset({"record", "sku"})) is None
    with pytest.raises(HeaderError):
        infer_kind(frozenset({"sku", "site"}))
    assert header_problems(frozenset({"sku", "site", "lot_id", "qty"})) == []
    assert header_problems(frozenset({"sku", "site", "lot_id", "quantity"})) == [
        "unknown column 'quantity'",
        "missing column 'qty' (required for lot rows)",
    ]
    assert header_problems(frozenset({"sku", "name", "org_path"})) == ["column 'org_path' is not a column of sku rows"]


# ---- files → rows ---------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def parsed(path: Path) -> tuple[list[ParsedRow], ImportTally]:
    tally = ImportTally()
    return list(parse_rows(read_rows(path), tally)), tally


def test_csv_with_a_byte_order_mark_blank_lines_and_bad_rows(tmp_path: Path) -> None:
    text = "\ufeffsku,site,lot_id,qty\nstrip,ward1,L1,5\n\nstrip,ward1,L2,x\nstrip,ward1,L3,1,extra\nstrip,ward1,L4,2\n"
    rows, tally = parsed(write(tmp_path, "lots.csv", text))
    assert [r.line for r in rows] == [2, 6]
    assert tally.rows == 4
    assert [(r.line, r.code) for r in tally.refused] == [(4, "INVALID_ARGUMENT"), (5, "INVALID_ARGUMENT")]
    assert "qty" in tally.refused[0].reason
    assert "has 5 fields" in tally.refused[1].reason


def test_a_file_that_is_not_utf8_is_refused_whole_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "lots.csv", b"sku,site,lot_id,qty\nstrip,ward1,L1,5\n" + "x,é,L2,1\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"line 3 is not UTF-8"):
        read_rows(path)


def test_missing_and_unknown_columns_refuse_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError) as info:
        read_rows(write(tmp_path, "lots.csv", "sku,site,lot,qty,qty\nstrip,ward1,L1,5,5\n"))
    assert info.value.problems == [
        "column 'qty' appears twice",
        "unknown column 'lot'",
        "missing column 'lot_id' (required for lot rows)",
    ]
    with pytest.raises(ImportFileError, match="is empty"):
        read_rows(write(tmp_path, "empty.csv", ""))
    with pytest.raises(ImportFileError, match="cannot tell the format"):
        read_rows(write(tmp_path, "lots.txt", "sku\n"))
    with pytest.raises(ImportFileError, match="no such file"):
        read_rows(tmp_path / "missing.csv")


def test_jsonl_rows_each_name_their_kind(tmp_path: Path) -> None:
    lines = [
        json.dumps({"sku": "strip", "name": "Strip"}),
        json.dumps({"site": "ward1", "org_path": "acme"}),
        json.dumps({"sku": "strip", "site": "ward1", "lot_id": "L1", "qty": 5.0, "expires_at": 1_806_451_200_000}),
        "[1, 2]",
        "{not json",
        json.dumps({"sku": "strip", "site": "ward1", "lot_id": "L2", "qty": 2.5}),
        json.dumps({"sku": "strip", "site": "ward1", "lot_id": "L3", "qty": {"n": 1}}),
    ]
    rows, tally = parsed(write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n"))
    assert [r.kind for r in rows] == [RowKind.SKU, RowKind.SITE, RowKind.LOT]
    lot_cmd = rows[2].command
    assert isinstance(lot_cmd, Receive)
    assert lot_cmd.qty == 5
    assert lot_cmd.expires_at_ms == 1_806_451_200_000
    assert [r.line for r in tally.refused] == [4, 5, 6, 7]
    assert "JSON object" in tally.refused[0].reason
    assert "not JSON" in tally.refused[1].reason


def test_parquet_when_pyarrow_is_installed(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "lots.parquet"
    table = pa.table({"sku": ["strip", "strip"], "site": ["ward1", "ward1"], "lot_id": ["L1", "L2"], "qty": [5, -1]})
    pq.write_table(table, path)
    rows, tally = parsed(path)
    assert [r.line for r in rows] == [1, 2]  # -1 parses: the engine refuses it, with its reason
    assert tally.refused == []
    assert read_rows(path, FileFormat.PARQUET).columns == frozenset({"sku", "site", "lot_id", "qty"})


def test_chunks_are_bounded_and_never_mix_catalog_rows_with_lots() -> None:
    ids = RequestIds()
    rows = [parse_row(1, {"sku": "a"}, RowKind.SKU, ids)]
    rows += [parse_row(i, lot(lot_id=f"L{i}"), RowKind.LOT, ids) for i in range(2, 12)]
    rows += [parse_row(12, {"site": "w"}, RowKind.SITE, ids)]
    parts = list(chunks([r for r in rows if isinstance(r, ParsedRow)], chunk_rows=4))
    # Catalog rows as rows, lots as columns (ImportLots), each lot keeping its line.
    assert [[row.WhichOneof("row") for row in p.rows] for p in parts] == [["sku"], [], [], [], ["site"]]
    assert [list(p.lots.line) for p in parts] == [[], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11], []]
    assert [p.chunk_seq for p in parts] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="chunk_rows"):
        list(chunks([], chunk_rows=5000))


MIXED_COLUMNS = frozenset({"record", "sku", "site", "name", "org_path", "lot_id", "qty", "expires_at", "bin", "status"})
LOT_COLUMNS = frozenset(COLUMNS[RowKind.LOT])


@pytest.mark.parametrize(
    ("columns", "kind", "row", "fast"),
    [
        (MIXED_COLUMNS, None, {"record": "lot", "sku": "S", "site": "W", "lot_id": "L", "qty": "5"}, True),
        (
            MIXED_COLUMNS,
            None,
            {
                "record": " LOT ",
                "sku": " S ",
                "site": "W",
                "lot_id": "L",
                "qty": "5",
                "bin": "A/1",
                "status": "available",
                "expires_at": "2027-03-28",
                "name": " ",
            },
            True,
        ),
        (
            LOT_COLUMNS,
            RowKind.LOT,
            {
                "sku": "S",
                "site": "W",
                "lot_id": "L",
                "qty": "12",
                "owner": "c1",
                "received_at": "2026-12-01T08:00:00+01:00",
                "opened_at": "1700000000000",
                "doc_ref": " po-9 ",
            },
            True,
        ),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "L", "qty": "0"}, True),  # the engine refuses
        # The full parse's business: each of these leaves the fast path.
        (
            MIXED_COLUMNS,
            None,
            {"record": "lot", "sku": "S", "site": "W", "lot_id": "L", "qty": "5", "name": "x"},
            False,
        ),
        (MIXED_COLUMNS, None, {"record": "sku", "sku": "S", "name": "x"}, False),
        (MIXED_COLUMNS, None, {"record": "", "sku": "S", "site": "W", "lot_id": "L", "qty": "5"}, False),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "L", "qty": " 5"}, False),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "L", "qty": "-5"}, False),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "L", "qty": "５"}, False),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "", "qty": "5"}, False),
        (
            LOT_COLUMNS,
            RowKind.LOT,
            {"sku": "S", "site": "W", "lot_id": "L", "qty": "5", "expires_at": "2027-02-30"},
            False,
        ),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "L", "qty": "5", "source": "customer"}, False),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "L", "qty": "5", "request_id": "po-1"}, False),
        (LOT_COLUMNS, RowKind.LOT, {"sku": "S", "site": "W", "lot_id": "L", "qty": 5}, False),  # JSON-like values
    ],
)
def test_the_fast_lot_parse_gives_what_the_full_parse_gives_or_leaves_the_row_to_it(
    columns: frozenset[str], kind: RowKind | None, row: dict[str, RowValue], fast: bool
) -> None:
    quick = LotRows(columns, kind, RequestIds()).parse(9, row)
    full = parse_row(9, row, kind, RequestIds())
    assert (quick is not None) == fast
    if quick is not None:
        assert isinstance(full, ParsedRow)
        assert (quick.line, quick.kind, quick.command) == (full.line, full.kind, full.command)
        assert LotRow.of(full.line, full.command) == quick  # hence the same request id on a re-run
