"""Finance's typed attributes (journal v7): customer tier, sales channel, tax attribute,
gift, the sale a return refers to and a transfer's destination choose the accounts, the
typed field wins over the old doc_ref `?key=value`, and movements journaled before v7
(tests/data/journal/v6-finance-1.bin, attributes on the doc_ref) book as they did."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from adapters.memory.finance import InMemoryFinanceDocuments, InMemoryFinanceStore
from adapters.nats.codec import decode_entry
from engine.domain.commands import FieldViolation, check_finance
from engine.domain.events import business_events
from engine.domain.model import External, Finance
from engine.finance.exports import default_profiles
from engine.finance.follower import FinanceFeed
from engine.finance.ledger import DocAttrs, Ledger, attrs_ref, doc_attrs
from engine.finance.mapping import default_rules
from engine.finance.reversal import net_by_account
from engine.finance.service import FinanceDesk, source_attrs
from engine.finance.state import voucher_from_doc, voucher_to_doc
from engine.finance.vouchers import Source, Voucher
from tests.finance_fixtures import SETUP, Journal, fin

RULES = default_rules()
SAMPLE = Path(__file__).parents[1] / "data" / "journal" / "v6-finance-1.bin"
SALE = fin(price="300", rate="0.13")


def run(journal: Journal) -> list[Voucher]:
    ledger = Ledger(SETUP, RULES)
    return [v for event in journal.events() for v in ledger.apply(event).vouchers]


def accounts(v: Voucher) -> dict[str, str]:
    return {line.role: line.account for line in v.lines}


def test_a_typed_sale_books_by_its_tier_and_channel() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"), doc="PO-1")
    j.issue("CHAIR-1", "SH01", "L1", 2, replace(SALE, customer_tier="key", sales_channel="web"), doc="SO-1")
    j.issue("CHAIR-1", "SH01", "L1", 1, SALE, doc="SO-2")
    _, typed, plain = run(j)
    assert accounts(typed) == {**accounts(plain), "ar": "1122.01", "revenue": "6001.02"}
    assert (typed.sources[0].tier, typed.sources[0].channel) == ("key", "web")


def test_a_typed_gift_books_output_tax_only_as_a_deemed_sale() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"))
    j.issue("CHAIR-1", "SH01", "L1", 1, replace(SALE, gift=True, tax_attribute="deemed_sale"), doc="G-1")
    j.issue("CHAIR-1", "SH01", "L1", 1, replace(SALE, gift=True, tax_attribute="promotion"), doc="G-2")
    _, deemed, promo = run(j)
    assert (deemed.kind, promo.kind) == ("gift", "gift")
    assert [(ln.role, ln.account, str(ln.credit)) for ln in deemed.lines if ln.role == "output_tax"] == [
        ("output_tax", "2221.01.05", "39.00")
    ]
    assert "output_tax" not in accounts(promo)


def test_a_typed_return_reverses_its_sale_on_the_sales_accounts() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"))
    j.issue("CHAIR-1", "SH01", "L1", 3, replace(SALE, sales_channel="web", customer_tier="key"), doc="SO-9")
    j.receive("CHAIR-1", "SH01", "L1", 3, Finance(return_of="SO-9"), doc="RMA-1", source=External.CUSTOMER)
    _, sale, ret = run(j)
    assert ret.kind == "return"
    assert ret.reversal_of == sale.voucher_id
    assert accounts(ret) == accounts(sale)
    assert all(amount == 0 for amount in net_by_account([sale, ret]).values())
    assert (ret.sources[0].tier, ret.sources[0].channel) == ("key", "web")  # the sale's: explain shows them


def test_a_typed_destination_makes_a_transfer_inter_company() -> None:
    j = Journal()
    j.receive("TABLE-1", "SH01", "L1", 10, fin("40"))
    j.issue("TABLE-1", "SH01", "L1", 2, Finance(to_site="SH02"), doc="TR-1", dest=External.TRANSIT)
    j.issue("TABLE-1", "SH01", "L1", 2, Finance(to_site="BJ01"), doc="TR-2", dest=External.TRANSIT)
    j.issue("TABLE-1", "SH01", "L1", 2, Finance(to_company="acme-bj"), doc="TR-3", dest=External.TRANSIT)
    _, inside, to_bj, to_company = run(j)
    assert "transit" in accounts(inside)
    assert "intercompany_receivable" not in accounts(inside)
    assert "intercompany_receivable" in accounts(to_bj)
    assert "intercompany_receivable" in accounts(to_company)


def test_the_typed_attribute_wins_over_the_doc_ref() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"))
    j.issue("CHAIR-1", "SH01", "L1", 1, replace(SALE, sales_channel="web"), doc="SO-1?channel=pos&tier=key")
    _, sale = run(j)
    assert accounts(sale)["revenue"] == "6001.02"
    assert accounts(sale)["ar"] == "1122.01"  # not said typed: the doc_ref's still counts


def test_movements_journaled_before_v7_book_by_their_doc_ref_attributes() -> None:
    """A v6 entry (written with the v6 schema): sale with tier and channel, a return naming
    it, a gift as deemed sale and an inter-company transfer, all after "?" in the doc_ref."""
    entry = decode_entry(SAMPLE.read_bytes())
    assert all(op.finance is None or op.finance.customer_tier == "" for op in entry.ops)
    ledger = Ledger(SETUP, RULES)
    vouchers = [v for e in business_events(entry) for v in ledger.apply(e).vouchers]
    _receipt, sale, ret, gift, transfer = vouchers
    assert (accounts(sale)["ar"], accounts(sale)["revenue"]) == ("1122.01", "6001.02")
    assert ret.reversal_of == sale.voucher_id
    assert accounts(ret) == accounts(sale)
    assert accounts(gift)["output_tax"] == "2221.01.05"
    assert "intercompany_receivable" in accounts(transfer)


async def test_explain_shows_the_typed_attributes_and_a_stored_voucher_keeps_them() -> None:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"))
    j.issue("CHAIR-1", "SH01", "L1", 1, replace(SALE, sales_channel="web", customer_tier="key"), doc="SO-1")
    store = InMemoryFinanceStore()
    feed = FinanceFeed(store, SETUP, RULES, InMemoryFinanceDocuments())
    await feed.apply(tuple(j.entries))
    explained = await FinanceDesk(store, feed, default_profiles()).explain("SO-1")
    by_role = {e.facts.role: e for e in explained}
    assert (by_role["revenue"].facts.tier, by_role["revenue"].facts.channel) == ("key", "web")
    for role, rule in (("revenue", "online sales revenue"), ("ar", "key-account receivables")):
        matched = [r.name for _, r, why in by_role[role].steps if not why]
        assert matched == [rule]
    sale = run(j)[1]
    assert voucher_from_doc(voucher_to_doc(sale)) == sale


def test_a_format_1_voucher_reads_and_explains_from_its_doc_ref() -> None:
    doc = voucher_to_doc(run(_sold("SO-1?channel=web"))[1])
    doc["format"] = 1
    for s in doc["sources"]:
        del s["tier"], s["channel"], s["tax"]
    old = voucher_from_doc(doc)
    assert source_attrs(old.sources[0]).channel == "web"
    assert source_attrs(Source("e", "SO-1", tier="key")) == DocAttrs("SO-1", tier="key")


def _sold(doc: str) -> Journal:
    j = Journal()
    j.receive("CHAIR-1", "SH01", "L1", 10, fin("100"))
    j.issue("CHAIR-1", "SH01", "L1", 1, SALE, doc=doc)
    return j


def test_a_sale_record_keeps_its_attributes_in_the_doc_ref_form() -> None:
    attrs = DocAttrs("SO-1", "key", "web", "deemed_sale", "gift", "SO-0", "BJ01")
    assert doc_attrs(attrs_ref(attrs)) == DocAttrs("SO-1", "key", "web", "deemed_sale", "gift")
    assert attrs_ref(DocAttrs("SO-1")) == "SO-1"


@pytest.mark.parametrize(
    ("finance", "field"),
    [
        (Finance(customer_tier="Key Account"), "finance.customer_tier"),
        (Finance(sales_channel="web?x=1"), "finance.sales_channel"),
        (Finance(tax_attribute="x" * 65), "finance.tax_attribute"),
        (Finance(return_of="SO-1?tier=key"), "finance.return_of"),
        (Finance(return_of="SO\n1"), "finance.return_of"),
        (Finance(to_site="BJ 01"), "finance.to_site"),
        (Finance(to_company="a/b"), "finance.to_company"),
        (Finance(gift="yes"), "finance.gift"),  # type: ignore[arg-type]
        (Finance(customer_tier=3), "finance.customer_tier"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_attribute_is_refused_naming_its_field(finance: Finance, field: str) -> None:
    out: list[FieldViolation] = []
    check_finance(finance, "finance", out)
    assert [v.field for v in out] == [field]


def test_good_attributes_pass() -> None:
    out: list[FieldViolation] = []
    good = Finance(
        customer_tier="key",
        sales_channel="pos",
        tax_attribute="deemed_sale",
        gift=True,
        return_of="SO 2026/1",
        to_site="BJ01",
        to_company="acme-bj",
    )
    check_finance(good, "finance", out)
    assert out == []
