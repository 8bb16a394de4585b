"""Cost layers, by hand-computed scenarios (Odoo's lot-valuation and FIFO tests, ERPNext's
bin queue) and by properties against a plain FIFO oracle written for the tests."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.errors import InvariantViolation
from engine.finance.costing import Layer, LotValue, Method, Position
from engine.finance.money import minor_units, money


def test_currency_precision_comes_from_babel() -> None:
    assert (minor_units("CNY"), minor_units("JPY"), minor_units("KWD")) == (2, 0, 3)
    assert money(D("2.345"), "CNY") == D("2.35")  # half up, not half even
    assert money(D("2.5"), "JPY") == D("3")
    assert money(D("1.0005"), "KWD") == D("1.001")


def test_odoo_lot_valuation_10_at_5_in_two_lots_and_10_at_7_then_2_from_lot_1() -> None:
    """Odoo test_lot_valuation: 10@5 split over lots 1 and 2, 10@7 as lot 3, issue 2
    from lot 1 → product cost 6.111, lot 1 worth 15."""
    pos = Position(Method.FIFO, "USD")
    pos.receive("in1", "lot1", 5, D(5), 1)
    pos.receive("in1b", "lot2", 5, D(5), 1)
    pos.receive("in2", "lot3", 10, D(7), 2)
    issue = pos.issue("lot1", 2)
    assert (issue.qty, issue.value, issue.unit_cost) == (2, D("10.00"), D(5))
    assert issue.consumed[0].layer_id == "in1"
    assert round(pos.unit_cost, 3) == D("6.111")
    assert pos.lots() == [
        LotValue("lot1", 3, D("15.00")),
        LotValue("lot2", 5, D("25.00")),
        LotValue("lot3", 10, D("70.00")),
    ]
    assert (pos.qty, pos.value) == (18, D("110.00"))


def test_odoo_fifo_perpetual_10_at_10_and_10_at_8_sell_3_with_no_lot_named() -> None:
    pos = Position(Method.FIFO, "USD")
    pos.receive("a", "L1", 10, D(10), 1)
    pos.receive("b", "L2", 10, D(8), 2)
    issue = pos.issue("", 3)
    assert issue.value == D("30.00")
    assert (pos.qty, pos.value) == (17, D("150.00"))
    issue = pos.issue("", 10)  # 7 of the first layer and 3 of the second
    assert issue.value == D("94.00")
    assert [(c.layer_id, c.qty) for c in issue.consumed] == [("a", 7), ("b", 3)]
    assert (pos.qty, pos.value) == (7, D("56.00"))


def test_moving_average() -> None:
    pos = Position(Method.AVERAGE, "CNY")
    pos.receive("a", "L1", 10, D(10), 1)
    pos.receive("b", "L2", 10, D(8), 2)  # (100 + 80) / 20 = 9
    assert pos.unit_cost == D(9)
    assert pos.issue("L1", 3).value == D("27.00")
    pos.receive("c", "L3", 3, D(12), 3)  # (153 + 36) / 20 = 9.45
    assert (pos.qty, pos.value, pos.unit_cost) == (20, D("189.00"), D("9.45"))
    assert pos.issue("", 20).value == D("189.00")  # the last units take exactly what is left
    assert (pos.qty, pos.value) == (0, D(0))


def test_average_lots_sum_to_the_position() -> None:
    pos = Position(Method.AVERAGE, "CNY")
    pos.receive("a", "L1", 1, D(1), 1)
    pos.receive("b", "L2", 2, D(1), 1)
    pos.add_cost("", D("1.00"))  # 4.00 over 3 units: 1.33 + 2.67
    lots = pos.lots()
    assert sum(lot.value for lot in lots) == pos.value == D("4.00")


def test_landed_cost_on_a_lot_is_split_over_what_is_on_hand() -> None:
    pos = Position(Method.FIFO, "CNY")
    pos.receive("a", "L1", 3, D(10), 1)
    pos.receive("b", "L1", 7, D(10), 2)
    pos.receive("c", "L2", 5, D(10), 2)
    assert pos.add_cost("L1", D("100.00")) == D(0)
    assert pos.lots() == [LotValue("L1", 10, D("200.00")), LotValue("L2", 5, D("50.00"))]
    assert pos.issue("L1", 3).value == D("60.00")  # 30 + its 30 share of freight
    assert pos.add_cost("L9", D("5.00")) == D("5.00")  # nothing on hand: it is all expensed


def test_a_shortfall_goes_out_at_the_last_cost_and_the_next_receipt_corrects_it() -> None:
    pos = Position(Method.FIFO, "CNY")
    pos.receive("a", "L1", 2, D(10), 1)
    issue = pos.issue("L1", 5)
    assert (issue.value, issue.shortfall) == (D("50.00"), 3)
    assert (pos.qty, pos.value) == (-3, D("-30.00"))
    receipt = pos.receive("b", "L1", 4, D(12), 2)
    assert (receipt.value, receipt.inventory, receipt.correction) == (D("48.00"), D("42.00"), D("6.00"))
    assert (pos.qty, pos.value) == (1, D("12.00"))


def test_bad_quantities_are_invariant_violations() -> None:
    pos = Position(Method.FIFO, "CNY")
    with pytest.raises(InvariantViolation):
        pos.receive("a", "L1", 0, D(1), 1)
    with pytest.raises(InvariantViolation):
        pos.issue("L1", 0)


# ---- properties against a FIFO oracle ----


class FifoOracle:
    """A deliberately naive FIFO: one unit at a time, exact fractions, rounded once per
    layer like the books do."""

    def __init__(self) -> None:
        self.units: list[tuple[str, str, D]] = []  # (layer, lot, unit cost) oldest first

    def receive(self, layer: str, lot: str, qty: int, cost: D) -> None:
        self.units.extend((layer, lot, cost) for _ in range(qty))

    def issue(self, lot: str, qty: int) -> dict[str, int]:
        taken: dict[str, int] = {}
        for _ in range(qty):
            i = next(i for i, u in enumerate(self.units) if not lot or u[1] == lot)
            layer = self.units.pop(i)[0]
            taken[layer] = taken.get(layer, 0) + 1
        return taken

    def on_hand(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, lot, _ in self.units:
            out[lot] = out.get(lot, 0) + 1
        return out


costs = st.decimals(min_value=D("0.01"), max_value=D("999.99"), places=2)
ops = st.lists(
    st.tuples(st.booleans(), st.sampled_from(["L1", "L2", "L3", ""]), st.integers(1, 20), costs),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_fifo_matches_the_oracle_and_the_books_equal_the_layers(steps: list[tuple[bool, str, int, D]]) -> None:
    pos, oracle = Position(Method.FIFO, "CNY"), FifoOracle()
    book = D(0)  # the inventory account: + receipts at value, − issues at value
    for n, (is_receipt, named, asked, cost) in enumerate(steps):
        if is_receipt:
            lot = named or "L0"
            receipt = pos.receive(f"in{n}", lot, asked, cost, n)
            oracle.receive(f"in{n}", lot, asked, cost)
            book += receipt.inventory
            continue
        lot, have = named, oracle.on_hand()
        qty = min(asked, sum(have.values()) if not lot else have.get(lot, 0))
        if qty == 0:
            continue
        issue = pos.issue(lot, qty)
        assert {c.layer_id: c.qty for c in issue.consumed} == oracle.issue(lot, qty)
        book -= issue.value
        # the inventory account equals Σ on hand × layer cost, to the cent, at every step
        assert book == pos.value == sum((layer.remaining_value for layer in pos.layers), D(0))
        assert all(isinstance(layer, Layer) and layer.remaining_qty > 0 for layer in pos.layers)
    assert {lv.lot_id: lv.qty for lv in pos.lots() if lv.qty} == oracle.on_hand()


@settings(max_examples=200, deadline=None)
@given(ops)
def test_moving_average_is_q_r_plus_q_in_r_in_over_q_plus_q_in(steps: list[tuple[bool, str, int, D]]) -> None:
    pos = Position(Method.AVERAGE, "CNY")
    qty_on_hand, book = 0, D(0)
    for n, (is_receipt, lot, asked, cost) in enumerate(steps):
        if is_receipt:
            book += pos.receive(f"in{n}", lot, asked, cost, n).inventory
            qty_on_hand += asked
        elif qty_on_hand:
            qty = min(asked, qty_on_hand)
            expected = book if qty == qty_on_hand else money(book * qty / qty_on_hand, "CNY")
            assert pos.issue(lot, qty).value == expected
            book -= expected
            qty_on_hand -= qty
        assert (pos.qty, pos.value) == (qty_on_hand, book)
        assert sum(lv.value for lv in pos.lots()) == book
        assert sum(lv.qty for lv in pos.lots()) == qty_on_hand


def _summed_over_layers(pos: Position, lot_id: str) -> tuple[int, D]:
    """A lot's qty and value as a sum over its open layers (what lot_value must equal)."""
    qty, value = 0, D(0)
    for layer in pos.layers:
        if layer.lot_id == lot_id:
            qty, value = qty + layer.remaining_qty, value + layer.remaining_value
    return qty, value


