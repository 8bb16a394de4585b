"""The finance room's ports: where ledgers, vouchers and export batches are stored
(adapters/clickhouse/finance.py on ClickHouse or chDB, adapters/memory/finance.py in
memory; one contract test suite for both: tests/contract/test_finance_store_contract.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from engine.domain.errors import FieldViolation, InvalidArgument
from engine.finance.documents import DocumentRecord
from engine.finance.ledger import Valuation
from engine.finance.vouchers import Voucher, VoucherState

MAX_PAGE_SIZE = 1_000


@dataclass(frozen=True, slots=True)
class Checkpoint:
    position: int  # the journal position the state reflects (every entry up to it applied)
    # To commit: what changed (engine.finance.state.ledger_delta); loaded: the whole state,
    # every delta merged (state.merge_state).
    state: dict[str, Any]
    documents: int = 0  # records of the documents log applied (engine.finance.documents)


@dataclass(frozen=True, slots=True)
class VoucherQuery:
    state: str = ""  # "" = any
    company: str = ""
    from_ms: int = 0  # at_ms ≥ from_ms
    to_ms: int = 0  # at_ms < to_ms (0: no bound)
    page_size: int = 100
    page_token: str = ""  # "<at_ms>:<voucher_id>" of the last voucher of the previous page
    states: tuple[str, ...] = ()  # any of these (and `state`); both empty: any


def wanted_states(q: VoucherQuery) -> frozenset[str]:
    """The states a voucher may be in to be listed; empty: any."""
    return frozenset(q.states) | ({q.state} if q.state else frozenset())


@dataclass(frozen=True, slots=True)
class VoucherPage:
    vouchers: tuple[Voucher, ...]
    next_page_token: str  # "" = no more


@dataclass(frozen=True, slots=True)
class LotValuation:
    company: str
    sku: str
    lot_id: str
    qty: int
    value: Decimal


@dataclass(frozen=True, slots=True)
class ValuationQuery:
    company: str = ""
    sku: str = ""
    lot_id: str = ""
    as_of_ms: int = 0  # 0: now


@dataclass(frozen=True, slots=True)
class Baseline:
    """An event that starts a payment plan's clock: "acceptance" of document SO-1 at a time."""

    doc_key: str
    baseline: str  # invoice | delivery | acceptance | statement
    at_ms: int


@dataclass(frozen=True, slots=True)
class ExportBatch:
    batch_id: str
    profile: str
    voucher_ids: tuple[str, ...]
    created_at_ms: int
    content: bytes  # the file, exactly as first rendered (a repeat of the batch returns it)
    file_name: str


MAX_STATES = 16  # a bound on the request; five distinct states exist


def check_voucher_query(q: VoucherQuery) -> None:
    out: list[FieldViolation] = []
    if q.state and q.state not in VoucherState.ALL:
        out.append(FieldViolation("state", f"must be one of {', '.join(VoucherState.ALL)}"))
    if len(q.states) > MAX_STATES or not set(q.states) <= set(VoucherState.ALL):
        out.append(FieldViolation("states", f"must be at most {MAX_STATES} of {', '.join(VoucherState.ALL)}"))
    if not 0 < q.page_size <= MAX_PAGE_SIZE:
        out.append(FieldViolation("page_size", f"must be in 1..{MAX_PAGE_SIZE}"))
    if q.from_ms < 0 or q.to_ms < 0 or (q.to_ms and q.to_ms <= q.from_ms):
        out.append(FieldViolation("to", "must be after from (times are epoch ms ≥ 0)"))
    if q.page_token and parse_page_token(q.page_token) is None:
        out.append(FieldViolation("page_token", "is not a token this service gave out"))
    if out:
        raise InvalidArgument(out)


def parse_page_token(token: str) -> tuple[int, str] | None:
    at, sep, vid = token.partition(":")
    if not sep or not at.isdigit() or not vid:
        return None
    return int(at), vid


def page_token_of(voucher: Voucher) -> str:
    return f"{voucher.at_ms}:{voucher.voucher_id}"


def after_token(voucher: Voucher, token: tuple[int, str] | None) -> bool:
    return token is None or (voucher.at_ms, voucher.voucher_id) > token


class FinanceDocuments(Protocol):
    """The durable log of finance documents (supplier invoices, landed costs), in the order
    they were booked (engine.finance.documents; JetStream in the engine, memory in tests)."""

    async def append(self, record: DocumentRecord) -> None:
        """Durably, after the records read so far; a record whose id is in the log already
        is not added again."""

    async def read(self, start: int, limit: int) -> list[DocumentRecord]:
        """Up to `limit` records from index `start` (0-based), in log order."""


class FinanceStore(Protocol):
    """Vouchers (newest version of each wins), their lines, valuation history, the
    follower's checkpoint, baselines of payment plans and export batches."""

    async def load_checkpoint(self) -> Checkpoint | None: ...

    async def commit(
        self,
        checkpoint: Checkpoint,
        vouchers: Sequence[Voucher],
        valuations: Sequence[Valuation],
        baselines: Sequence[Baseline] = (),
    ) -> None:
        """Store new vouchers (one already stored keeps its newer state: a redelivered batch
        changes nothing), valuation rows and payment baselines (in order: a later one of the
        same document and baseline wins), then the checkpoint: its state is a delta, merged
        into what is stored (state.merge_state)."""

    async def put_voucher(self, voucher: Voucher) -> None:
        """A voucher's next version (state or notes changed); the store keeps the newest."""

    async def get_voucher(self, voucher_id: str) -> Voucher | None: ...

    async def list_vouchers(self, q: VoucherQuery) -> VoucherPage: ...

    async def vouchers_by_source(self, key: str) -> list[Voucher]:
        """Vouchers whose sources name `key` as an event id, a document (its key before "?"),
        or a movement "<sku>/<site>/<seq>"; and reversals naming `key` as their original."""

    async def valuation(self, q: ValuationQuery) -> list[LotValuation]: ...

    async def put_baseline(self, baseline: Baseline) -> None: ...

    async def baselines(self, doc_key: str) -> list[Baseline]: ...

    async def get_export_batch(self, batch_id: str) -> ExportBatch | None: ...

    async def put_export_batch(self, batch: ExportBatch) -> None: ...

    async def exported_voucher_ids(self) -> set[str]: ...

    async def close(self) -> None: ...
