"""The finance follower's sink: journal → business events → costing → vouchers, off the
order path (adapters.nats.follower.JournalFollower feeds it; DESIGN.md §9, §14).

Exactly once per journal position: the ledgers' state is checkpointed with the position
it reflects in the same commit as the batch's vouchers, so a redelivered entry at or
below it is skipped; a failed commit drops the in-memory state, which is reloaded from
the last checkpoint before the retry. Voucher ids derive from event ids, so a replay of
the journal from the start produces the very same vouchers.

Finance documents that do not come from the journal (supplier invoices, landed costs,
payment-plan baselines) are logged durably with the journal position reached (engine.finance.documents) and
applied from that log, each before the first journal entry past its position: the
checkpoint counts the records applied, so a rebuild meets them at the same place.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from engine.domain.errors import DomainError, FailedPrecondition
from engine.domain.ports import FollowedEntry
from engine.finance.documents import MAX_DOCUMENTS, DocumentRecord, FinanceDocument, PaymentBaseline, book
from engine.finance.events import ledger_events
from engine.finance.ledger import Ledger, Valuation
from engine.finance.mapping import Rules
from engine.finance.ports import Baseline, Checkpoint, FinanceDocuments, FinanceStore
from engine.finance.setup import LedgerSetup
from engine.finance.state import ledger_delta, load_ledger
from engine.finance.vouchers import Voucher

log = structlog.get_logger("lotwise.finance")

SINK_NAME = "finance"
CONSUMER = "lotwise-finance"
DEAD_LETTER_TAG = "finance"
REASON_NO_DOCUMENTS_LOG = "NO_DOCUMENTS_LOG"


@dataclass(slots=True)
class Booked:
    """What one batch (or one document) made, stored in one commit."""

    vouchers: list[Voucher] = field(default_factory=list)
    valuations: list[Valuation] = field(default_factory=list)
    baselines: list[Baseline] = field(default_factory=list)


def _baseline(document: PaymentBaseline) -> Baseline:
    return Baseline(document.doc_key, document.baseline, document.at_ms)


@dataclass(slots=True)
class FeedCounters:
    entries: int = 0
    events: int = 0
    vouchers: int = 0
    skipped: int = 0  # redelivered entries already applied
    last_voucher_at_s: float = 0.0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Booking a batch allocates ~40 short-lived containers per movement, and storing it as
    many again (rows, documents); the cyclic collector would run dozens of times per batch
    and, with up to a million sale records and the open layers alive, its older generations
    cost ~15–25 % of the follower's CPU (bench/README.md, "Finance"). It is paused from the
    start of the batch until its commit returned, then resumed: collection happens once,
    after. The pause is process-wide but bounded by one batch (≤ 1,000 journal messages)
    and the store's timeout; only cycles wait meanwhile (reference counting frees the rest).
    A collector paused by someone else stays paused."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class FinanceFeed:
    """FollowerSink of the finance follower; also the one writer of the ledgers."""

    def __init__(
        self, store: FinanceStore, setup: LedgerSetup, rules: Rules, documents: FinanceDocuments | None = None
    ) -> None:
        self.store = store
        self.setup = setup
        self.rules = rules
        # None: the journal alone (finance documents are refused: they would not survive a restart)
        self.documents = documents
        self.ledger = Ledger(setup, rules)
        self.position = 0
        self.documents_applied = 0  # records of the documents log the ledgers include
        self._pending: deque[DocumentRecord] = deque()  # logged, not yet applied (in log order)
        self.logged_ids: set[str] = set()  # every record id in the log
        self._loaded = False
        self.lock = asyncio.Lock()
        self.counters = FeedCounters()
        self.on_vouchers: Callable[[tuple[Voucher, ...]], Awaitable[None]] | None = None

    @property
    def name(self) -> str:
        return SINK_NAME

    async def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        ledger = Ledger(self.setup, self.rules)
        checkpoint = await self.store.load_checkpoint()
        if checkpoint is not None:
            load_ledger(ledger, checkpoint.state)
        self.ledger = ledger
        self.position = checkpoint.position if checkpoint else 0
        self.documents_applied = checkpoint.documents if checkpoint else 0
        records = await self.documents.read(0, MAX_DOCUMENTS) if self.documents is not None else []
        self.logged_ids = {r.record_id for r in records}
        self._pending = deque(records[self.documents_applied :])
        self._loaded = True
        log.info("finance ledgers loaded", position=self.position, positions=len(ledger.positions))

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        async with self.lock:
            await self._ensure_loaded()
            last, documents = self.position, self.documents_applied
            try:
                with _collector_paused():
                    booked = Booked()
                    last = self._book(entries, last, booked)
                    if last == self.position and self.documents_applied == documents:
                        return
                    await self._commit(last, booked)
                    # What the batch made is stored: freed now, before the collector resumes,
                    # so its first pass walks the ledgers' survivors, not every voucher.
                    made = tuple(booked.vouchers) if self.on_vouchers is not None else ()
                    made_count = len(booked.vouchers)
                    del booked
            except BaseException:
                self._loaded = False  # the ledgers may be ahead of the store: reload before the retry
                raise
            self.position = last
            self.counters.vouchers += made_count
            if made_count:
                self.counters.last_voucher_at_s = time.time()
        if made and self.on_vouchers is not None:
            await self.on_vouchers(made)

    async def _commit(self, position: int, booked: Booked) -> None:
        checkpoint = self._checkpoint(position)
        await self.store.commit(checkpoint, booked.vouchers, booked.valuations, booked.baselines)

    def _book(self, entries: tuple[FollowedEntry, ...], last: int, booked: Booked) -> int:
        """The batch's entries through the ledgers, in journal order; returns the last position."""
        vouchers, valuations = booked.vouchers, booked.valuations
        for followed in entries:
            if followed.position <= last:
                self.counters.skipped += 1
                continue
            self._apply_documents(followed.position - 1, booked)
            # Only the movements the ledgers value, derived lean (engine.finance.events): the
            # same vouchers as booking every business event, at a fraction of the CPU.
            for event in ledger_events(followed.entry):
                effects = self.ledger.apply(event)
                vouchers.extend(effects.vouchers)
                valuations.extend(effects.valuations)
            self.counters.events += len(followed.entry.movements)  # one business event each
            last = followed.position
            self.counters.entries += 1
        self._apply_documents(last, booked)
        return last

    def _checkpoint(self, position: int) -> Checkpoint:
        return Checkpoint(position, ledger_delta(self.ledger), self.documents_applied)

    def _apply_documents(self, upto: int, booked: Booked) -> None:
        """The logged documents due once the journal is applied up to `upto`, in log order.
        One the ledgers cannot book any more (a rebuild under other rules) is counted and
        logged, never retried forever: the journal must go on."""
        while self._pending and self._pending[0].after_position <= upto:  # bounded: the log
            record = self._pending.popleft()
            self._apply_document(record.document, booked, record.record_id)
            self.documents_applied += 1

    def _apply_document(self, document: FinanceDocument, booked: Booked, record_id: str) -> None:
        if isinstance(document, PaymentBaseline):
            booked.baselines.append(_baseline(document))
            return
        try:
            made, rows = book(self.ledger, document)
        except DomainError as exc:
            log.warning("finance document not booked on replay", id=record_id, error=str(exc))
            made, rows = [], []
        booked.vouchers.extend(made)
        booked.valuations.extend(rows)

    async def run_document(self, document: FinanceDocument) -> tuple[Voucher, ...]:
        """Book a finance document: onto the ledgers (a refusal raises and changes nothing),
        into the documents log (durably, stamped with the journal position reached), then
        its vouchers (or baseline) with the checkpoint. A document whose id is logged already
        books nothing again (its vouchers are stored or will be: () is returned)."""
        if self.documents is None:
            raise FailedPrecondition(REASON_NO_DOCUMENTS_LOG, "this engine keeps no finance documents log")
        async with self.lock:
            await self._ensure_loaded()
            booked = Booked()
            made: list[Voucher] = []
            try:
                self._apply_documents(self.position, booked)  # logged before a crash
                new = document.record_id not in self.logged_ids
                if new:
                    made, rows = book(self.ledger, document)  # a refusal: nothing logged
                    await self.documents.append(DocumentRecord(document, self.position))
                    self.logged_ids.add(document.record_id)
                    self.documents_applied += 1
                    if isinstance(document, PaymentBaseline):
                        booked.baselines.append(_baseline(document))
                    booked.vouchers.extend(made)
                    booked.valuations.extend(rows)
                await self._commit(self.position, booked)
            except BaseException:
                self._loaded = False  # reloaded before the next use: a logged record is then pending
                raise
            return tuple(made) if new else ()

    async def use_setup(self, setup: LedgerSetup) -> None:
        """Book from the next batch on with `setup` (the companies the org tree gives now);
        a batch in progress finishes with the one it started with."""
        async with self.lock:
            self.setup = setup
            self.ledger.setup = setup

    async def open_grni(self, company: str, receipt_doc: str) -> Decimal:
        async with self.lock:
            await self._ensure_loaded()
            return self.ledger.open_grni(company, receipt_doc)
