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
from engine.domain.cell import SliceRow
from engine.domain.commands import Adjust, ChangeStatus, Consumed, Move, Receive, Strategy
from engine.domain.counts import count_adjustments
from engine.domain.deadletters import DeadLetterCode
from engine.domain.excursions import freeze_commands
from engine.domain.ingestion import BadEvent, Document, StatusChoices, StockLine, derived_id
from engine.domain.inventory import StockRow
from engine.domain.model import Allocation, External, Finance
from engine.domain.statuses import DEFAULT_DICTIONARY, Role, parse_dictionary

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


# ---- counts (moved from test_ingest_apply: the same assertions) ----


def test_count_adjustments_take_sellable_stock_first_and_are_keyed_by_quant() -> None:
    def row(lot: str, status: str, qty: int) -> StockRow:
        group = (("lot", lot), ("bin", "C"), ("status", status), ("owner", "own"))
        return StockRow("s", "", SliceRow(group, qty, 0, qty, qty, 0))

    rows = [row("A", "quality_frozen", 4), row("A", "available", 3)]
    cmds = count_adjustments("e1", Cabinet(site="x", bin="C"), rows, {("s", "A"): 5}, {}, DEFAULT_DICTIONARY, "rfid")
    assert cmds == [
        Adjust(derived_id("e1", "s", "A", "C", "available", "own"), "s", "x", "A", 1, "C", "available", "own", "rfid")
    ]
    found = count_adjustments(
        "e1", Cabinet(site="x", bin="C"), [], {("s", "B"): 2}, {("s", "B"): 99}, DEFAULT_DICTIONARY, "rfid"
    )
    assert isinstance(found[0], Receive)
    assert found[0].source is External.COUNT_VARIANCE
    assert found[0].expires_at_ms == 99


def test_freeze_skips_held_units_and_statuses_that_cannot_freeze() -> None:
    def row(status: str, qty: int, held: int) -> StockRow:
        group = (("lot", "A"), ("bin", ""), ("status", status), ("owner", "own"))
        return StockRow("s", "", SliceRow(group, qty, held, qty - held, qty, 0))

    cmds = freeze_commands(
        "e", "x", [row("available", 5, 2), row("packed", 3, 0), row("quality_frozen", 1, 0)], DEFAULT_DICTIONARY, "d"
    )
    assert [(c.from_status, c.qty) for c in cmds] == [("available", 3)]


# ---- counts ----


def test_a_count_ignores_stock_that_is_not_on_hand() -> None:
    rows = [quant("s", "A", "in_transit_in", 9), quant("s", "A", "available", 2)]
    cmds = count_adjustments("e", Spot("x", "C"), rows, {("s", "A"): 2}, {}, D, "rfid")
    assert cmds == []  # the 9 in transit are not in the cabinet; the 2 counted match


def test_found_units_go_to_the_ready_role_of_the_dictionary() -> None:
    roles = {"ready": "qc_hold"}
    custom = parse_dictionary({"version": 3, "statuses": _raw_statuses(), "roles": roles})
    rows = [quant("s", "A", "available", 1)]
    (cmd,) = count_adjustments("e", Spot("x", "C"), rows, {("s", "A"): 3}, {}, custom, "rfid")
    assert isinstance(cmd, Adjust)
    assert (cmd.status, cmd.counted_qty) == ("qc_hold", 2)


def test_a_count_missing_more_than_one_quant_empties_them_in_order() -> None:
    rows = [quant("s", "A", "damaged", 2), quant("s", "A", "available", 3)]
    cmds = count_adjustments("e", Spot("x", "C"), rows, {("s", "A"): 1}, {}, D, "rfid")
    assert [(c.status, c.counted_qty) for c in cmds if isinstance(c, Adjust)] == [("available", 0), ("damaged", 1)]


def test_tally_sums_tags_per_lot_and_needs_each_lot() -> None:
    counted, expiry = counts.tally([Tag(sku="s", lot="A"), Tag(sku="s", lot="A", qty=2)], {})
    assert counted == {("s", "A"): 3}
    assert expiry == {("s", "A"): 0}
    with pytest.raises(BadEvent) as bad:
        counts.tally([Tag(sku="s")], {})
    assert bad.value.code is DeadLetterCode.INVALID


def test_a_cycle_count_line_defaults_to_the_ready_role_and_the_own_owner() -> None:
    lines = [Line("s", "A", 4), Line("s", "B", 0, status="damaged", owner="consignment:x", expiry=date(2027, 1, 1))]
    cmds = counts.cycle_count("e", "dc", "B/01", lines, D, DOC)
    assert [(c.request_id, c.status, c.owner, c.counted_qty) for c in cmds] == [
        ("e:0", "available", "own", 4),
        ("e:1", "damaged", "consignment:x", 0),
    ]
    assert all(c.reason == "cycle_count" and c.doc_ref == "DOC-1" and c.finance == DOC.finance for c in cmds)
    assert counts.count_expiries(lines) == {("s", "B"): ingestion.day_end_ms(date(2027, 1, 1))}


def test_a_found_receipt_books_the_counted_qty_from_the_variance_bucket() -> None:
    adjust = Adjust("r", "s", "x", "A", 5, "C", "available", "own", "cycle_count")
    found = counts.found_receipt(adjust, 77)
    assert (found.request_id, found.qty, found.expires_at_ms, found.doc_ref) == ("r:found", 5, 77, "cycle_count")
    assert found.source is External.COUNT_VARIANCE


# ---- excursions ----


def test_an_excursion_freezes_into_the_frozen_role_of_the_dictionary() -> None:
    frozen = D.role(Role.FROZEN)
    (cmd,) = freeze_commands("e", "x", [quant("s", "A", "qc_hold", 4, held=1)], D, "doc")
    assert (cmd.from_status, cmd.to_status, cmd.qty) == ("qc_hold", frozen, 3)
    assert cmd.request_id == derived_id("e", "s", "A", "C", "qc_hold", "own")
    assert excursions.freeze_doc_ref("", 14.5) == "excursion:14.5C"
    assert excursions.freeze_doc_ref("QA-7", 14.5) == "QA-7"


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
