"""The financial context and the external buckets over gRPC, down to the journal.

A real grpc.aio server over Gateway.local() with an in-memory journal this test can read:
what the business-event bus will find there is the journaled op of each request (its
`finance`, `source`, `destination`, `status`) and the movements it produced (their
buckets), matched by request id. Bad values are INVALID_ARGUMENT with field violations
and change nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from adapters.memory.backend import shared_in_memory_backend
from engine.api.client import LotwiseClient, new_request_id
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.api.gen.lotwise.v1 import inventory_pb2_grpc as pb_grpc
from engine.api.server import ApiMetrics, start_server
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import Commit, Consume, Receive, ReserveLine
from engine.domain.errors import InvalidArgument
from engine.domain.inventory import CommitLine
from engine.domain.model import External, Finance, Movement, QuantKey
from engine.domain.ports import BackendFactory
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine
from tests.integration.test_grpc_api import refused, refused_unchanged

EUR = Finance(currency="EUR", unit_cost="12.50", unit_price="19.99", tax_rate="0.20", terms="2/10 n/30")
EUR_PB = pb.Finance(currency="EUR", unit_cost="12.50", unit_price="19.99", tax_rate="0.20", terms="2/10 n/30")
TTL_MS = 60_000


class World:
    """The client, a raw stub, and the journal behind them."""

    def __init__(self, client: LotwiseClient, gateway: Gateway, backend: BackendFactory) -> None:
        self.client = client
        self.stub = pb_grpc.InventoryStub(client.channel)
        self.gateway = gateway
        self._backend = backend

    async def journal(self) -> tuple[dict[str, list[Any]], dict[str, list[Movement]]]:
        """Journaled ops and movements of every shard, by request id."""
        backend = await self._backend()
        ops: dict[str, list[Any]] = {}
        movements: dict[str, list[Movement]] = {}
        for shard in self.gateway.directory.all_shards():
            async for _, entry in backend.journal.read(shard):
                for op in entry.ops:
                    if hasattr(op, "request_id"):
                        ops.setdefault(op.request_id, []).append(op)
                for m in entry.movements:
                    movements.setdefault(m.request_id, []).append(m)
        return ops, movements


@pytest_asyncio.fixture
async def world(manual_clock: ManualClock) -> AsyncIterator[World]:
    backend = shared_in_memory_backend()
    gateway = Gateway.local(shards=2, clock=manual_clock, sweep_interval_ms=0, backend=backend)
    server, _ = await start_server(gateway, "127.0.0.1", 0, metrics=ApiMetrics(CollectorRegistry()))
    try:
        async with LotwiseClient(f"127.0.0.1:{server.port}", timeout_s=10.0) as client:
            await client.put_sku(Sku("strip"))
            for site in ("ward1", "ward2"):
                await client.put_site(Site(site, "acme/east", "cabinet"))
            for site in ("ward1", "ward2"):
                await client.receive("strip", site, "L-1", 10, status="available", request_id=f"seed-{site}")
            yield World(client, gateway, backend)
    finally:
        await server.stop(grace_s=1.0)
        await gateway.close()


# ---- pass-through: the journal holds what the caller sent ----


async def test_a_receipt_carries_its_source_and_finance(world: World) -> None:
    await world.client.receive(
        "strip", "ward1", "L-R", 3, status="returned_pending", source=External.CUSTOMER, finance=EUR, request_id="ret-1"
    )
    ops, movements = await world.journal()
    [op] = ops["ret-1"]
    assert isinstance(op, Receive)
    assert (op.source, op.finance) == (External.CUSTOMER, EUR)
    assert [(m.src, m.dst, m.qty) for m in movements["ret-1"]] == [
        (External.CUSTOMER, QuantKey("L-R", "", "returned_pending", "own"), 3)
    ]


async def test_a_receipt_without_a_source_comes_from_the_supplier(world: World) -> None:
    ops, movements = await world.journal()
    [op] = ops["seed-ward1"]
    assert (op.source, op.finance) == (External.SUPPLIER, None)
    assert [m.src for m in movements["seed-ward1"]] == [External.SUPPLIER]


async def test_a_transfer_in_over_the_raw_wire(world: World) -> None:
    req = pb.ReceiveRequest(
        request_id="xfer-in",
        sku="strip",
        site="ward2",
        lot_id="L-T",
        qty=2,
        status="in_transit_in",
        source="@transit",
        finance=pb.Finance(currency="EUR", unit_cost="3.10"),
    )
    await world.stub.Receive(req)
    ops, movements = await world.journal()
    assert ops["xfer-in"][0].finance == Finance(currency="EUR", unit_cost="3.10")
    assert [m.src for m in movements["xfer-in"]] == [External.TRANSIT]


async def test_an_empty_finance_message_is_no_finance(world: World) -> None:
    req = pb.ConsumeRequest(request_id="c-empty", sku="strip", site="ward1", qty=1, finance=pb.Finance())
    await world.stub.Consume(req)
    ops, _ = await world.journal()
    assert ops["c-empty"][0].finance is None


async def test_a_consumption_carries_its_destination_status_and_finance(world: World) -> None:
    client = world.client
    await client.receive("strip", "ward1", "L-D", 4, status="damaged", request_id="dmg")
    scrapped = await client.consume(
        "strip", "ward1", 6, status="damaged", destination=External.SCRAP, finance=EUR, request_id="scrap-1"
    )
    assert (scrapped.consumed_qty, scrapped.shortfall_qty) == (4, 2)
    assert await _available(client, "ward1") == 10  # the sellable stock was not touched
    ops, movements = await world.journal()
    [op] = ops["scrap-1"]
    assert isinstance(op, Consume)
    assert (op.destination, op.status, op.finance) == (External.SCRAP, "damaged", EUR)
    assert [(m.src, m.dst, m.qty) for m in movements["scrap-1"]] == [
        (QuantKey("L-D", "", "damaged", "own"), External.SCRAP, 4),
        (External.COUNT_VARIANCE, External.SCRAP, 2),
    ]


async def test_a_shipment_leg_over_the_raw_wire(world: World) -> None:
    req = pb.ConsumeRequest(
        request_id="ship-1", sku="strip", site="ward2", qty=3, destination="@transit", status="available"
    )
    reply = await world.stub.Consume(req)
    assert (reply.consumed_qty, reply.discrepancy) == (3, False)
    _, movements = await world.journal()
    assert {m.dst for m in movements["ship-1"]} == {External.TRANSIT}


async def test_move_change_status_and_adjust_carry_finance(world: World) -> None:
    client = world.client
    await client.move("strip", "ward1", "L-1", 1, "", "A/01", finance=EUR, request_id="mv")
    await client.change_status("strip", "ward1", "L-1", 1, "available", "damaged", finance=EUR, request_id="cs")
    await client.adjust("strip", "ward1", "L-1", 7, finance=EUR, request_id="adj")
    ops, _ = await world.journal()
    assert [ops[r][0].finance for r in ("mv", "cs", "adj")] == [EUR, EUR, EUR]


async def test_a_multi_pair_hold_carries_finance_to_every_pair(world: World) -> None:
    client = world.client
    lines = [HoldLine("strip", "ward1", ReserveLine(2)), HoldLine("strip", "ward2", ReserveLine(3))]
    sale = Finance(currency="USD", unit_price="4.00", tax_rate="0.07", terms="n/30")
    await client.reserve(lines, TTL_MS, hold_id="H-1", finance=EUR, request_id="res-1")
    await client.commit("H-1", [CommitLine("strip", "ward1", 2)], finance=sale, request_id="com-1")
    await client.reserve(lines, TTL_MS, hold_id="H-2", request_id="res-2")
    await client.release("H-2", finance=EUR, request_id="rel-2")
    ops, movements = await world.journal()
    assert {(op.site, op.finance) for op in ops["res-1"]} == {("ward1", EUR), ("ward2", EUR)}
    assert all(isinstance(op, Commit) for op in ops["com-1"])
    assert {(op.site, op.finance) for op in ops["com-1"]} == {("ward1", sale), ("ward2", sale)}
    assert {(op.site, op.finance) for op in ops["res-2"]} == {("ward1", None), ("ward2", None)}
    assert {(op.site, op.finance) for op in ops["rel-2"]} == {("ward1", EUR), ("ward2", EUR)}
    # Every movement the commit produced finds its op by request id, pair by pair.
    assert {m.site for m in movements["com-1"]} == {"ward1", "ward2"}


async def test_a_raw_reserve_commit_release_carry_finance(world: World) -> None:
    line = pb.ReserveLine(sku="strip", site="ward1", qty=1)
    await world.stub.Reserve(
        pb.ReserveRequest(request_id="rr", hold_id="H-r", lines=[line], ttl_ms=TTL_MS, finance=EUR_PB)
    )
    await world.stub.Commit(pb.CommitRequest(request_id="rc", hold_id="H-r", finance=EUR_PB))
    ops, _ = await world.journal()
    assert ops["rr"][0].finance == EUR
    assert ops["rc"][0].finance == EUR


async def test_the_typed_finance_attributes_reach_the_journal(world: World) -> None:
    """Issue 16: tier, channel, tax attribute, gift, the sale a return refers to and a
    transfer's destination are fields of Finance, journaled with the command (v7)."""
    gift = Finance(
        "EUR", unit_price="19.99", customer_tier="key", sales_channel="web", tax_attribute="deemed_sale", gift=True
    )
    back = Finance(return_of="SO 2026/7")
    leg = Finance(to_site="ward2", to_company="acme-bj")
    await world.client.consume("strip", "ward1", 1, finance=gift, request_id="gift-1")
    await world.client.receive("strip", "ward1", "L-1", 1, source=External.CUSTOMER, finance=back, request_id="rma-1")
    raw = pb.ConsumeRequest(request_id="leg-1", sku="strip", site="ward1", qty=1, destination="@transit")
    raw.finance.to_site, raw.finance.to_company = "ward2", "acme-bj"
    await world.stub.Consume(raw)
    ops, _ = await world.journal()
    assert [ops[r][0].finance for r in ("gift-1", "rma-1", "leg-1")] == [gift, back, leg]


