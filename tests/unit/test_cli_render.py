"""How the CLI prints: tables that never cut an id or a quantity, json and csv for scripts."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console
from rich.table import Table

from engine.cli.common import OutputFormat, emit, emit_object, show_table

IDS = ("LOT-2026-0001-0007", "PO-2026-000042", "SO-2026-77-A")


def wide_table() -> Table:
    table = Table(title="movements", title_justify="left")
    for name in ("at (UTC)", "sku", "site", "lot", "qty", "from", "to", "doc", "hold"):
        table.add_column(name, no_wrap=True, justify="right" if name == "qty" else "left")
    table.add_row("2026-12-07 03:07:59", "sku-a", "north", IDS[0], "40", "@supplier", "A/01 available own", IDS[1], "")
    table.add_row("2026-12-07 03:08:00", "sku-a", "north", IDS[0], "5", "A/01 available own", "held", "", IDS[2])
    return table


def render(table: Table, width: int) -> str:
    out = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    show_table(out, table)
    return out.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [40, 80, 120])
def test_a_table_too_wide_becomes_records_and_cuts_nothing(width: int) -> None:
    printed = render(wide_table(), width)
    assert "…" not in printed
    for value in (*IDS, "40", "A/01 available own"):
        assert value in printed
    assert "lot:" in printed  # one `column: value` line per cell
    assert all(len(line) <= width for line in printed.splitlines())


def test_a_table_that_fits_is_printed_as_a_table() -> None:
    printed = render(wide_table(), 200)
    assert "│ LOT-2026-0001-0007 │" in printed
    assert "lot:" not in printed


def test_a_table_a_little_too_wide_drops_its_borders_first() -> None:
    table = Table()
    for name in ("sku", "owner", "qty", "available", "earliest expiry"):
        table.add_column(name, no_wrap=True)
    table.add_row("IVC-20G", "consignment:bd", "71", "71", "2027-10-03 (300 d)")
    bordered = len(render(table, 200).splitlines()[0])
    printed = render(table, bordered - 2)
    assert "│" not in printed
    assert "consignment:bd" in printed
    assert "owner:" not in printed


def test_json_is_one_array_and_csv_a_header_and_rows(capsys: pytest.CaptureFixture[str]) -> None:
    records = [{"sku": "a", "qty": 3, "expiry": None}, {"sku": "b, c", "qty": 0, "expiry": "2027-01-01"}]
    emit(OutputFormat.JSON, records)
    assert json.loads(capsys.readouterr().out) == records
    emit(OutputFormat.CSV, records)
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows == [{"sku": "a", "qty": "3", "expiry": ""}, {"sku": "b, c", "qty": "0", "expiry": "2027-01-01"}]


def test_an_object_with_sections(capsys: pytest.CaptureFixture[str]) -> None:
    sections = {"parts": [{"sku": "a", "held": 5}], "allocations": [{"sku": "a", "lot": "L1", "qty": 5}]}
    emit_object(OutputFormat.JSON, {"hold_id": "H1"}, sections)
    assert json.loads(capsys.readouterr().out) == {"hold_id": "H1", **sections}
    emit_object(OutputFormat.CSV, {"hold_id": "H1"}, sections)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["record,sku,held,lot,qty", "parts,a,5,,", "allocations,a,,L1,5"]
