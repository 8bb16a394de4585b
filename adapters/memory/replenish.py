"""The in-memory replenishment store (engine.replenish.store.ReplenishStore): unit tests
and `journal=memory` engines. Values go through their JSON records, as in a real store,
so a caller can never alias what is stored."""

from __future__ import annotations

import json
from typing import Any

from engine.replenish.store import (
    Decision,
    Factor,
    StaleWrite,
    Suggestion,
    SuggestionEntry,
    SuggestionStamp,
    SupplierTerms,
    decision_from_record,
    entries_after,
    factor_from_record,
    pair_key,
    suggestion_from_record,
    supplier_from_record,
    to_record,
)


def _dump(value: Suggestion | SupplierTerms | Factor | Decision) -> bytes:
    return json.dumps(to_record(value), sort_keys=True).encode()


def _load(data: bytes) -> Any:
    return json.loads(data)


class InMemoryReplenishStore:
    def __init__(self) -> None:
        self._suggestions: dict[str, bytes] = {}
        self._suppliers: dict[str, bytes] = {}
        self._factors: dict[str, bytes] = {}
        self._decisions: dict[tuple[str, int], bytes] = {}
        self._stamps: dict[str, SuggestionStamp] = {}  # as a stream-fed index would know them

    async def get_suggestion(self, sku: str, site: str) -> Suggestion | None:
        data = self._suggestions.get(pair_key(sku, site))
        return None if data is None else suggestion_from_record(_load(data))

    async def put_suggestion(self, suggestion: Suggestion, expected_version: int) -> None:
        key = suggestion.key
        current = self._suggestions.get(key)
        version = 0 if current is None else int(_load(current)["version"])
        if version != expected_version:
            raise StaleWrite(key, expected_version)
        self._suggestions[key] = _dump(suggestion)
        self._stamps[key] = SuggestionStamp.of(suggestion)

    def suggestion_stamp(self, sku: str, site: str) -> SuggestionStamp | None:
        return self._stamps.get(pair_key(sku, site))

    def suggestion_absent(self, sku: str, site: str) -> bool:
        return pair_key(sku, site) not in self._suggestions

    async def list_suggestions(self, site: str = "", sku: str = "") -> list[Suggestion]:
        found = [suggestion_from_record(_load(d)) for _, d in sorted(self._suggestions.items())]
        return [s for s in found if (not site or s.site == site) and (not sku or s.sku == sku)]

    async def suggestion_keys(self) -> list[str]:
        return sorted(self._suggestions)

    async def suggestion_entries(self, after: str = "", limit: int = 256, site: str = "") -> list[SuggestionEntry]:
        def entry(key: str) -> SuggestionEntry:
            record = _load(self._suggestions[key])
            return SuggestionEntry(key, record["state"], record["flagged"])

        return entries_after(sorted(self._suggestions), after, limit, site, entry)

    async def supplier_keys(self) -> list[str]:
        return sorted(self._suppliers)

    async def put_supplier(self, terms: SupplierTerms) -> None:
        self._suppliers[pair_key(terms.sku, terms.site)] = _dump(terms)

    async def get_supplier(self, sku: str, site: str) -> SupplierTerms | None:
        data = self._suppliers.get(pair_key(sku, site))
        return None if data is None else supplier_from_record(_load(data))

    async def list_suppliers(self) -> list[SupplierTerms]:
        return [supplier_from_record(_load(d)) for _, d in sorted(self._suppliers.items())]

    async def put_factors(self, factors: list[Factor]) -> None:
        for f in factors:
            self._factors[f.factor_id] = _dump(f)

    async def list_factors(self) -> list[Factor]:
        return [factor_from_record(_load(d)) for _, d in sorted(self._factors.items())]

    async def add_decision(self, decision: Decision) -> None:
        key = (pair_key(decision.sku, decision.site), decision.version)
        self._decisions.setdefault(key, _dump(decision))

    async def list_decisions(self) -> list[Decision]:
        return [decision_from_record(_load(d)) for _, d in sorted(self._decisions.items())]

    async def close(self) -> None:
        return None
