"""Companies from the org tree (issue 16): a company is a legal-entity org node, a site
books to its nearest legal-entity ancestor, the ledgers file is the fallback, and a transfer
between sites of two legal entities is inter-company."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal as D

from adapters.memory.finance import InMemoryFinanceStore
from engine.bootstrap.finance import refresh_companies
from engine.domain.catalog import Site
from engine.domain.model import External
from engine.domain.orgtree import OrgNode, OrgTree
from engine.finance.costing import Method
from engine.finance.follower import FinanceFeed
from engine.finance.ledger import Ledger
from engine.finance.mapping import default_rules
from engine.finance.setup import Category, Company, LedgerSetup, legal_entity_of, with_org
from tests.finance_fixtures import Journal, fin

# The file: one company with a currency and a prefix fallback; the tree has two more.
FILE = LedgerSetup((Company("group", "CNY", site_prefixes=("X",)), Company("tokyo-kk", "JPY")), (), "group")
TREE = OrgTree(
    {
        n.node_id: n
        for n in (
            OrgNode("group"),  # the group itself is not a legal entity here
            OrgNode("east-co", "group", "East Trading Co.", legal_entity=True),
            OrgNode("shanghai", "east-co"),
            OrgNode("west-co", "group", "West Furniture Ltd.", legal_entity=True),
            OrgNode("chengdu", "west-co"),
            OrgNode("tokyo-kk", "group", legal_entity=True),
            OrgNode("plant", "west-co", legal_entity=True),  # a legal entity under a legal entity
        )
    }
)
SITES = [
    Site("SH01", "group/east-co/shanghai"),
    Site("CD01", "group/west-co/chengdu"),
    Site("TK01", "group/tokyo-kk"),
    Site("PL01", "group/west-co/plant"),
    Site("X9", "group"),  # under no legal entity: the file's prefix decides
]


def test_the_nearest_legal_entity_ancestor_is_the_company() -> None:
    assert legal_entity_of(TREE, "group/east-co/shanghai") == "east-co"
    assert legal_entity_of(TREE, "group/west-co/plant") == "plant"  # itself first
    assert legal_entity_of(TREE, "group") == ""
    assert legal_entity_of(TREE, "") == ""
    assert legal_entity_of(TREE, "unknown/east-co") == "east-co"


def test_sites_book_to_the_trees_companies_and_the_file_is_the_fallback() -> None:
    setup = with_org(FILE, TREE, SITES)
    assert setup.company_of("SH01") == Company("east-co", "CNY")  # the default company's currency
    assert setup.company_of("CD01").company == "west-co"
    assert setup.company_of("PL01").company == "plant"
    assert setup.company_of("TK01") == Company("tokyo-kk", "JPY")  # currency from the file
    assert setup.company_of("X9").company == "group"  # fallback: the file's prefix
    assert setup.company_of("ZZ").company == "group"  # fallback: the default company
    assert {c.company for c in setup.companies} == {"group", "tokyo-kk", "east-co", "west-co", "plant"}


def test_a_transfer_between_two_legal_entities_of_the_tree_is_inter_company() -> None:
    setup = with_org(FILE, TREE, SITES)
    j = Journal()
    j.receive("TABLE-1", "SH01", "L1", 10, fin("40"))
    j.issue("TABLE-1", "SH01", "L1", 3, None, doc="TR-1?to=CD01", dest=External.TRANSIT)
    j.receive("TABLE-1", "CD01", "L1", 3, None, doc="TR-1", source=External.TRANSIT)
    ledger = Ledger(setup, default_rules())
    vouchers = [v for e in j.events() for v in ledger.apply(e).vouchers]
    out, arrived = vouchers[1], vouchers[2]
    assert (out.company, [ln.role for ln in out.lines]) == ("east-co", ["intercompany_receivable", "inventory"])
    assert (arrived.company, [ln.role for ln in arrived.lines]) == ("west-co", ["inventory", "intercompany_payable"])
    assert ledger.positions[("west-co", "TABLE-1")].value == D("120.00")


def test_a_transfer_inside_one_legal_entity_is_not_inter_company() -> None:
    tree = OrgTree({**TREE.nodes, "pudong": OrgNode("pudong", "east-co")})
    setup = with_org(FILE, tree, [*SITES, Site("SH02", "group/east-co/pudong")])
    j = Journal()
    j.receive("TABLE-1", "SH01", "L1", 10, fin("40"))
    j.issue("TABLE-1", "SH01", "L1", 3, None, doc="TR-1?to=SH02", dest=External.TRANSIT)
    ledger = Ledger(setup, default_rules())
    vouchers = [v for e in j.events() for v in ledger.apply(e).vouchers]
    assert [ln.role for ln in vouchers[1].lines] == ["transit", "inventory"]


class _Org:
    def __init__(self, tree: OrgTree, sites: list[Site]) -> None:
        self._tree, self._sites = tree, sites

    async def tree(self) -> OrgTree:
        return self._tree

    async def list_sites(self, org_prefix: str = "") -> list[Site]:
        return self._sites


def test_the_feed_books_with_the_companies_the_tree_gives_now() -> None:
    async def go() -> None:
        feed = FinanceFeed(InMemoryFinanceStore(), FILE, default_rules())
        org = _Org(TREE, SITES)
        assert await refresh_companies(feed, FILE, org, org) == 4
        assert feed.setup.company_of("SH01").company == "east-co"
        assert feed.ledger.setup is feed.setup
        # the site moves under another legal entity: the next refresh books it there
        org._sites = [Site("SH01", "group/west-co/chengdu")]
        await refresh_companies(feed, FILE, org, org)
        assert feed.setup.company_of("SH01").company == "west-co"

    asyncio.run(go())


def test_a_setup_with_other_categories_costs_by_them_not_by_what_the_first_remembered() -> None:
    first = LedgerSetup((Company("group", "CNY"),), (Category("bulk", ("AVG-",), Method.AVERAGE),), "group")
    assert first.category_of("AVG-1") == ("bulk", Method.AVERAGE)
    assert first.category_of("AVG-1") == ("bulk", Method.AVERAGE)  # remembered: the same answer
    other = replace(first, categories=(Category("loose", ("AVG-",), Method.FIFO),))
    assert other.category_of("AVG-1") == ("loose", Method.FIFO)
    assert first.category_of("AVG-1") == ("bulk", Method.AVERAGE)
