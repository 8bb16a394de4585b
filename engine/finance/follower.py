"""The finance follower's sink: journal → business events → costing → vouchers, off the
order path (adapters.nats.follower.JournalFollower feeds it; DESIGN.md §9, §14).

Exactly once per journal position: the ledgers' state is checkpointed with the position
it reflects in the same commit as the batch's vouchers, so a redelivered entry at or
below it is skipped; a failed commit drops the in-memory state, which is reloaded from
the last checkpoint before the retry. Voucher ids derive from event ids, so a replay of
the journal from the start produces the very same vouchers.

Finance documents that do not come from the journal (supplier invoices, landed costs)
are applied under the same lock and checkpointed at the same position.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import structlog

from engine.domain.events import business_events
from engine.domain.ports import FollowedEntry
from engine.finance.ledger import Ledger, Valuation
from engine.finance.mapping import Rules
from engine.finance.ports import Checkpoint, FinanceStore
from engine.finance.setup import LedgerSetup
from engine.finance.state import ledger_delta, load_ledger
from engine.finance.vouchers import Voucher

log = structlog.get_logger("lotwise.finance")

SINK_NAME = "finance"
CONSUMER = "lotwise-finance"
DEAD_LETTER_TAG = "finance"


@dataclass(slots=True)
class FeedCounters:
    entries: int = 0
    events: int = 0
    vouchers: int = 0
    skipped: int = 0  # redelivered entries already applied
    last_voucher_at_s: float = 0.0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Booking a batch is one synchronous stretch (no await: nothing else of this thread runs
    meanwhile) that allocates ~40 short-lived containers per movement; the cyclic collector
    would run dozens of times per batch and, with a million sale records and the open layers
    alive, its older generations cost a quarter of the follower's CPU (bench/README.md,
    "Finance"). Paused for the stretch, bounded by the batch bound, and resumed after it:
    collection happens then, once. A collector paused by someone else stays paused."""
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

    def __init__(self, store: FinanceStore, setup: LedgerSetup, rules: Rules) -> None:
        self.store = store
        self.setup = setup
        self.rules = rules
        self.ledger = Ledger(setup, rules)
        self.position = 0
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
        self._loaded = True
        log.info("finance ledgers loaded", position=self.position, positions=len(ledger.positions))

    async def apply(self, entries: tuple[FollowedEntry, ...]) -> None:
        async with self.lock:
            await self._ensure_loaded()
            vouchers: list[Voucher] = []
            valuations: list[Valuation] = []
            last = self.position
            try:
                with _collector_paused():
                    last = self._book(entries, last, vouchers, valuations)
                if last == self.position:
                    return
                await self.store.commit(Checkpoint(last, ledger_delta(self.ledger)), vouchers, valuations)
            except BaseException:
                self._loaded = False  # the ledgers may be ahead of the store: reload before the retry
                raise
            self.position = last
            self.counters.vouchers += len(vouchers)
            if vouchers:
                self.counters.last_voucher_at_s = time.time()
        if vouchers and self.on_vouchers is not None:
            await self.on_vouchers(tuple(vouchers))

    def _book(
        self, entries: tuple[FollowedEntry, ...], last: int, vouchers: list[Voucher], valuations: list[Valuation]
    ) -> int:
        """The batch's entries through the ledgers, in journal order; returns the last position."""
        for followed in entries:
            if followed.position <= last:
                self.counters.skipped += 1
                continue
            for event in business_events(followed.entry, followed.position):
                effects = self.ledger.apply(event)
                vouchers.extend(effects.vouchers)
                valuations.extend(effects.valuations)
                self.counters.events += 1
            last = followed.position
            self.counters.entries += 1
        return last

    async def run_document(
        self, build: Callable[[Ledger], tuple[list[Voucher], list[Valuation]]]
    ) -> tuple[Voucher, ...]:
        """Apply a finance document (invoice, landed cost) to the ledgers and store its
        vouchers with a checkpoint at the current position. `build` raises to refuse
        (nothing changes: the ledgers are reloaded)."""
        async with self.lock:
            await self._ensure_loaded()
            try:
                vouchers, valuations = build(self.ledger)
                await self.store.commit(Checkpoint(self.position, ledger_delta(self.ledger)), vouchers, valuations)
            except BaseException:
                self._loaded = False
                raise
            return tuple(vouchers)

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