async def test_a_retry_with_other_finance_is_already_exists(world: World) -> None:
    await world.client.consume("strip", "ward1", 1, finance=EUR, request_id="c-1")
    r = await refused(world.stub.Consume(pb.ConsumeRequest(request_id="c-1", sku="strip", site="ward1", qty=1)))
    assert r.code == grpc.StatusCode.ALREADY_EXISTS


# ---- refusals: INVALID_ARGUMENT naming the field, nothing changed ----

BAD_FINANCE = pb.Finance(
    currency="eur",
    unit_cost="-1",
    unit_price="1e3",
    tax_rate="1.5",
    terms="2/30 n/30",
    customer_tier="Key Account",
    sales_channel="web?x=1",
    tax_attribute="x" * 65,
    return_of="SO-1?tier=key",
    to_site="BJ 01",
    to_company="a/b",
)
ALL_FINANCE_FIELDS = {
    "finance.currency",
    "finance.unit_cost",
    "finance.unit_price",
    "finance.tax_rate",
    "finance.terms",
    "finance.customer_tier",
    "finance.sales_channel",
    "finance.tax_attribute",
    "finance.return_of",
    "finance.to_site",
    "finance.to_company",
}


def _bad_requests() -> list[tuple[str, Any]]:
    rid = new_request_id
    line = pb.ReserveLine(sku="strip", site="ward1", qty=1)
    return [
        (
            "Receive",
            pb.ReceiveRequest(request_id=rid(), sku="strip", site="ward1", lot_id="L-1", qty=1, finance=BAD_FINANCE),
        ),
        (
            "Move",
            pb.MoveRequest(
                request_id=rid(), sku="strip", site="ward1", lot_id="L-1", qty=1, to_bin="A", finance=BAD_FINANCE
            ),
        ),
        (
            "ChangeStatus",
            pb.ChangeStatusRequest(
                request_id=rid(),
                sku="strip",
                site="ward1",
                lot_id="L-1",
                qty=1,
                from_status="available",
                to_status="damaged",
                finance=BAD_FINANCE,
            ),
        ),
        ("Reserve", pb.ReserveRequest(request_id=rid(), lines=[line], ttl_ms=TTL_MS, finance=BAD_FINANCE)),
        ("Commit", pb.CommitRequest(request_id=rid(), hold_id="H-open", finance=BAD_FINANCE)),
        ("Release", pb.ReleaseRequest(request_id=rid(), hold_id="H-open", finance=BAD_FINANCE)),
        ("Consume", pb.ConsumeRequest(request_id=rid(), sku="strip", site="ward1", qty=1, finance=BAD_FINANCE)),
        (
            "Adjust",
            pb.AdjustRequest(
                request_id=rid(), sku="strip", site="ward1", lot_id="L-1", counted_qty=1, finance=BAD_FINANCE
            ),
        ),
    ]


