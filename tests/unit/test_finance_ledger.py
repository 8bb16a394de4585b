"""Business events → vouchers and valuation, by hand-computed scenarios, and properties:
every voucher balances; the inventory account equals the layers at every step; a
reversal nets its original to zero; replaying the journal gives identical vouchers."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.memory.finance import InMemoryFinanceStore
from engine.domain.model import External
from engine.finance.follower import FinanceFeed
from engine.finance.ledger import Ledger
from engine.finance.mapping import default_rules
from engine.finance.ports import ValuationQuery
from engine.finance.reversal import net_by_account, red_letter
from engine.finance.vouchers import Voucher
from tests.finance_fixtures import SETUP, Journal, fin

RULES = default_rules()


def run(journal: Journal) -> tuple[Ledger, list[Voucher]]:
    ledger = Ledger(SETUP, RULES)
    vouchers: list[Voucher] = []
    for event in journal.events():
        vouchers.extend(ledger.apply(event).vouchers)
    return ledger, vouchers


def lines(v: Voucher) -> list[tuple[str, str, str, str]]:
    return [(line.role, line.account, str(line.debit), str(line.credit)) for line in v.lines]


def inventory_account(vouchers: list[Voucher], company: str = "acme") -> D:
    return sum(
        (ln.debit - ln.credit for v in vouchers if v.company == company for ln in v.lines if ln.role == "inventory"),
        D(0),
    )


def test_receipts_and_a_sale_from_lot_1() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "lot1", 5, fin("5"), doc="PO-1")
    j.receive("CHAIR-1", "SH01", "lot2", 5, fin("5"), doc="PO-1")
    j.receive("CHAIR-1", "SH01", "lot3", 10, fin("7"), doc="PO-2")
    j.issue("CHAIR-1", "SH01", "lot1", 2, fin(price="20", rate="0.13", terms="2/10 n/30"), doc="SO-1")
    ledger, vouchers = run(j)
    assert [v.kind for v in vouchers] == ["receipt", "receipt", "receipt", "sale"]
    assert lines(vouchers[0]) == [("inventory", "1405", "25.00", "0"), ("grni", "2202.02", "0", "25.00")]
    sale = vouchers[3]
    assert lines(sale) == [
        ("cogs", "6401", "10.00", "0"),
        ("inventory", "1405", "0", "10.00"),
        ("ar", "1122", "45.20", "0"),
        ("revenue", "6001", "0", "40.00"),
        ("output_tax", "2221.01.02", "0", "5.20"),
    ]
    assert sale.terms == "2/10 n/30"
    assert sale.voucher_id.startswith("sale:s0:4:")
    assert sale.sources[0].doc_ref == "SO-1"
    assert sale.sources[0].layer_ids
    pos = ledger.positions[("acme", "CHAIR-1")]
    assert round(pos.unit_cost, 3) == D("6.111")
    assert {lv.lot_id: lv.value for lv in pos.lots()}["lot1"] == D("15.00")
    assert inventory_account(vouchers) == pos.value == D("110.00")


def test_a_return_is_a_red_letter_reversal_of_the_sale_at_its_original_cost() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"))
    j.receive("CHAIR-1", "SH01", "L2", 10, fin("130"))
    j.issue("CHAIR-1", "SH01", "L1", 3, fin(price="300", rate="0.13"), doc="SO-9?channel=web")
    j.receive("CHAIR-1", "SH01", "L1", 1, fin("999"), doc="RMA-1?orig=SO-9", source=External.CUSTOMER)
    j.receive("CHAIR-1", "SH01", "L1", 2, None, doc="RMA-2?orig=SO-9", source=External.CUSTOMER)
    ledger, vouchers = run(j)
    sale, ret1, ret2 = vouchers[2], vouchers[3], vouchers[4]
    assert ("revenue", "6001.02", "0", "900.00") in lines(sale)  # the online-revenue rule
    assert ret1.kind == "return"
    assert ret1.reversal_of == sale.voucher_id
    assert lines(ret1)[:2] == [("cogs", "6401", "-100.00", "0"), ("inventory", "1405", "0", "-100.00")]
    assert ("ar", "1122", "-339.00", "0") in lines(ret1)
    assert all(amount == D(0) for amount in net_by_account([sale, ret1, ret2]).values())
    assert {lv.lot_id: (lv.qty, lv.value) for lv in ledger.positions[("acme", "CHAIR-1")].lots()} == {
        "L1": (10, D("1000.00")),
        "L2": (10, D("1300.00")),
    }


def test_gifts_by_their_tax_attribute() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"))
    j.issue("CHAIR-1", "SH01", "L1", 1, fin(price="300", rate="0.13"), doc="G-1?flow=gift&tax=deemed_sale")
    j.issue("CHAIR-1", "SH01", "L1", 1, fin(price="300", rate="0.13"), doc="G-2?flow=gift&tax=promotion")
    _, vouchers = run(j)
    deemed, promo = vouchers[1], vouchers[2]
    assert lines(deemed) == [
        ("promotion_expense", "6601.08", "139.00", "0"),
        ("inventory", "1405", "0", "100.00"),
        ("output_tax", "2221.01.05", "0", "39.00"),
    ]
    assert lines(promo) == [("promotion_expense", "6601.08", "100.00", "0"), ("inventory", "1405", "0", "100.00")]


def test_scrap_and_counts() -> None:
    j = Journal()
    j.receive("SCREW-1", "SH01", "L1", 10, fin("1.50"))
    j.issue("SCREW-1", "SH01", "L1", 2, None, dest=External.SCRAP)
    j.receive("SCREW-1", "SH01", "L1", 1, None, source=External.COUNT_VARIANCE)
    j.issue("SCREW-1", "SH01", "L1", 3, None, dest=External.COUNT_VARIANCE)
    _, vouchers = run(j)
    assert [(v.kind, lines(v)) for v in vouchers[1:]] == [
        ("scrap", [("scrap_expense", "6711", "3.00", "0"), ("inventory", "1405", "0", "3.00")]),
        ("count_gain", [("inventory", "1405", "1.50", "0"), ("count_variance", "1901", "0", "1.50")]),
        ("count_loss", [("count_variance", "1901", "4.50", "0"), ("inventory", "1405", "0", "4.50")]),
    ]


def test_transfers_at_cost_within_and_between_companies_and_a_cancelled_one() -> None:
    j = Journal()
    j.receive("TABLE-1", "SH01", "L1", 10, fin("40"))
    j.issue("TABLE-1", "SH01", "L1", 4, None, doc="TR-1?to=SH02", dest=External.TRANSIT)
    j.receive("TABLE-1", "SH02", "L1", 4, None, doc="TR-1", source=External.TRANSIT)
    j.issue("TABLE-1", "SH01", "L1", 3, None, doc="TR-2?to=BJ01", dest=External.TRANSIT)
    j.receive("TABLE-1", "BJ01", "L1", 3, None, doc="TR-2", source=External.TRANSIT)
    j.issue("TABLE-1", "SH01", "L1", 2, None, doc="TR-3?to=SH02", dest=External.TRANSIT)
    j.receive("TABLE-1", "SH01", "L1", 2, None, doc="TR-3", source=External.TRANSIT)  # came back: cancelled
    ledger, vouchers = run(j)
    kinds = [(v.kind, v.company, lines(v)) for v in vouchers[1:]]
    assert kinds[0] == (
        "transfer_out",
        "acme",
        [("transit", "1406", "160.00", "0"), ("inventory", "1405", "0", "160.00")],
    )
    assert kinds[1] == (
        "transfer_in",
        "acme",
        [("inventory", "1405", "160.00", "0"), ("transit", "1406", "0", "160.00")],
    )
    assert kinds[2][2] == [("intercompany_receivable", "1221.09", "120.00", "0"), ("inventory", "1405", "0", "120.00")]
    assert kinds[3][:2] == ("transfer_in", "acme-bj")
    assert kinds[3][2] == [("inventory", "1405", "120.00", "0"), ("intercompany_payable", "2241.09", "0", "120.00")]
    cancel = vouchers[-1]
    assert cancel.reversal_of == vouchers[5].voucher_id
    assert lines(cancel) == [("transit", "1406", "-80.00", "0"), ("inventory", "1405", "0", "-80.00")]
    assert ledger.positions[("acme", "TABLE-1")].value == D("280.00")
    assert ledger.positions[("acme-bj", "TABLE-1")].value == D("120.00")
    assert inventory_account(vouchers, "acme") == D("280.00")


def test_a_yen_ledger_books_whole_yen() -> None:
    j = Journal()
    j.receive("CHAIR-1", "TK01", "L1", 3, fin("100.5", currency="JPY"))
    _, vouchers = run(j)
    assert vouchers[0].currency == "JPY"
    assert lines(vouchers[0])[0][2] == "302"


def test_a_whole_voucher_red_letter_nets_to_zero() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 3, fin("10.10"))
    _, vouchers = run(j)
    rev = red_letter(vouchers[0], "rev:1", 1, vouchers[0].sources, "cancelled")
    assert rev.reversal_of == vouchers[0].voucher_id
    assert rev.debit_total == -vouchers[0].debit_total
    assert set(net_by_account([vouchers[0], rev]).values()) == {D(0)}


# ---- properties over random journals ----

SKUS = ["CHAIR-1", "SCREW-1"]
SITES = ["SH01", "SH02", "BJ01"]
step = st.tuples(
    st.sampled_from(["receive", "sell", "return", "scrap", "gain", "loss", "out", "in"]),
    st.sampled_from(SKUS),
    st.sampled_from(SITES),
    st.sampled_from(["L1", "L2"]),
    st.integers(1, 9),
    st.decimals(min_value=D("0.01"), max_value=D("500"), places=2),
)


def random_journal(steps: list[tuple[str, str, str, str, int, D]]) -> Journal:
    j = Journal()
    on_hand: dict[tuple[str, str, str], int] = {}
    for n, (what, sku, site, lot, asked, cost) in enumerate(steps):
        key = (sku, site, lot)
        have = on_hand.get(key, 0)
        if what in ("receive", "gain", "return", "in"):
            source = {"receive": External.SUPPLIER, "gain": External.COUNT_VARIANCE, "return": External.CUSTOMER}
            j.receive(sku, site, lot, asked, fin(str(cost)), doc=f"D{n % 4}", source=source.get(what, External.TRANSIT))
            on_hand[key] = have + asked
        elif have:
            qty = min(asked, have)
            dest = {"sell": External.CUSTOMER, "scrap": External.SCRAP, "loss": External.COUNT_VARIANCE}
            price = fin(price=str(cost * 2), rate="0.13")
            j.issue(
                sku, site, lot, qty, price, doc=f"D{n % 4}?to={SITES[n % 3]}", dest=dest.get(what, External.TRANSIT)
            )
            on_hand[key] = have - qty
    return j


@settings(max_examples=120, deadline=None)
@given(st.lists(step, min_size=1, max_size=50))
def test_every_voucher_balances_and_the_inventory_account_equals_the_layers(steps: list) -> None:  # type: ignore[type-arg]
    ledger = Ledger(SETUP, RULES)
    vouchers: list[Voucher] = []
    for event in random_journal(steps).events():
        vouchers.extend(ledger.apply(event).vouchers)
        for company in ("acme", "acme-bj"):
            on_books = sum((p.value for (c, _), p in ledger.positions.items() if c == company), D(0))
            assert inventory_account(vouchers, company) == on_books
    for v in vouchers:
        assert v.debit_total == v.credit_total


@settings(max_examples=60, deadline=None)
@given(st.lists(step, min_size=1, max_size=40), st.integers(1, 7))
async def test_replaying_the_journal_gives_identical_vouchers_and_redelivery_changes_nothing(
    steps: list,
    batch: int,  # type: ignore[type-arg]
) -> None:
    journal = random_journal(steps)
    first, second = InMemoryFinanceStore(), InMemoryFinanceStore()
    feed = FinanceFeed(first, SETUP, RULES)
    for i in range(0, len(journal.entries), batch):  # in batches, each delivered twice
        chunk = tuple(journal.entries[i : i + batch])
        await feed.apply(chunk)
        await feed.apply(chunk)
    restarted = FinanceFeed(first, SETUP, RULES)  # a restart reloads the checkpoint
    await restarted.apply(tuple(journal.entries))
    await FinanceFeed(second, SETUP, RULES).apply(tuple(journal.entries))  # one replay from zero
    a = await first.vouchers_by_source("")
    assert sorted(first._vouchers) == sorted(second._vouchers)
    assert all(first._vouchers[k] == second._vouchers[k] for k in first._vouchers)
    assert not a
    assert await first.valuation(ValuationQuery()) == await second.valuation(ValuationQuery())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=4),
    st.decimals(min_value=D("0.01"), max_value=D("9999.99"), places=2),
    st.decimals(min_value=D("0.01"), max_value=D("9999.99"), places=2),
    st.sampled_from(["0", "0.06", "0.09", "0.13"]),
    st.randoms(use_true_random=False),
)
def test_returns_in_any_pieces_net_their_sale_to_zero(
    receipts: list[int], cost: D, price: D, rate: str, rnd: object
) -> None:
    j = Journal()
    for n, qty in enumerate(receipts):
        j.receive("CHAIR-1", "SH01", "L1", qty, fin(str(cost + n)))
    sold = sum(receipts)
    j.issue("CHAIR-1", "SH01", "L1", sold, fin(price=str(price), rate=rate), doc="SO-P?tier=key")
    left, pieces = sold, []
    while left:
        piece = rnd.randint(1, left)  # type: ignore[attr-defined]
        pieces.append(piece)
        left -= piece
    for i, piece in enumerate(pieces):
        j.receive("CHAIR-1", "SH01", "L1", piece, None, doc=f"R-{i}?orig=SO-P", source=External.CUSTOMER)
    ledger, vouchers = run(j)
    sale = next(v for v in vouchers if v.kind == "sale")
    returns = [v for v in vouchers if v.kind == "return"]
    assert all(r.reversal_of == sale.voucher_id for r in returns)
    assert set(net_by_account([sale, *returns]).values()) == {D(0)}
    pos = ledger.positions[("acme", "CHAIR-1")]
    assert pos.qty == sold
    assert pos.value == sum((money_of(cost + n, q) for n, q in enumerate(receipts)), D(0))


def money_of(cost: D, qty: int) -> D:
    return (cost * qty).quantize(D("0.01"))


def test_a_dispatch_not_naming_its_destination_is_cleared_to_inter_company_when_it_arrives() -> None:
    """The engine's transfer desk journals both legs with doc_ref = the transfer id only."""
    j = Journal()
    j.receive("TABLE-1", "SH01", "L1", 10, fin("40"))
    j.issue("TABLE-1", "SH01", "L1", 3, None, doc="TR-9", dest=External.TRANSIT)
    j.receive("TABLE-1", "BJ01", "L1", 3, None, doc="TR-9", source=External.TRANSIT)
    _, vouchers = run(j)
    out, arrived, cleared = vouchers[1], vouchers[2], vouchers[3]
    assert (out.company, lines(out)) == (
        "acme",
        [("transit", "1406", "120.00", "0"), ("inventory", "1405", "0", "120.00")],
    )
    assert arrived.company == "acme-bj"
    assert lines(arrived) == [("inventory", "1405", "120.00", "0"), ("intercompany_payable", "2241.09", "0", "120.00")]
    assert cleared.company == "acme"
    assert lines(cleared) == [("intercompany_receivable", "1221.09", "120.00", "0"), ("transit", "1406", "0", "120.00")]
    assert net_by_account([out, cleared])["1406"] == D(0)


def test_a_document_that_sells_the_lot_again_between_returns_never_returns_more_than_it_sold() -> None:
    """Found by the million-movement balance check: shares of a merged sale overran it."""
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 2, fin("1000"))
    j.receive("CHAIR-1", "SH01", "L2", 10, fin("1"))
    j.issue("CHAIR-1", "SH01", "L1", 2, None, doc="SO-M")
    j.receive("CHAIR-1", "SH01", "L1", 1, None, doc="R-1?orig=SO-M", source=External.CUSTOMER)
    j.issue("CHAIR-1", "SH01", "L1", 1, None, doc="SO-M")  # the returned one, sold again under SO-M
    j.receive("CHAIR-1", "SH01", "L1", 1, None, doc="R-2?orig=SO-M", source=External.CUSTOMER)
    j.receive("CHAIR-1", "SH01", "L1", 1, None, doc="R-3?orig=SO-M", source=External.CUSTOMER)
    ledger, vouchers = run(j)
    returns = [v for v in vouchers if v.kind == "return"]
    assert all(line.debit <= 0 and line.credit <= 0 for v in returns for line in v.lines)
    assert ledger.positions[("acme", "CHAIR-1")].value == D("2010.00")
    assert inventory_account(vouchers) == D("2010.00")
