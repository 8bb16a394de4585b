"""Journal entries and business events for the finance tests: a receipt, a sale, a return,
a transfer leg, as the engine journals them (movements + the ops that carry finance)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from engine.domain.commands import Consume, Receive
from engine.domain.events import BusinessEvent, business_events
from engine.domain.model import External, Finance, Movement, MovementKind, QuantKey
from engine.domain.ports import FollowedEntry, JournalEntry
from engine.finance.costing import Method
from engine.finance.setup import Category, Company, LedgerSetup

T0_MS = 1_795_000_000_000  # 2026-11-18
DAY_MS = 86_400_000

SETUP = LedgerSetup(
    companies=(
        Company("acme", "CNY", sites=("SH01", "SH02")),
        Company("acme-bj", "CNY", site_prefixes=("BJ",)),
        Company("yen", "JPY", site_prefixes=("TK",)),
    ),
    categories=(
        Category("furniture", ("CHAIR-", "TABLE-"), Method.FIFO),
        Category("fasteners", ("SCREW-",), Method.AVERAGE),
    ),
    default_company="acme",
)


def fin(cost: str = "", price: str = "", rate: str = "", terms: str = "", currency: str = "CNY") -> Finance:
    return Finance(currency=currency, unit_cost=cost, unit_price=price, tax_rate=rate, terms=terms)


@dataclass
class Journal:
    """Builds journal entries one movement at a time, positions and seqs gap-free."""

    shard: str = "s0"
    at_ms: int = T0_MS
    entries: list[FollowedEntry] = field(default_factory=list)
    _seq: dict[tuple[str, str], itertools.count[int]] = field(default_factory=dict)

    def _next(self, sku: str, site: str) -> int:
        return next(self._seq.setdefault((sku, site), itertools.count(1)))

    def _add(self, m: Movement, op: object) -> FollowedEntry:
        n = len(self.entries) + 1
        entry = JournalEntry(self.shard, n, self.at_ms, (op,), (m,))  # type: ignore[arg-type]
        followed = FollowedEntry(n, entry)
        self.entries.append(followed)
        self.at_ms += 60_000
        return followed

    def receive(
        self,
        sku: str,
        site: str,
        lot: str,
        qty: int,
        finance: Finance | None = None,
        doc: str = "",
        source: External = External.SUPPLIER,
    ) -> FollowedEntry:
        rid = f"r{len(self.entries) + 1}"
        key = QuantKey(lot, "", "available", "own")
        m = Movement(
            self._next(sku, site),
            MovementKind.RECEIVE,
            sku,
            site,
            lot,
            qty,
            source,
            key,
            request_id=rid,
            doc_ref=doc,
            at_ms=self.at_ms,
        )
        op = Receive(rid, sku, site, lot, qty, status="available", doc_ref=doc, finance=finance, source=source)
        return self._add(m, op)

    def issue(
        self,
        sku: str,
        site: str,
        lot: str,
        qty: int,
        finance: Finance | None = None,
        doc: str = "",
        dest: External = External.CUSTOMER,
    ) -> FollowedEntry:
        rid = f"c{len(self.entries) + 1}"
        key = QuantKey(lot, "", "available", "own")
        m = Movement(
            self._next(sku, site),
            MovementKind.CONSUME,
            sku,
            site,
            lot,
            qty,
            key,
            dest,
            request_id=rid,
            doc_ref=doc,
            at_ms=self.at_ms,
        )
        op = Consume(rid, sku, site, qty, lot_id=lot, doc_ref=doc, finance=finance, destination=dest)
        return self._add(m, op)

    def events(self) -> list[BusinessEvent]:
        return [e for f in self.entries for e in business_events(f.entry, f.position)]
