"""The scenario behind the committed journal samples (tests/data/journal/).

Every op type of the journal, as a shard applies them: the committed files are these
batches encoded by the release that wrote each schema version, and the test decodes
them back into these very values (tests/unit/test_journal_formats.py).
"""

from __future__ import annotations

from dataclasses import replace

from engine.domain.catalog import Site, Sku
from engine.domain.commands import (
    Adjust,
    ChangeStatus,
    Commit,
    Consume,
    Count,
    CountLine,
    CountSource,
    DeviceOp,
    ExpireLots,
    FreezeStock,
    Move,
    OpenLot,
    Receive,
    Release,
    Reserve,
    ReserveLine,
    ScrapOverAge,
    Strategy,
)
from engine.domain.model import MS_PER_DAY, External, Finance
from engine.domain.shard import Expect, HandOff, HoldHeader, PutSite, PutSku, RegisterHold, Sweep

SHARD = "shard-3"
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
EUR = Finance(currency="EUR", unit_cost="12.50", unit_price="19.99", tax_rate="0.20", terms="2/10 n/30")


def sample_batches() -> list[tuple[int, tuple[object, ...]]]:
    """(engine ms, ops) per batch: catalog, every command, holds, a hand-off and a sweep."""
    return [
        (
            T0_MS,
            (
                PutSku(Sku("SKU-1", "Saline 500 ml", "ea", 3)),
                PutSku(Sku("SKU-2")),
                PutSite(Site("BOS", "medline/east/boston", "store", "Boston")),
                PutSite(Site("NYC")),
            ),
        ),
        (
            T0_MS + 1_000,
            (
                Receive("r1", "SKU-1", "BOS", "L1", 40, "A/01", "available", "own", T0_MS + 90 * MS_PER_DAY),
                Receive(
                    "r2", "SKU-1", "BOS", "L2", 10, "A/02", "available", "own", 0, 0, 0, "PO-7", External.TRANSIT, EUR
                ),
                Move("r3", "SKU-1", "BOS", "L1", 5, "A/01", "B/01", finance=EUR),
                ChangeStatus("r4", "SKU-1", "BOS", "L1", 2, "available", "damaged", "B/01"),
                Receive("r1", "SKU-1", "BOS", "L1", 40, "A/01", "available", "own", T0_MS + 90 * MS_PER_DAY),
                Move("r5", "SKU-1", "BOS", "L9", 5, "A/01", "B/01"),  # refused: no such lot
            ),
        ),
        (
            T0_MS + 2_000,
            (
                RegisterHold(HoldHeader("H1", "r6", (("SKU-1", "BOS"),), 60_000)),
                Reserve(
                    "r6",
                    "SKU-1",
                    "BOS",
                    "H1",
                    (ReserveLine(3), ReserveLine(2, Strategy.FIFO, "", "own", 1.5, "A")),
                    60_000,
                    "SO-1",
                ),
                Reserve("r7", "SKU-1", "BOS", "H2", (ReserveLine(4, Strategy.LOT, "L2"),), 1_000, "SO-2", EUR),
                Reserve("r8", "SKU-1", "BOS", "H3", (ReserveLine(1),), 60_000),
                Reserve("r9", "SKU-1", "BOS", "H4", (ReserveLine(999),), 60_000),  # refused: too few
                Commit("r10", "SKU-1", "BOS", "H1", 4, "INV-1", EUR),
                Release("r11", "SKU-1", "BOS", "H3", "", True),
            ),
        ),
        (
            T0_MS + 5_000,
            (
                Consume("r12", "SKU-1", "BOS", 3, "", "", "", Strategy.FEFO, "CON-1", External.SCRAP, "damaged"),
                Consume("r13", "SKU-1", "BOS", 500, doc_ref="CON-2", finance=EUR),  # a shortfall
                Adjust("r14", "SKU-1", "BOS", "L1", 7, "B/01", "available", "own", "cycle count", "CC-1"),
                Commit("r15", "SKU-1", "BOS", "H1"),
                Sweep(10),
            ),
        ),
        (
            T0_MS + 6_000,
            (
                Receive("r16", "SKU-2", "NYC", "L5", 8, "C/01"),
                Expect("SKU-2", "BOS"),
                HandOff("SKU-2", "NYC", "shard-4"),
            ),
        ),
    ]


