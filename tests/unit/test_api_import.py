"""The server side of Import without a network: chunk bounds, order, barriers, retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.importer import (
    IMPORT_MAX_CHUNK_ROWS,
    IMPORT_RETRY_PAUSE_MAX_S,
    IMPORT_RETRY_WINDOW_S,
    ChunkApplier,
    ChunkTooLarge,
    Outage,
    check_chunk,
    lots_from_pb,
    run_import,
)
from engine.domain.catalog import Site, Sku
from engine.domain.commands import Receive
from engine.domain.errors import DomainError, InvalidArgument, NotFound, Overloaded, Unavailable
from engine.domain.receipts import ReceiptColumns


class FakeGateway:
    """Records what it applied; refuses what it is told to: `busy` times first, and as
    Unavailable (a shard being taken over) until `down_until` (time.monotonic)."""

    def __init__(self, busy: int = 0, delay_s: float = 0.0, down_until: float = 0.0) -> None:
        self.applied: list[str] = []
        self.busy = busy
        self.delay_s = delay_s
        self.down_until = down_until
        self.calls = 0

    async def _step(self, name: str) -> None:
        self.calls += 1
        if self.busy:
            self.busy -= 1
            raise Overloaded("queue of shard-0", 10)
        if time.monotonic() < self.down_until:
            raise Unavailable("shard shard-0: its process is gone; taking over")
        await asyncio.sleep(self.delay_s)
        self.applied.append(name)

    async def put_sku(self, sku: Sku, deadline: float | None = None) -> None:
        await self._step(f"sku:{sku.sku}")

    async def put_site(self, site: Site, deadline: float | None = None) -> None:
        await self._step(f"site:{site.site}")

    async def receive_columns(self, receipts: ReceiptColumns) -> list[DomainError | None]:
        answers: list[DomainError | None] = []
        for cmd in receipts.receipts():
            if cmd.sku == "missing":
                answers.append(NotFound("sku", cmd.sku))
                continue
            try:
                await self._step(f"lot:{cmd.lot_id}")
            except (Overloaded, Unavailable) as err:
                answers.append(err)
                continue
            answers.append(None)
        return answers


def lot_row(line: int, lot_id: str, sku: str = "S1") -> apb.ImportRow:
    req = pb.ReceiveRequest(request_id=f"r-{lot_id}", sku=sku, site="W1", lot_id=lot_id, qty=2)
    return apb.ImportRow(line=line, lot=req)


def sku_row(line: int, sku: str) -> apb.ImportRow:
    return apb.ImportRow(line=line, sku=pb.Sku(sku=sku))


async def feed(chunks: list[apb.ImportChunk]) -> AsyncIterator[apb.ImportChunk]:
    for chunk in chunks:
        yield chunk


def test_chunk_bounds() -> None:
    with pytest.raises(ChunkTooLarge):
        check_chunk(apb.ImportChunk(rows=[sku_row(i, "S") for i in range(IMPORT_MAX_CHUNK_ROWS + 1)]))
    with pytest.raises(InvalidArgument):
        check_chunk(apb.ImportChunk())


async def test_a_chunk_counts_what_it_applied_and_lists_refusals_by_line() -> None:
    gateway = FakeGateway()
    chunk = apb.ImportChunk(chunk_seq=7, rows=[lot_row(3, "L3", sku="missing"), sku_row(1, "S1"), lot_row(2, "L2")])
    reply = await ChunkApplier(gateway).apply(chunk)
    assert (reply.chunk_seq, reply.skus, reply.lots, reply.units) == (7, 1, 1, 2)
    assert [(r.line, r.code) for r in reply.refused] == [(3, "NOT_FOUND")]
    assert gateway.applied == ["sku:S1", "lot:L2"]  # the catalog first


async def test_transient_refusals_are_tried_again_then_reported() -> None:
    flaky = FakeGateway(busy=5)
    reply = await ChunkApplier(flaky, retry_pause_s=0.001).apply(apb.ImportChunk(rows=[lot_row(1, "L1")]))
    assert (reply.lots, list(reply.refused), flaky.calls) == (1, [], 6)

    stuck = FakeGateway(busy=10_000)
    outage = Outage(window_s=0.2)
    started = time.monotonic()
    reply = await ChunkApplier(stuck, retry_pause_s=0.001, outage=outage).apply(
        apb.ImportChunk(rows=[lot_row(1, "L1")])
    )
    assert 0.2 <= time.monotonic() - started < 0.2 + IMPORT_RETRY_PAUSE_MAX_S
    assert reply.lots == 0
    assert [(r.line, r.code) for r in reply.refused] == [(1, "RESOURCE_EXHAUSTED")]
    assert stuck.calls > 2


async def test_an_import_rides_out_a_take_over_longer_than_a_few_retries() -> None:
    # A shard's take-over by its standby takes 0.2–2 s (bench/README.md "Fail-over"); the
    # rows and catalog rows sent meanwhile are tried again until it serves, none refused.
    down_s = 1.5
    assert down_s < IMPORT_RETRY_WINDOW_S
    gateway = FakeGateway(down_until=time.monotonic() + down_s)
    chunks = [
        apb.ImportChunk(chunk_seq=0, rows=[sku_row(1, "S1")]),
        apb.ImportChunk(chunk_seq=1, rows=[lot_row(2, "A"), lot_row(3, "B")]),
        apb.ImportChunk(chunk_seq=2, lots=lots("C", "D")),
    ]
    replies = [r async for r in run_import(feed(chunks), ChunkApplier(gateway))]
    assert [list(r.refused) for r in replies] == [[], [], []]
    assert (sum(r.skus for r in replies), sum(r.lots for r in replies)) == (1, 4)
    assert sorted(gateway.applied) == ["lot:A", "lot:B", "lot:C", "lot:D", "sku:S1"]  # each once


async def test_an_outage_longer_than_the_window_is_waited_out_once_per_import() -> None:
    # A shard that does not come back: the first chunks wait the window, then every row is
    # reported by line; the chunks after them are tried once each, not a window each.
    gateway = FakeGateway(down_until=time.monotonic() + 3600)
    applier = ChunkApplier(gateway, retry_pause_s=0.01, outage=Outage(window_s=0.3))
    chunks = [apb.ImportChunk(chunk_seq=k, rows=[lot_row(k + 1, f"L{k}")]) for k in range(12)]
    started = time.monotonic()
    replies = [r async for r in run_import(feed(chunks), applier, max_in_flight=2)]
    assert time.monotonic() - started < 2 * 0.3 + IMPORT_RETRY_PAUSE_MAX_S
    assert [[(r.line, r.code) for r in reply.refused] for reply in replies] == [
        [(k + 1, "UNAVAILABLE")] for k in range(12)
    ]
    assert gateway.applied == []


async def test_replies_come_in_chunk_order_and_a_catalog_chunk_is_a_barrier() -> None:
    gateway = FakeGateway(delay_s=0.001)
    chunks = [
        apb.ImportChunk(chunk_seq=0, rows=[lot_row(1, "A")]),
        apb.ImportChunk(chunk_seq=1, rows=[lot_row(2, "B")]),
        apb.ImportChunk(chunk_seq=2, rows=[sku_row(3, "S9")]),
        apb.ImportChunk(chunk_seq=3, rows=[lot_row(4, "C")]),
    ]
    replies = [r async for r in run_import(feed(chunks), ChunkApplier(gateway), max_in_flight=4)]
    assert [r.chunk_seq for r in replies] == [0, 1, 2, 3]
    assert gateway.applied.index("sku:S9") > max(gateway.applied.index("lot:A"), gateway.applied.index("lot:B"))
    assert gateway.applied.index("lot:C") > gateway.applied.index("sku:S9")


async def test_a_chunk_too_large_stops_the_stream_before_it_is_applied() -> None:
    gateway = FakeGateway()
    chunks = [
        apb.ImportChunk(chunk_seq=0, rows=[lot_row(1, "A")]),
        apb.ImportChunk(chunk_seq=1, rows=[lot_row(i, f"X{i}") for i in range(IMPORT_MAX_CHUNK_ROWS + 1)]),
    ]
    with pytest.raises(ChunkTooLarge):
        _ = [r async for r in run_import(feed(chunks), ChunkApplier(gateway))]
    assert not any(name.startswith("lot:X") for name in gateway.applied)


def lots(*lot_ids: str, **columns: list[object]) -> apb.ImportLots:
    n = len(lot_ids)
    base: dict[str, object] = {
        "line": list(range(1, n + 1)),
        "request_id": [f"r-{lot}" for lot in lot_ids],
        "sku": ["S1"] * n,
        "site": ["W1"] * n,
        "lot_id": list(lot_ids),
        "qty": [2] * n,
    }
    return apb.ImportLots(**{**base, **columns})  # type: ignore[arg-type]


def test_lot_columns_left_out_take_the_defaults_and_each_lot_keeps_its_line() -> None:
    lines, receipts, refused = lots_from_pb(lots("A", "B", bin=["X/1", "X/2"], source=["", "@customer"]))
    assert (lines, refused) == ([1, 2], [])
    first, second = receipts.receipts()
    assert first == Receive("r-A", "S1", "W1", "A", 2, "X/1")  # every default as a Receive's own
    assert (first.request_id, first.bin, first.status, first.owner, first.source.value) == (
        "r-A",
        "X/1",
        "receiving",
        "own",
        "@supplier",
    )
    assert (second.bin, second.source.value, second.expires_at_ms) == ("X/2", "@customer", 0)


def test_a_lot_with_an_unknown_source_is_refused_alone() -> None:
    lines, receipts, refused = lots_from_pb(lots("A", "B", "C", source=["@nowhere", "", "@customer"]))
    assert [(line, type(err)) for line, err in refused] == [(1, InvalidArgument)]
    assert lines == [2, 3]
    assert [(r.lot_id, r.source.value) for r in receipts.receipts()] == [("B", "@supplier"), ("C", "@customer")]


def test_columns_that_do_not_line_up_refuse_the_chunk() -> None:
    with pytest.raises(InvalidArgument) as refused:
        lots_from_pb(lots("A", "B", bin=["only one"]))
    assert refused.value.violations[0].field == "lots.bin"
    with pytest.raises(InvalidArgument):
        lots_from_pb(lots("A", "B", qty=[1]))  # a required column may not be left out either


async def test_a_chunk_of_rows_and_columns_applies_both_and_counts_them_together() -> None:
    gateway = FakeGateway()
    chunk = apb.ImportChunk(chunk_seq=2, rows=[lot_row(9, "R9")], lots=lots("A", "B", sku=["S1", "missing"]))
    check_chunk(chunk)
    reply = await ChunkApplier(gateway).apply(chunk)
    assert (reply.lots, reply.units) == (2, 4)
    assert [(r.line, r.code) for r in reply.refused] == [(2, "NOT_FOUND")]
    assert gateway.applied == ["lot:R9", "lot:A"]
    with pytest.raises(ChunkTooLarge):
        check_chunk(apb.ImportChunk(lots=lots(*(f"L{i}" for i in range(IMPORT_MAX_CHUNK_ROWS + 1)))))
