"""The finance follower's lean derivation (engine.finance.events) books exactly what the
reference derivation (engine.domain.events.business_events) books: from random journal
entries — every movement kind and bucket, owned and consigned stock, ops with and without
finance, typed attributes, amounts that are not decimals — the same vouchers (their stored
documents byte for byte), the same valuation rows and the same ledger state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.clickhouse.finance import _voucher_row
from engine.domain.commands import Consume
from engine.domain.events import business_events
from engine.domain.model import External, Finance, Movement, MovementKind, QuantKey
from engine.domain.ports import JournalEntry
from engine.finance.costing import Method
from engine.finance.events import ledger_events
from engine.finance.ledger import Effects, Ledger
from engine.finance.mapping import default_rules
from engine.finance.setup import Category, Company, LedgerSetup
from engine.finance.state import ledger_to_doc

SETUP = LedgerSetup(
    (Company("east", "CNY", site_prefixes=("E",)), Company("west", "JPY", site_prefixes=("W",))),
    (Category("bulk", ("AVG-",), Method.AVERAGE),),
    "east",
)
SKUS, SITES, RIDS = ("FIFO-1", "AVG-1"), ("E1", "W1"), ("r1", "r2", "r3")

_quants = st.builds(
    QuantKey,
    st.sampled_from(["L1", "L2"]),
    st.just(""),
    st.just("available"),
    st.sampled_from(["own", "own", "consignment:acme"]),
)
_buckets = _quants | st.sampled_from(list(External))
_amounts = st.sampled_from(["", "12.40", "3", "0.0825", "abc", "-1", "1e3", "NaN"])
_finances = st.none() | st.builds(
    Finance,
    currency=st.sampled_from(["", "CNY"]),
    unit_cost=_amounts,
    unit_price=_amounts,
    tax_rate=_amounts,
    terms=st.sampled_from(["", "2/10 n/30", "n/30", "nonsense"]),
    customer_tier=st.sampled_from(["", "key"]),
    sales_channel=st.sampled_from(["", "web"]),
    tax_attribute=st.sampled_from(["", "deemed_sale"]),
    gift=st.booleans(),
    return_of=st.sampled_from(["", "SO-1"]),
    to_site=st.sampled_from(["", "W1", "E1"]),
    to_company=st.sampled_from(["", "west"]),
)
_movements = st.builds(
    Movement,
    st.integers(1, 10**6),
    st.sampled_from(list(MovementKind)),
    st.sampled_from(SKUS),
    st.sampled_from(SITES),
    st.sampled_from(["L1", "L2", ""]),
    st.integers(-2, 40),
    _buckets,
    _buckets,
    request_id=st.sampled_from(["", *RIDS]),
    doc_ref=st.sampled_from(["", "SO-1", "SO-2?tier=key&flow=gift", "PO-1", "TR-1?to=W1"]),
    at_ms=st.integers(0, 2**45),
)


@st.composite
def entries(draw: st.DrawFn, batch_seq: int) -> JournalEntry:
    ops = [
        Consume(rid, sku, site, 1, finance=draw(_finances))
        for rid in RIDS
        for sku in SKUS
        for site in SITES
        if draw(st.booleans())
    ]
    movements = draw(st.lists(_movements, max_size=25))
    return JournalEntry("s0", batch_seq, 0, tuple(ops), tuple(movements))


def _voucher_rows(booked: list[Effects]) -> list[list[object]]:
    """The vouchers as the store writes them: the row and its document, byte for byte."""
    return [_voucher_row(v) for effects in booked for v in effects.vouchers]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_lean_events_book_what_the_business_events_book(data: st.DataObject) -> None:
    reference, lean = Ledger(SETUP, default_rules()), Ledger(SETUP, default_rules())
    for batch_seq in range(1, data.draw(st.integers(1, 4)) + 1):
        entry = data.draw(entries(batch_seq))
        want = [reference.apply(e) for e in business_events(entry, batch_seq)]
        got = [lean.apply(e) for e in ledger_events(entry)]
        assert _voucher_rows(got) == _voucher_rows(want)
        # the same Decimals, exponents included (repr shows them)
        assert repr([r for effects in got for r in effects.valuations]) == repr(
            [r for effects in want for r in effects.valuations]
        )
    assert ledger_to_doc(lean) == ledger_to_doc(reference)


def test_movements_the_ledgers_do_not_value_make_no_lean_event() -> None:
    """Moves inside the site, consigned stock, no qty and external-to-external make none; the
    ids of the rest are the reference events' (the journal position of the movement)."""
    own, consigned = QuantKey("L1", "", "available", "own"), QuantKey("L1", "", "available", "consignment:x")
    movements = (
        Movement(1, MovementKind.MOVE, "FIFO-1", "E1", "L1", 5, own, own),
        Movement(2, MovementKind.RECEIVE, "FIFO-1", "E1", "L1", 5, External.SUPPLIER, consigned),
        Movement(3, MovementKind.RECEIVE, "FIFO-1", "E1", "L1", 0, External.SUPPLIER, own),
        Movement(4, MovementKind.ADJUST, "FIFO-1", "E1", "L1", 5, External.SCRAP, External.CUSTOMER),
        Movement(5, MovementKind.RECEIVE, "FIFO-1", "E1", "L1", 5, External.SUPPLIER, own),
        Movement(6, MovementKind.CONSUME, "FIFO-1", "E1", "L1", 2, own, External.CUSTOMER),
    )
    entry = JournalEntry("s9", 7, 0, (), movements)
    assert [(e.event_id, e.seq) for e in ledger_events(entry)] == [("s9:7:4", 5), ("s9:7:5", 6)]
