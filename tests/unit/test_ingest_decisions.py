"""What an inbound event means for the books, decided without an engine or NATS.

engine.domain.ingestion (scans, WMS lines, status choices), counts, excursions and
transfers are pure: these tests give them rows and events and read the commands back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import pytest

from adapters.nats.ingest.config import Cabinet
from engine.domain import counts, excursions, ingestion, transfers
from engine.domain.cell import Cell, SliceRow
from engine.domain.commands import (
    ChangeStatus,
    Consumed,
    Count,
    Counted,
    CountLine,
    CountSource,
    FreezeStock,
    HoldCut,
    Move,
    Receive,
    Reserve,
    ReserveLine,
    StockFrozen,
    Strategy,
    validate,
)
from engine.domain.deadletters import DeadLetterCode
from engine.domain.ingestion import BadEvent, Document, StatusChoices, StockLine, derived_id
from engine.domain.inventory import StockRow
from engine.domain.model import Allocation, External, Finance
from engine.domain.statuses import DEFAULT_DICTIONARY, Role, parse_dictionary
from tests.unit.conftest import T0_MS

D = DEFAULT_DICTIONARY
DOC = Document("DOC-1", Finance(currency="EUR", unit_cost="1.00"))


def quant(sku: str, lot: str, status: str, qty: int, held: int = 0, bin_: str = "C") -> StockRow:
    group = (("lot", lot), ("bin", bin_), ("status", status), ("owner", "own"))
    return StockRow(sku, "", SliceRow(group, qty, held, qty - held, qty, 0))


@dataclass(frozen=True)
class Spot:
    site: str
    bin: str = ""
    owner: str = "own"


@dataclass(frozen=True)
class Line:
    sku: str
    lot: str
    qty: int
    status: str = ""
    owner: str = ""
    expiry: date | None = None


@dataclass(frozen=True)
class Tag:
    barcode: str = ""
    sku: str = ""
    lot: str = ""
    expiry: date | None = None
    qty: int = 1


# ---- counts: one Count per sku, applied inside its cell (tests/unit/test_cell_count.py) ----


def test_an_rfid_read_is_one_whole_bin_count_per_sku_including_skus_read_empty() -> None:
    cab = Cabinet(site="x", bin="C", owner="consignment:acme")
    cmds = counts.rfid_counts("e1", cab, {"t"}, {("s", "B"): 2, ("s", "A"): 5}, {("s", "B"): 99})
    assert cmds == [
        Count(
            derived_id("e1", "s"),
            "s",
            "x",
            "C",
            (CountLine("A", 5, "", "consignment:acme", 0), CountLine("B", 2, "", "consignment:acme", 99)),
            whole_bin=True,
            source=CountSource.RFID,
            doc_ref="rfid_count",
        ),
        Count(derived_id("e1", "t"), "t", "x", "C", (), whole_bin=True, source=CountSource.RFID, doc_ref="rfid_count"),
    ]
    for cmd in cmds:
        validate(cmd, D)


def test_a_found_lot_goes_to_the_ready_role_of_the_dictionary() -> None:
    custom = parse_dictionary({"version": 3, "statuses": _raw_statuses(), "roles": {"ready": "qc_hold"}})
    cell = Cell("s", "x", custom)
    cell.handle(Receive("r", "s", "x", "A", 1, "C", "qc_hold"), T0_MS)
    (cmd,) = counts.rfid_counts("e", Spot("x", "C"), (), {("s", "A"): 3}, {})
    cell.handle(cmd, T0_MS)
    assert {k.status: q.qty for k, q in cell.ledger.quants.items()} == {"qc_hold": 3}


def test_a_count_ignores_stock_that_is_not_on_hand() -> None:
    cell = Cell("s", "x", D)
    cell.handle(Receive("r1", "s", "x", "A", 9, "C", "in_transit_in"), T0_MS)
    cell.handle(Receive("r2", "s", "x", "A", 2, "C", "available"), T0_MS)
    (cmd,) = counts.rfid_counts("e", Spot("x", "C"), ("s",), {("s", "A"): 2}, {})
    reply = cell.handle(cmd, T0_MS)
    assert isinstance(reply, Counted)
    assert reply.variance == 0  # the 9 in transit are not in the cabinet; the 2 counted match


def test_tally_sums_tags_per_lot_and_needs_each_lot() -> None:
    counted, expiry = counts.tally([Tag(sku="s", lot="A"), Tag(sku="s", lot="A", qty=2)], {})
    assert counted == {("s", "A"): 3}
    assert expiry == {("s", "A"): 0}
    with pytest.raises(BadEvent) as bad:
        counts.tally([Tag(sku="s")], {})
    assert bad.value.code is DeadLetterCode.INVALID


def test_a_cycle_count_is_one_quant_count_per_sku() -> None:
    lines = [
        Line("s", "A", 4),
        Line("s", "B", 0, status="damaged", owner="consignment:x", expiry=date(2027, 1, 1)),
        Line("t", "A", 1),
    ]
    cmds = counts.cycle_counts("e", "dc", "B/01", lines, DOC)
    assert [(c.request_id, c.sku, c.whole_bin, c.source) for c in cmds] == [
        ("e:s", "s", False, CountSource.CYCLE),
        ("e:t", "t", False, CountSource.CYCLE),
    ]
    assert cmds[0].lines == (
        CountLine("A", 4, "", "own", 0),
        CountLine("B", 0, "damaged", "consignment:x", ingestion.day_end_ms(date(2027, 1, 1))),
    )
    assert all(c.doc_ref == "DOC-1" and c.finance == DOC.finance for c in cmds)


# ---- excursions ----


def test_an_excursion_freezes_each_sku_of_the_cabinet_in_its_cell() -> None:
    cmds = excursions.freeze_commands("e", "x", "C", ["t", "s", "t"], "doc")
    assert cmds == [
        FreezeStock(derived_id("e", "s"), "s", "x", "C", "doc"),
        FreezeStock(derived_id("e", "t"), "t", "x", "C", "doc"),
    ]
    assert excursions.freeze_doc_ref("", 14.5) == "excursion:14.5C"
    assert excursions.freeze_doc_ref("QA-7", 14.5) == "QA-7"


def test_a_freeze_takes_held_units_too_and_cuts_their_holds() -> None:
    cell = Cell("s", "x", D)
    cell.handle(Receive("r1", "s", "x", "A", 5, "C", "available"), T0_MS)
    cell.handle(Receive("r2", "s", "x", "A", 3, "C/P", "available"), T0_MS)
    cell.handle(ChangeStatus("r2b", "s", "x", "A", 3, "available", "picking", "C/P"), T0_MS)  # may not freeze
    cell.handle(Reserve("r3", "s", "x", "H", (ReserveLine(2),), 60_000), T0_MS)
    reply = cell.handle(FreezeStock("f", "s", "x", "C"), T0_MS)
    assert reply == StockFrozen(5, ("A",), (HoldCut("H", "A", "C", "available", 2),), 3)
    frozen = D.role(Role.FROZEN)
    assert {k.status: (q.qty, q.held) for k, q in cell.ledger.quants.items()} == {frozen: (5, 0), "picking": (3, 0)}


# ---- scans and WMS lines ----


def test_status_choices_take_the_configuration_else_the_roles() -> None:
    roles = StatusChoices.of(D)
    assert (roles.receipt, roles.qc_pass, roles.qc_fail, roles.pick_from, roles.transfer_in) == (
        "receiving",
        "available",
        "damaged",
        "available",
        "receiving",
    )
    assert (roles.ready, roles.rejected, roles.pick, roles.pack, roles.arriving) == (
        "available",
        "damaged",
        "picking",
        "packed",
        "in_transit_in",
    )
    configured = StatusChoices.of(D, receipt="qc_hold", qc_fail="quality_frozen")
    assert (configured.receipt, configured.qc_fail, configured.transfer_in) == (
        "qc_hold",
        "quality_frozen",
        "receiving",
    )


def test_a_take_is_fefo_unless_the_lot_is_named() -> None:
    item = ingestion.Resolved("s", "", 0)
    assert ingestion.take("e", Spot("x", "CAB"), item, 2, DOC).strategy is Strategy.FEFO
    named = ingestion.take("e", Spot("x", "CAB"), replace(item, lot="A"), 2, DOC)
    assert (named.strategy, named.bin_prefix, named.lot_id, named.doc_ref) == (Strategy.LOT, "CAB", "A", "DOC-1")


def test_a_return_needs_its_lot_and_comes_from_the_customer() -> None:
    with pytest.raises(BadEvent) as bad:
        ingestion.give_back("e", Spot("x"), ingestion.Resolved("s", "", 0), 1, True, "", StatusChoices.of(D), DOC)
    assert bad.value.code is DeadLetterCode.INVALID
    choices, item = StatusChoices.of(D), ingestion.Resolved("s", "A", 9)
    cmd = ingestion.give_back("e", Spot("x", "CAB", "custody:w"), item, 1, False, "promo_locked", choices, DOC)
    assert (cmd.status, cmd.owner, cmd.bin, cmd.expires_at_ms, cmd.source) == (
        "damaged",
        "custody:w",
        "CAB",
        9,
        External.CUSTOMER,
    )
    unopened = [
        ingestion.give_back("e", Spot("x"), item, 1, True, configured, choices, DOC) for configured in ("", "qc_hold")
    ]
    assert [c.status for c in unopened] == ["available", "qc_hold"]


def test_qc_pick_and_pack_walk_the_configured_statuses() -> None:
    line, choices = StockLine("s", "dc", "A", 3, "B/01"), StatusChoices.of(D)
    steps = [
        ingestion.qc("q", line, True, "", choices, DOC),
        ingestion.qc("f", line, False, "qc_hold", choices, DOC),
        ingestion.pick("p", line, choices, DOC),
        ingestion.pack("k", line, choices, DOC),
    ]
    assert [(c.from_status, c.to_status, c.owner, c.bin) for c in steps] == [
        ("receiving", "available", "own", "B/01"),
        ("qc_hold", "damaged", "own", "B/01"),
        ("available", "picking", "own", "B/01"),
        ("picking", "packed", "own", "B/01"),
    ]


def test_a_ship_without_a_hold_issues_packed_stock() -> None:
    cmd = ingestion.issue_packed("e:0", StockLine("s", "dc", "", 2, "B"), StatusChoices.of(D), DOC)
    assert (cmd.status, cmd.strategy, cmd.owner, cmd.destination) == ("packed", Strategy.FEFO, "", External.CUSTOMER)


def test_a_receipt_and_a_putaway_keep_the_line() -> None:
    line = StockLine("s", "dc", "A", 5, "DOCK", "")
    cmd = ingestion.receipt("e:0", line, ingestion.Resolved("s", "A", 42), "receiving", DOC)
    assert (cmd.status, cmd.owner, cmd.bin, cmd.expires_at_ms, cmd.source) == (
        "receiving",
        "own",
        "DOCK",
        42,
        External.SUPPLIER,
    )
    move = ingestion.putaway("e", line, "DOCK", "B/02", "available", DOC)
    assert move == Move("e", "s", "dc", "A", 5, "DOCK", "B/02", "available", "own", "DOC-1", DOC.finance)


def test_derived_ids_are_stable_and_distinct_per_quant() -> None:
    assert derived_id("e", "s", "A") == derived_id("e", "s", "A")
    assert derived_id("e", "s", "A") != derived_id("e", "s", "B")
    assert derived_id("e", "s", "A").startswith("e:")


# ---- transfers ----


def test_a_transfer_must_go_to_another_site() -> None:
    with pytest.raises(BadEvent) as bad:
        transfers.check_route("dc", "dc")
    assert bad.value.code is DeadLetterCode.INVALID
    transfers.check_route("dc", "icu")


def test_transit_legs_follow_what_the_sending_leg_took() -> None:
    out = transfers.dispatch("e:0", StockLine("s", "dc", "", 6, "B"), DOC)
    assert (out.destination, out.strategy, out.doc_ref) == (External.TRANSIT, Strategy.FEFO, "DOC-1")
    consumed = Consumed(
        5, 1, (Allocation("A", "B", "available", "own", 3, 10), Allocation("C", "B", "available", "own", 2, 20))
    )
    legs = transfers.transit_receipts("e", 0, "s", "icu", transfers.unknown_lot("T-1"), consumed, D.role(Role.ARRIVING))
    assert [(leg.request_id, leg.lot_id, leg.qty, leg.status) for leg in legs] == [
        ("e:0:in:0", "A", 3, "in_transit_in"),
        ("e:0:in:1", "C", 2, "in_transit_in"),
        ("e:0:in:short", "UNKNOWN-T-1", 1, "in_transit_in"),
    ]
    assert transfers.replace_doc(legs[0], DOC).finance == DOC.finance


def test_an_arrival_changes_status_then_puts_away() -> None:
    choices = StatusChoices.of(D)
    steps = transfers.arrival("e:0", StockLine("s", "icu", "A", 6, "CAB1"), choices, DOC)
    assert isinstance(steps[0], ChangeStatus)
    assert (steps[0].from_status, steps[0].to_status) == ("in_transit_in", "receiving")
    assert steps[1] == Move("e:0:bin", "s", "icu", "A", 6, "", "CAB1", "receiving", doc_ref="DOC-1")
    assert len(transfers.arrival("e:0", StockLine("s", "icu", "A", 6), choices, DOC)) == 1


def _raw_statuses() -> dict[str, object]:
    import json
    from importlib import resources

    raw = json.loads(resources.files("engine.domain").joinpath("statuses.json").read_text())
    statuses: dict[str, object] = raw["statuses"]
    return statuses