@pytest.mark.parametrize(("method", "request_"), _bad_requests(), ids=[m for m, _ in _bad_requests()])
async def test_a_bad_financial_context_is_refused_on_every_rpc(world: World, method: str, request_: Any) -> None:
    await world.client.reserve([HoldLine("strip", "ward1", ReserveLine(1))], TTL_MS, hold_id="H-open")
    r = await refused_unchanged(world.client, lambda: getattr(world.stub, method)(request_))
    assert r.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(r.fields) == ALL_FINANCE_FIELDS
    assert "ISO 4217" in r.fields["finance.currency"]
    assert (await world.client.get_hold("H-open")).held_qty == 1


async def test_a_missing_currency_is_named(world: World) -> None:
    with pytest.raises(InvalidArgument) as info:
        await world.client.consume("strip", "ward1", 1, finance=Finance(unit_price="2.00"))
    assert {v.field: v.description for v in info.value.violations} == {
        "finance.currency": "is required when an amount is given"
    }


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ReceiveRequest(sku="strip", site="ward1", lot_id="L-1", qty=1, source="@nowhere"), "source"),
        (pb.ReceiveRequest(sku="strip", site="ward1", lot_id="L-1", qty=1, source="supplier"), "source"),
        (pb.ReceiveRequest(sku="strip", site="ward1", lot_id="L-1", qty=1, source="@scrap"), "source"),
        (pb.ConsumeRequest(sku="strip", site="ward1", qty=1, destination="@nowhere"), "destination"),
        (pb.ConsumeRequest(sku="strip", site="ward1", qty=1, destination="@supplier"), "destination"),
        (pb.ConsumeRequest(sku="strip", site="ward1", qty=1, status="shipped"), "status"),
        (pb.ConsumeRequest(sku="strip", site="ward1", qty=1, status="in_transit_out"), "status"),
    ],
)
async def test_bad_buckets_and_statuses_are_refused(world: World, request_: Any, field: str) -> None:
    request_.request_id = new_request_id()
    call = world.stub.Receive if isinstance(request_, pb.ReceiveRequest) else world.stub.Consume
    r = await refused_unchanged(world.client, lambda: call(request_))
    assert r.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(r.fields) == {field}


async def _available(client: LotwiseClient, site: str) -> int:
    return (await client.get_availability("strip", site)).available