def health_batches() -> list[tuple[int, tuple[object, ...]]]:
    """Batches 6 and 7 of shard-3 (journal v4 on): the cell commands of stock health —
    a sku's freshness fields, an opening, a quant and a whole-bin count, an expiry, a
    scrapping of over-age opened stock, an excursion's freeze and a device's offline ops (one
    replayed)."""
    return [
        (
            T0_MS + 7_000,
            (
                PutSku(Sku("SKU-1", "Saline 500 ml", "ea", 3, 24, ("SKU-2",))),
                Receive("r17", "SKU-1", "BOS", "L3", 6, "A/03", "available", "own", T0_MS + 9 * MS_PER_DAY),
                Receive("r17b", "SKU-1", "BOS", "L4", 3, "A/04", "available", "own", T0_MS + MS_PER_DAY),
                OpenLot("r18", "SKU-1", "BOS", "L3", doc_ref="STATION-1"),
                Count("r19", "SKU-1", "BOS", "A/01", (CountLine("L1", 20),), True, CountSource.RFID, 0.875),
                Count("r20", "SKU-1", "BOS", "A/03", (CountLine("L3", 7),), source=CountSource.RECOGNISER),
                Count("r21", "SKU-1", "BOS", "Z/9", (CountLine("L-new", 2, "qc_hold", "own", T0_MS),)),
            ),
        ),
        (
            T0_MS + 2 * MS_PER_DAY,
            (
                ExpireLots("r22", "SKU-1", "BOS"),
                ScrapOverAge("r23", "SKU-1", "BOS", "L3", "SCRAP-1", EUR),
                ExpireLots("r24", "SKU-1", "BOS", "L-new"),  # nothing left to move
                FreezeStock("r25", "SKU-1", "BOS", "A", "excursion:12.5C"),
                DeviceOp("r26", "SKU-1", "BOS", "POS-3", 7, T0_MS + 3_600_000, Consume("", "SKU-1", "BOS", 2)),
                DeviceOp("r27", "SKU-1", "BOS", "POS-3", 7, T0_MS + 3_600_000, Consume("", "SKU-1", "BOS", 2)),
                DeviceOp("r28", "SKU-1", "BOS", "POS-3", 8, T0_MS, Receive("", "SKU-1", "BOS", "L9", 4, "C")),
            ),
        ),
    ]


def relative_batches() -> list[tuple[int, tuple[object, ...]]]:
    """Batch 8 of shard-3 (journal v6 on), after `health_batches`: relative adjustments
    (a gain, a loss, one refused for taking more than is free) and device ops that say their
    previous seq on the cell (one in order, one after a gap: refused, nothing applied)."""
    return [
        (
            T0_MS + 3 * MS_PER_DAY,
            (
                Receive("r29", "SKU-1", "BOS", "L5", 10, "D/01", "available", "own", T0_MS + 90 * MS_PER_DAY),
                Adjust("r30", "SKU-1", "BOS", "L5", 0, "D/01", reason="reconciliation", doc_ref="P-1", delta_qty=-3),
                Adjust("r31", "SKU-1", "BOS", "L5", 0, "D/01", reason="transfer_shortage", delta_qty=2),
                Adjust("r32", "SKU-1", "BOS", "L5", 0, "D/01", reason="reconciliation", delta_qty=-50),
                DeviceOp(
                    "r33",
                    "SKU-1",
                    "BOS",
                    "POS-3",
                    9,
                    T0_MS + 2 * MS_PER_DAY,
                    Consume("", "SKU-1", "BOS", 1),
                    prev_seq=8,
                ),
                DeviceOp("r34", "SKU-1", "BOS", "POS-3", 12, T0_MS, Consume("", "SKU-1", "BOS", 1), prev_seq=11),
            ),
        ),
    ]


def as_v1(op: object) -> object:
    """The op as a v1 engine could journal it: v1 had no financial context, no
    Receive.source and no Consume.destination or status (their defaults)."""
    if isinstance(op, Receive | Move | ChangeStatus | Reserve | Commit | Release | Consume | Adjust):
        op = replace(op, finance=None)
    if isinstance(op, Receive):
        op = replace(op, source=External.SUPPLIER)
    if isinstance(op, Consume):
        op = replace(op, destination=External.CUSTOMER, status="")
    return op
