"""FinanceStore in memory: unit tests and `journal=memory` engines. Same contract as the
ClickHouse store (tests/contract/test_finance_store_contract.py)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from decimal import Decimal

from engine.finance.documents import DocumentRecord
from engine.finance.ledger import Valuation
from engine.finance.ports import (
    Baseline,
    Checkpoint,
    ExportBatch,
    LotValuation,
    ValuationQuery,
    VoucherPage,
    VoucherQuery,
    after_token,
    check_voucher_query,
    page_token_of,
    parse_page_token,
    wanted_states,
)
from engine.finance.state import merge_state
from engine.finance.vouchers import Voucher


def source_keys(voucher: Voucher) -> set[str]:
    """The keys `vouchers_by_source` finds a voucher by (shared with the ClickHouse store)."""
    keys: set[str] = {voucher.voucher_id}
    if voucher.reversal_of:
        keys.add(voucher.reversal_of)
    for s in voucher.sources:
        keys.add(s.event_id)
        if s.doc_ref:
            keys.add(s.doc_ref.partition("?")[0])
        if s.sku:
            keys.add(f"{s.sku}/{s.site}/{s.seq}")
    keys.discard("")
    return keys


class InMemoryFinanceDocuments:
    """The documents log in memory (unit tests, `journal=memory` engines): the same contract
    as the JetStream log (tests/contract/test_finance_documents_contract.py)."""

    def __init__(self) -> None:
        self._records: list[DocumentRecord] = []
        self._ids: set[str] = set()

    async def append(self, record: DocumentRecord) -> None:
        if record.record_id not in self._ids:
            self._ids.add(record.record_id)
            self._records.append(record)

    async def read(self, start: int, limit: int) -> list[DocumentRecord]:
        return self._records[start : start + limit]


class InMemoryFinanceStore:
    def __init__(self) -> None:
        self._checkpoint: Checkpoint | None = None
        self._vouchers: dict[str, Voucher] = {}
        self._valuations: dict[tuple[str, str, str, str], Valuation] = {}  # (event, company, sku, lot)
        self._baselines: dict[tuple[str, str], Baseline] = {}
        self._batches: dict[str, ExportBatch] = {}
        self.commits = 0

    async def load_checkpoint(self) -> Checkpoint | None:
        return copy.deepcopy(self._checkpoint)

    async def commit(
        self,
        checkpoint: Checkpoint,
        vouchers: Sequence[Voucher],
        valuations: Sequence[Valuation],
        baselines: Sequence[Baseline] = (),
    ) -> None:
        for b in baselines:
            self._baselines[(b.doc_key, b.baseline)] = b
        for v in vouchers:
            self._vouchers.setdefault(v.voucher_id, v)  # a stored one keeps its newer state
        for row in valuations:
            self._valuations[(row.event_id, row.company, row.sku, row.lot_id)] = row
        state = merge_state(self._checkpoint.state if self._checkpoint else None, copy.deepcopy(checkpoint.state))
        self._checkpoint = Checkpoint(checkpoint.position, state, checkpoint.documents)
        self.commits += 1

    async def put_voucher(self, voucher: Voucher) -> None:
        known = self._vouchers.get(voucher.voucher_id)
        if known is None or known.version <= voucher.version:
            self._vouchers[voucher.voucher_id] = voucher

    async def get_voucher(self, voucher_id: str) -> Voucher | None:
        return self._vouchers.get(voucher_id)

    async def list_vouchers(self, q: VoucherQuery) -> VoucherPage:
        check_voucher_query(q)
        token = parse_page_token(q.page_token) if q.page_token else None
        states = wanted_states(q)
        found = sorted(
            (
                v
                for v in self._vouchers.values()
                if (not states or v.state in states)
                and (not q.company or v.company == q.company)
                and v.at_ms >= q.from_ms
                and (not q.to_ms or v.at_ms < q.to_ms)
                and after_token(v, token)
            ),
            key=lambda v: (v.at_ms, v.voucher_id),
        )
        page = tuple(found[: q.page_size])
        more = len(found) > q.page_size
        return VoucherPage(page, page_token_of(page[-1]) if more else "")

    async def vouchers_by_source(self, key: str) -> list[Voucher]:
        return sorted(
            (v for v in self._vouchers.values() if key in source_keys(v)), key=lambda v: (v.at_ms, v.voucher_id)
        )

    async def valuation(self, q: ValuationQuery) -> list[LotValuation]:
        totals: dict[tuple[str, str, str], tuple[int, Decimal]] = {}
        for row in self._valuations.values():
            if (q.company and row.company != q.company) or (q.sku and row.sku != q.sku):
                continue
            if (q.lot_id and row.lot_id != q.lot_id) or (q.as_of_ms and row.at_ms > q.as_of_ms):
                continue
            key = (row.company, row.sku, row.lot_id)
            qty, value = totals.get(key, (0, Decimal(0)))
            totals[key] = (qty + row.qty, value + row.value)
        return [
            LotValuation(c, s, lot, qty, value) for (c, s, lot), (qty, value) in sorted(totals.items()) if qty or value
        ]

    async def put_baseline(self, baseline: Baseline) -> None:
        self._baselines[(baseline.doc_key, baseline.baseline)] = baseline

    async def baselines(self, doc_key: str) -> list[Baseline]:
        return sorted((b for (doc, _), b in self._baselines.items() if doc == doc_key), key=lambda b: b.baseline)

    async def get_export_batch(self, batch_id: str) -> ExportBatch | None:
        return self._batches.get(batch_id)

    async def put_export_batch(self, batch: ExportBatch) -> None:
        self._batches.setdefault(batch.batch_id, batch)

    async def exported_voucher_ids(self) -> set[str]:
        return {vid for batch in self._batches.values() for vid in batch.voucher_ids}

    async def close(self) -> None:
        return None
