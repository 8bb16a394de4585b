"""The financial context of a command, and where stock comes from and goes to.

Finance is checked field by field (every command carries it), settlement terms are
parsed from the forms people write, a receipt books from its `source`, a consumption
books to its `destination` and can name the one status it takes from. Every refusal
changes nothing (CellDriver.refuse checks the ledger and the outbox).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.commands import (
    CONSUME_DESTINATIONS,
    RECEIVE_SOURCES,
    Adjust,
    ChangeStatus,
    Command,
    Commit,
    Consume,
    Move,
    Receive,
    Release,
    Reserve,
    ReserveLine,
    Strategy,
    check_finance,
    parse_terms,
    same_payload,
    validate,
)
from engine.domain.errors import FieldViolation, InvalidArgument, RequestConflict
from engine.domain.ledger import replay, same_balances
from engine.domain.model import External, Finance, MovementKind, Terms
from engine.domain.statuses import DEFAULT_DICTIONARY
from tests.unit.conftest import DAY_MS, SITE, SKU, T0_MS, CellDriver, key, violated_fields

EUR = Finance(currency="EUR", unit_cost="12.50", unit_price="19.99", tax_rate="0.20", terms="2/10 n/30")


def violations(finance: Finance | None) -> dict[str, str]:
    out: list[FieldViolation] = []
    check_finance(finance, "finance", out)
    return {v.field: v.description for v in out}


def every_command(finance: Finance | None) -> list[Command]:
    """One valid command of each kind, carrying `finance`."""
    return [
        Receive("r1", SKU, SITE, "L1", 5, status="available", finance=finance),
        Move("r2", SKU, SITE, "L1", 1, "", "A/01", finance=finance),
        ChangeStatus("r3", SKU, SITE, "L1", 1, "available", "damaged", finance=finance),
        Reserve("r4", SKU, SITE, "H1", (ReserveLine(1),), 60_000, finance=finance),
        Commit("r5", SKU, SITE, "H1", finance=finance),
        Release("r6", SKU, SITE, "H1", finance=finance),
        Consume("r7", SKU, SITE, 1, finance=finance),
        Adjust("r8", SKU, SITE, "L1", 3, finance=finance),
    ]


# ---- Finance, field by field ----


def test_no_finance_and_an_empty_one_are_valid() -> None:
    assert violations(None) == {}
    assert violations(Finance()) == {}


def test_a_full_financial_context_is_valid() -> None:
    assert violations(EUR) == {}


@pytest.mark.parametrize("cmd", every_command(EUR), ids=lambda c: type(c).__name__)
def test_every_command_accepts_a_financial_context(cmd: Command) -> None:
    validate(cmd, DEFAULT_DICTIONARY)


@pytest.mark.parametrize("cmd", every_command(Finance(currency="eur")), ids=lambda c: type(c).__name__)
def test_every_command_checks_its_financial_context(cmd: Command) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate(cmd, DEFAULT_DICTIONARY)
    assert violated_fields(info.value) == {"finance.currency"}


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "E1R", "€", " EUR", "EUR\n", "ÉUR"])
def test_currency_is_three_upper_case_letters(currency: str) -> None:
    assert set(violations(Finance(currency=currency))) == {"finance.currency"}


@pytest.mark.parametrize("field", ["unit_cost", "unit_price"])
def test_an_amount_needs_a_currency(field: str) -> None:
    found = violations(Finance(**{field: "1.00"}))  # type: ignore[arg-type]
    assert found == {"finance.currency": "is required when an amount is given"}


def test_a_currency_alone_and_rates_or_terms_without_a_currency_are_valid() -> None:
    assert violations(Finance(currency="USD")) == {}
    assert violations(Finance(tax_rate="0.07", terms="net 30")) == {}


@pytest.mark.parametrize(
    "amount",
    ["0", "0.0", "12.50", "007.25", "1000000", "0.000001", "999999999999.999999", "999999999999999999"],
)
@pytest.mark.parametrize("field", ["unit_cost", "unit_price"])
def test_good_amounts(field: str, amount: str) -> None:
    assert violations(Finance(currency="EUR", **{field: amount})) == {}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "amount",
    [
        "-1",
        "+1",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        "1.",
        ".5",
        "1,50",
        " 1",
        "1 ",
        "1\n",
        "0x10",
        "1_000",
        "١٢",  # Arabic-Indic digits: Decimal would read them, finance systems would not
        "0.0000001",  # 7 places
        "1234567890123456789",  # 19 digits
        "1234567890123.123456",  # 19 digits
        "9" * 100,
    ],
)
@pytest.mark.parametrize("field", ["unit_cost", "unit_price"])
def test_bad_amounts(field: str, amount: str) -> None:
    assert set(violations(Finance(currency="EUR", **{field: amount}))) == {f"finance.{field}"}  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", ["0", "0.0", "0.07", "0.2", "0.20", "1", "1.000000"])
def test_good_tax_rates(rate: str) -> None:
    assert violations(Finance(tax_rate=rate)) == {}


@pytest.mark.parametrize("rate", ["1.01", "20", "-0.1", "0.2%", "NaN", "0.1234567", "1e-1"])
def test_bad_tax_rates(rate: str) -> None:
    assert set(violations(Finance(tax_rate=rate))) == {"finance.tax_rate"}


@pytest.mark.parametrize("terms", ["2/10 n/30", "2/10 NET 30", "n/30", "Net 30", "2.5/15 n/45"])
def test_good_terms(terms: str) -> None:
    assert violations(Finance(terms=terms)) == {}


@pytest.mark.parametrize(
    "terms", ["30 days", "2/10", "2/30 n/30", "0/10 n/30", "100/10 n/30", "n/0", "2/10 n/30 extra", "x" * 65]
)
def test_bad_terms_say_why(terms: str) -> None:
    found = violations(Finance(terms=terms))
    assert set(found) == {"finance.terms"}
    assert found["finance.terms"]


def test_every_bad_field_is_reported_at_once() -> None:
    bad = Finance(currency="eu", unit_cost="-1", unit_price="x", tax_rate="2", terms="soon")
    assert set(violations(bad)) == {
        "finance.currency",
        "finance.unit_cost",
        "finance.unit_price",
        "finance.tax_rate",
        "finance.terms",
    }


def test_a_finance_of_the_wrong_type_is_a_violation() -> None:
    assert set(violations({"currency": "EUR"})) == {"finance"}  # type: ignore[arg-type]
    assert set(violations(Finance(unit_cost=12.5))) == {"finance.unit_cost"}  # type: ignore[arg-type]


# ---- settlement terms ----


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("2/10 n/30", Terms(Decimal(2), 10, 30)),
        ("2/10 net 30", Terms(Decimal(2), 10, 30)),
        ("2/10 NET 30", Terms(Decimal(2), 10, 30)),
        ("n/30", Terms(Decimal(0), 0, 30)),
        ("N/30", Terms(Decimal(0), 0, 30)),
        ("net 30", Terms(Decimal(0), 0, 30)),
        ("Net 60", Terms(Decimal(0), 0, 60)),
        ("2.5/15 n/45", Terms(Decimal("2.5"), 15, 45)),
        ("  1/7   n/14  ", Terms(Decimal(1), 7, 14)),
    ],
)
def test_parse_terms(text: str, terms: Terms) -> None:
    assert parse_terms(text) == terms


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "cannot read terms"),
        ("2/10", "cannot read terms"),
        ("n/", "cannot read terms"),
        ("-2/10 n/30", "cannot read terms"),
        ("2/10 n/30 x", "cannot read terms"),
        ("0/10 n/30", "discount"),
        ("100/10 n/30", "discount"),
        ("2/30 n/30", "discount days"),
        ("2/40 n/30", "discount days"),
        ("2/0 n/30", "discount days"),
        ("n/0", "net days"),
        ("n/9999", "net days"),
        ("x" * 65, "at most"),
    ],
)
def test_bad_terms_raise_value_error(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_terms(text)


def _write_terms(terms: Terms, net_word: str, upper: bool) -> str:
    net = f"n/{terms.net_days}" if net_word == "n/" else f"net {terms.net_days}"
    text = f"{terms.discount_pct}/{terms.discount_days} {net}" if terms.discount_days else net
    return text.upper() if upper else text


@st.composite
def any_terms(draw: st.DrawFn) -> Terms:
    net_days = draw(st.integers(1, 3_650))
    if net_days == 1 or draw(st.booleans()):
        return Terms(Decimal(0), 0, net_days)
    pct = draw(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2))
    return Terms(pct, draw(st.integers(1, net_days - 1)), net_days)


@given(terms=any_terms(), net_word=st.sampled_from(["n/", "net "]), upper=st.booleans())
def test_terms_read_back_as_written(terms: Terms, net_word: str, upper: bool) -> None:
    text = _write_terms(terms, net_word, upper)
    assert parse_terms(text) == terms
    assert violations(Finance(terms=text)) == {}


@given(st.text(max_size=20))
def test_parse_terms_answers_every_text_with_terms_or_value_error(text: str) -> None:
    try:
        terms = parse_terms(text)
    except ValueError as exc:
        message = str(exc)
        assert message, "a refusal must say why"
        return
    assert 0 < terms.net_days <= 3_650
    assert terms.discount_days < terms.net_days
    assert (terms.discount_pct == 0) == (terms.discount_days == 0)


# ---- idempotency: finance is part of the payload ----


def test_a_retry_with_other_finance_is_a_conflict(driver: CellDriver) -> None:
    cmd = driver.receive_cmd("L1", 5, finance=EUR)
    first = driver.run(cmd)
    assert driver.run(dataclasses.replace(cmd, finance=dataclasses.replace(EUR))) == first  # an equal copy
    assert not same_payload(cmd, dataclasses.replace(cmd, finance=None))
    driver.refuse(dataclasses.replace(cmd, finance=dataclasses.replace(EUR, unit_cost="12.51")), RequestConflict)


def test_finance_changes_no_balance(driver: CellDriver) -> None:
    driver.receive("L1", 5, finance=EUR)
    driver.consume(2, finance=EUR)
    assert driver.qty(key("L1")) == 3


# ---- where a receipt comes from ----


@pytest.mark.parametrize("source", RECEIVE_SOURCES)
def test_a_receipt_books_from_its_source(driver: CellDriver, source: External) -> None:
    driver.receive("L1", 5, source=source)
    [m] = driver.drain()
    assert (m.kind, m.src, m.dst, m.qty) == (MovementKind.RECEIVE, source, key("L1"), 5)
    assert driver.ledger.externals[source] == -5


def test_a_receipt_books_from_the_supplier_by_default(driver: CellDriver) -> None:
    driver.receive("L1", 5)
    assert [m.src for m in driver.drain()] == [External.SUPPLIER]


@pytest.mark.parametrize("source", [External.SCRAP, "@customer", "customer", None])
def test_a_receipt_from_elsewhere_is_refused(driver: CellDriver, source: object) -> None:
    err = driver.refuse(driver.receive_cmd("L1", 5, source=source), InvalidArgument)
    assert violated_fields(err) == {"source"}


def test_a_return_arrives_pending_and_a_transfer_in_transit() -> None:
    validate(Receive("r", SKU, SITE, "L1", 1, status="returned_pending", source=External.CUSTOMER), DEFAULT_DICTIONARY)
    validate(Receive("r", SKU, SITE, "L1", 1, status="in_transit_in", source=External.TRANSIT), DEFAULT_DICTIONARY)


# ---- where a consumption goes, and which status it takes from ----


@pytest.mark.parametrize("destination", CONSUME_DESTINATIONS)
def test_a_consumption_books_to_its_destination_shortfall_too(driver: CellDriver, destination: External) -> None:
    driver.receive("L1", 3)
    driver.drain()
    consumed = driver.consume(5, destination=destination)
    assert (consumed.consumed_qty, consumed.shortfall_qty) == (3, 2)
    assert [(m.kind, m.src, m.dst, m.qty) for m in driver.drain()] == [
        (MovementKind.CONSUME, key("L1"), destination, 3),
        (MovementKind.DISCREPANCY, External.COUNT_VARIANCE, destination, 2),
    ]
    assert driver.ledger.externals[destination] == 5


def test_a_consumption_goes_to_the_customer_by_default(driver: CellDriver) -> None:
    driver.receive("L1", 3)
    driver.drain()
    driver.consume(1)
    assert [m.dst for m in driver.drain()] == [External.CUSTOMER]


@pytest.mark.parametrize("destination", [External.SUPPLIER, External.COUNT_VARIANCE, "@scrap", "scrap"])
def test_a_consumption_to_elsewhere_is_refused(driver: CellDriver, destination: object) -> None:
    err = driver.refuse(driver.consume_cmd(1, destination=destination), InvalidArgument)
    assert violated_fields(err) == {"destination"}


@pytest.mark.parametrize(
    ("status", "says"), [("shipped", "unknown status"), ("in_transit_out", "not on hand"), ("in_transit_in", "on hand")]
)
def test_a_consumption_from_an_unknown_or_absent_status_is_refused(driver: CellDriver, status: str, says: str) -> None:
    err = driver.refuse(driver.consume_cmd(1, status=status), InvalidArgument)
    assert violated_fields(err) == {"status"}
    assert says in err.violations[0].description


def _mixed_stock(driver: CellDriver) -> None:
    """available 4, packed 3 + 2 (two lots), damaged 5 — all of one sku at one site."""
    driver.receive("L-A", 4, expires_at_ms=T0_MS + 40 * DAY_MS)
    driver.receive("L-P1", 5, expires_at_ms=T0_MS + 20 * DAY_MS)
    driver.change_status("L-P1", 5, "available", "picking")
    driver.change_status("L-P1", 3, "picking", "packed")
    driver.receive("L-P2", 2, expires_at_ms=T0_MS + 10 * DAY_MS)
    driver.change_status("L-P2", 2, "available", "picking")
    driver.change_status("L-P2", 2, "picking", "packed")
    driver.receive("L-D", 5, status="damaged")
    driver.drain()


def test_shipping_from_packed_takes_only_packed_stock_fefo(driver: CellDriver) -> None:
    _mixed_stock(driver)
    shipped = driver.consume(4, status="packed", destination=External.TRANSIT)
    assert [(a.lot_id, a.status, a.qty) for a in shipped.allocations] == [("L-P2", "packed", 2), ("L-P1", "packed", 2)]
    assert shipped.shortfall_qty == 0
    assert {m.dst for m in driver.drain()} == {External.TRANSIT}
    assert driver.qty(key("L-A")) == 4  # the sellable stock was not touched
    assert driver.qty(key("L-P1", status="picking")) == 2


def test_scrapping_damaged_stock_leaves_sellable_stock_alone(driver: CellDriver) -> None:
    _mixed_stock(driver)
    available = driver.available()
    scrapped = driver.consume(7, status="damaged", destination=External.SCRAP)
    assert (scrapped.consumed_qty, scrapped.shortfall_qty) == (5, 2)  # still never refused
    assert driver.available() == available
    assert [(m.kind, m.src, m.dst, m.qty) for m in driver.drain()] == [
        (MovementKind.CONSUME, key("L-D", status="damaged"), External.SCRAP, 5),
        (MovementKind.DISCREPANCY, External.COUNT_VARIANCE, External.SCRAP, 2),
    ]


def test_a_status_filter_keeps_the_lot_owner_bin_and_strategy_filters(driver: CellDriver) -> None:
    driver.receive("L-1", 2, status="damaged", bin="A/01", received_at_ms=T0_MS - 2 * DAY_MS)
    driver.receive("L-2", 2, status="damaged", bin="B/01", received_at_ms=T0_MS - DAY_MS)
    driver.receive("L-3", 2, status="damaged", bin="A/02", owner="consignment:acme")
    driver.drain()
    by_bin = driver.consume(1, status="damaged", bin_prefix="B")
    assert [a.lot_id for a in by_bin.allocations] == ["L-2"]
    by_owner = driver.consume(1, status="damaged", owner="consignment")
    assert [a.lot_id for a in by_owner.allocations] == ["L-3"]
    by_lot = driver.consume(1, status="damaged", strategy=Strategy.LOT, lot_id="L-1")
    assert [a.lot_id for a in by_lot.allocations] == ["L-1"]
    newest = driver.consume(1, status="damaged", strategy=Strategy.LIFO)
    assert [a.lot_id for a in newest.allocations] == ["L-3"]


def test_a_status_filter_never_takes_held_stock(driver: CellDriver) -> None:
    driver.receive("L-1", 3, status="available")
    driver.reserve("H1", ReserveLine(2))
    driver.drain()
    taken = driver.consume(3, status="available")
    assert (taken.consumed_qty, taken.shortfall_qty) == (1, 2)
    assert driver.held(key("L-1")) == 2


def test_movements_with_every_bucket_replay_to_the_live_state(driver: CellDriver) -> None:
    journal = []
    for source in RECEIVE_SOURCES:
        driver.receive("L1", 4, source=source)
    driver.receive("L2", 3, status="damaged", source=External.CUSTOMER)
    journal += driver.drain()
    for destination in CONSUME_DESTINATIONS:
        driver.consume(3, destination=destination, finance=EUR)
    driver.consume(5, status="damaged", destination=External.SCRAP)
    journal += driver.drain()
    driver.ledger.check_invariants(DEFAULT_DICTIONARY)
    assert sum(q.qty for q in driver.ledger.quants.values()) + sum(driver.ledger.externals.values()) == 0
    assert same_balances(replay(journal), driver.ledger)


def test_a_command_restored_from_an_older_snapshot_compares_with_the_new_defaults() -> None:
    # Slotted dataclasses unpickle positionally: a Receive pickled before `source` and
    # `finance` existed comes back without them, and must still match its retry.
    from dataclasses import fields as dc_fields

    from engine.domain.commands import Receive, same_payload

    new = Receive("r", "s", "x", "L", 3)
    old = Receive.__new__(Receive)
    old_fields = [f.name for f in dc_fields(Receive) if f.name not in ("source", "finance")]
    old.__setstate__([getattr(new, n) for n in old_fields])
    assert not hasattr(old, "finance")
    assert same_payload(old, new)