wider_ops = st.lists(
    st.tuples(
        st.sampled_from(["receive", "issue", "landed", "reload"]),
        st.sampled_from(["L1", "L2", "L3", ""]),
        st.integers(1, 30),
        costs,
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(wider_ops, st.sampled_from(["CNY", "JPY", "KWD"]))
def test_a_lots_kept_sums_equal_the_sums_over_its_layers(steps: list[tuple[str, str, int, D]], currency: str) -> None:
    """lot_value is kept as layers change (not summed per call): through receipts, issues
    beyond stock (negative layers) and the receipts that fill them, landed costs, and a
    reload of the layers as a checkpoint does, it equals the sum over the lot's layers —
    the same Decimal, exponent included (the valuation rows are written from it)."""
    pos = Position(Method.FIFO, currency)
    for n, (op, named, qty, cost) in enumerate(steps):
        lot = named or "L0"
        if op == "receive":
            pos.receive(f"in{n}", lot, qty, cost, n)
        elif op == "issue":
            pos.issue(named, qty)  # may go negative: stock allowed below zero
        elif op == "landed":
            pos.add_cost(named, cost)
        else:
            pos = Position(Method.FIFO, currency, layers=[dataclasses.replace(ly) for ly in pos.layers])
        for lot_id in ("L0", "L1", "L2", "L3"):
            kept, summed = pos.lot_value(lot_id), _summed_over_layers(pos, lot_id)
            assert kept == summed, lot_id
            assert str(kept[1]) == str(summed[1]), lot_id
