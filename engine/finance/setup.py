"""Which company's ledger a site books to, in which currency, and how each sku is costed.

Companies come from the org tree (DESIGN.md §1): a company is an org node flagged as a
legal entity, and a site books to its nearest legal-entity ancestor on its `org_path`
(`with_org`, fed by the engine from the tree and the site catalog it already keeps). The
ledgers file below gives each company its currency; its `sites`/`site_prefixes` are a
fallback only, for sites under no legal entity (or an engine without the org tree).

Data (TOML), checked at load like the mapping rules:

    default_company = "acme"
    default_method = "fifo"            # fifo (lot-valuated) | average

    [[company]]
    company = "acme"                   # a legal-entity org node
    currency = "CNY"
    sites = ["SH01", "SH02"]           # exact site ids ...
    site_prefixes = ["SH"]             # ... or prefixes

    [[category]]
    category = "furniture"
    sku_prefixes = ["CHAIR-", "TABLE-"]
    method = "average"
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.domain.catalog import Site
from engine.domain.errors import FieldViolation, InvalidArgument
from engine.domain.orgtree import OrgTree
from engine.finance.costing import Method

_CURRENCY = re.compile(r"[A-Z]{3}")
MAX_REMEMBERED_SKUS = 100_000  # skus whose category is remembered


@dataclass(frozen=True, slots=True)
class Company:
    company: str
    currency: str
    sites: tuple[str, ...] = ()
    site_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Category:
    category: str
    sku_prefixes: tuple[str, ...]
    method: Method


@dataclass(frozen=True, slots=True)
class LedgerSetup:
    companies: tuple[Company, ...]
    categories: tuple[Category, ...] = ()
    default_company: str = ""
    default_method: Method = Method.FIFO
    source: str = "<built-in>"
    # site → its nearest legal-entity org node (with_org); consulted before the file's lists
    org_sites: Mapping[str, str] = field(default_factory=dict, compare=False)
    _by_name: dict[str, Company] = field(default_factory=dict, compare=False, repr=False)
    # sku → (category, method), asked for every voucher: remembered (not copied by replace()).
    _categories: dict[str, tuple[str, Method]] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # looked up once per booked movement: a dict, not a scan of every company
        object.__setattr__(self, "_by_name", {c.company: c for c in reversed(self.companies)})

    def company_of(self, site: str) -> Company:
        """The site's legal entity in the org tree; else (the fallback) the file's exact
        site, then its longest prefix, then the default company."""
        from_tree = self.org_sites.get(site)
        if from_tree is not None:
            return self.company(from_tree)
        best: tuple[int, Company] | None = None
        for company in self.companies:
            if site in company.sites:
                return company
            for prefix in company.site_prefixes:
                if site.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), company)
        if best is not None:
            return best[1]
        return self.company(self.default_company)

    def company(self, name: str) -> Company:
        company = self._by_name.get(name)
        if company is not None:
            return company
        raise InvalidArgument([FieldViolation("company", f"no company {name!r} in {self.source}")])

    def category_of(self, sku: str) -> tuple[str, Method]:
        found = self._categories.get(sku)
        if found is None:
            if len(self._categories) >= MAX_REMEMBERED_SKUS:
                self._categories.clear()  # bounded: start over rather than grow
            found = self._categories[sku] = self._category_of(sku)
        return found

    def _category_of(self, sku: str) -> tuple[str, Method]:
        best: tuple[int, Category] | None = None
        for category in self.categories:
            for prefix in category.sku_prefixes:
                if sku.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), category)
        if best is None:
            return "", self.default_method
        return best[1].category, best[1].method


def legal_entity_of(tree: OrgTree, org_path: str) -> str:
    """The nearest legal-entity node on `org_path` (the node itself first, then up); ""
    when none is (or a segment is not in the tree)."""
    for node_id in reversed(org_path.split("/") if org_path else []):  # bounded: MAX_ORG_DEPTH
        node = tree.nodes.get(node_id)
        if node is not None and node.legal_entity:
            return node_id
    return ""


def with_org(setup: LedgerSetup, tree: OrgTree, sites: Iterable[Site]) -> LedgerSetup:
    """`setup` with the tree's companies: every legal-entity node becomes a company (in the
    file's currency for that name, else the default company's) and each site maps to its
    nearest legal entity. The file's companies stay, as the fallback."""
    currency = {c.company: c.currency for c in setup.companies}
    default_currency = currency.get(setup.default_company, "CNY")
    from_tree = tuple(
        Company(node.node_id, currency.get(node.node_id, default_currency))
        for node in sorted(tree.nodes.values(), key=lambda n: n.node_id)
        if node.legal_entity and node.node_id not in currency
    )
    org_sites = {site.site: company for site in sites if (company := legal_entity_of(tree, site.org_path))}
    return replace(setup, companies=setup.companies + from_tree, org_sites=org_sites)


def default_setup(currency: str = "CNY") -> LedgerSetup:
    """One company for every site ("default"), FIFO for every sku."""
    return LedgerSetup((Company("default", currency),), (), "default", Method.FIFO)


def _strings(value: Any, where: str, problems: list[FieldViolation]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(FieldViolation(where, "must be a list of non-empty strings"))
        return ()
    return tuple(value)


def _method(value: Any, where: str, problems: list[FieldViolation]) -> Method:
    try:
        return Method(value)
    except ValueError:
        problems.append(FieldViolation(where, f"method must be one of {[m.value for m in Method]}, not {value!r}"))
        return Method.FIFO


def parse_setup(doc: dict[str, Any], source: str) -> LedgerSetup:
    problems: list[FieldViolation] = []
    companies: list[Company] = []
    for i, raw in enumerate(doc.get("company", []) or [], 1):
        where = f"{source}: company[{i}]"
        name, currency = raw.get("company", ""), raw.get("currency", "")
        if not isinstance(name, str) or not name:
            problems.append(FieldViolation(f"{where}.company", "is required"))
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            problems.append(FieldViolation(f"{where}.currency", "must be an ISO 4217 code (three upper-case letters)"))
        sites = _strings(raw.get("sites", []), f"{where}.sites", problems)
        prefixes = _strings(raw.get("site_prefixes", []), f"{where}.site_prefixes", problems)
        companies.append(Company(str(name), str(currency), sites, prefixes))
    categories: list[Category] = []
    for i, raw in enumerate(doc.get("category", []) or [], 1):
        where = f"{source}: category[{i}]"
        prefixes = _strings(raw.get("sku_prefixes", []), f"{where}.sku_prefixes", problems)
        method = _method(raw.get("method", "fifo"), f"{where}.method", problems)
        categories.append(Category(str(raw.get("category", "")), prefixes, method))
    default_company = str(doc.get("default_company", companies[0].company if companies else ""))
    if not companies:
        problems.append(FieldViolation(f"{source}: company", "at least one [[company]] is required"))
    elif default_company not in {c.company for c in companies}:
        problems.append(FieldViolation(f"{source}: default_company", f"{default_company!r} is not a [[company]]"))
    default_method = _method(doc.get("default_method", "fifo"), f"{source}: default_method", problems)
    if problems:
        raise InvalidArgument(problems)
    return LedgerSetup(tuple(companies), tuple(categories), default_company, default_method, source)


def load_setup(path: Path) -> LedgerSetup:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidArgument([FieldViolation("ledgers", f"{path}: cannot read: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument([FieldViolation("ledgers", f"{path}: not TOML: {exc}")]) from None
    return parse_setup(doc, str(path))
