"""Every inbound event type against in-process shards: what it does to the books (no NATS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from adapters.nats.ingest.apply import Applier
from adapters.nats.ingest.events import BadEvent, validate_event
from engine import bootstrap
from engine.domain.clock import ManualClock
from engine.domain.deadletters import DeadLetterCode
from engine.domain.errors import InsufficientStock, NotFound
from engine.runtime.gateway import Gateway
from tests.ingest_fixtures import NOW_MS, event, hospital_config, load_hospital, quants, strip_barcode

FIN = {"currency": "EUR", "unit_cost": "4.20", "tax_rate": "0.07", "terms": "2/10 n/30"}


@pytest_asyncio.fixture
async def gw() -> AsyncIterator[Gateway]:
    gateway = bootstrap.local_gateway(shards=2, clock=ManualClock(NOW_MS), sweep_interval_ms=0)
    await load_hospital(gateway)
    yield gateway
    await gateway.close()


async def apply(gw: Gateway, source: str, raw: dict[str, Any]) -> Any:
    return await Applier(gw, hospital_config()).apply(validate_event(raw, source))


async def test_scan_take_by_gs1_barcode_consumes_that_lot(gw: Gateway) -> None:
    applied = await apply(gw, "cabinet", event("scan_take", cabinet_id="ICU-1", barcode=strip_barcode("L100"), qty=2))
    assert applied.units == 2
    q = await quants(gw, "strip", "icu")
    assert q[("L100", "CAB1", "available", "own")] == 8
    assert q[("L200", "CAB1", "available", "own")] == 5


async def test_scan_take_without_lot_is_fefo_and_a_shortfall_is_booked_not_refused(gw: Gateway) -> None:
    await apply(gw, "cabinet", event("scan_take", cabinet_id="ICU-1", sku="strip", qty=20, finance=FIN))
    assert await quants(gw, "strip", "icu") == {}  # 15 on the books, 20 taken: 5 shortfall


async def test_scan_take_is_applied_once_per_event_id(gw: Gateway) -> None:
    raw = event("scan_take", cabinet_id="ICU-1", sku="strip", qty=1)
    for _ in range(3):
        await apply(gw, "cabinet", raw)
    assert sum((await quants(gw, "strip", "icu")).values()) == 14


async def test_scan_return_books_from_the_customer_with_the_barcode_dates(gw: Gateway) -> None:
    await apply(gw, "cabinet", event("scan_return", cabinet_id="ICU-1", barcode=strip_barcode("L900", 90), qty=1))
    await apply(
        gw,
        "cabinet",
        event("scan_return", cabinet_id="ICU-1", barcode=strip_barcode("L100"), condition="damaged"),
    )
    q = await quants(gw, "strip", "icu")
    assert q[("L900", "CAB1", "available", "own")] == 1
    assert q[("L100", "CAB1", "damaged", "own")] == 1


async def test_rfid_count_sets_the_books_to_what_was_counted(gw: Gateway) -> None:
    # Counted: L100 ×7 (3 missing), L200 ×5 (as booked), L300 ×2 (unknown lot: found).
    items = [{"barcode": strip_barcode("L100")}] * 7 + [{"sku": "strip", "lot": "L200", "qty": 5}]
    items += [{"barcode": strip_barcode("L300", 200), "qty": 2}]
    applied = await apply(gw, "cabinet", event("rfid_count", cabinet_id="ICU-1", items=items))
    assert applied.commands == 1  # one whole-bin Count of the one sku, applied inside its cell
    assert applied.units == 5  # 3 missing + 2 found
    q = await quants(gw, "strip", "icu")
    assert q == {
        ("L100", "CAB1", "available", "own"): 7,
        ("L200", "CAB1", "available", "own"): 5,
        ("L300", "CAB1", "available", "own"): 2,
    }


async def test_rfid_count_of_an_empty_cabinet_zeroes_it(gw: Gateway) -> None:
    await apply(gw, "cabinet", event("rfid_count", cabinet_id="ICU-1", items=[]))
    assert await quants(gw, "strip", "icu") == {}


async def test_temperature_excursion_freezes_the_free_stock_of_the_cabinet(gw: Gateway) -> None:
    await apply(gw, "cabinet", event("temperature_excursion", cabinet_id="ICU-1", temp_c=14.5, limit_c=8.0))
    q = await quants(gw, "strip", "icu")
    assert q == {("L100", "CAB1", "quality_frozen", "own"): 10, ("L200", "CAB1", "quality_frozen", "own"): 5}
    assert (await gw.get_availability("strip", "icu")).available == 0
    assert (await gw.get_availability("strip", "dc")).available == 100  # another site: untouched


async def test_an_excursion_freezes_held_units_too_and_cuts_their_holds(gw: Gateway) -> None:
    from engine.domain.commands import ReserveLine
    from engine.runtime.types import HoldLine

    await gw.reserve("r1", "PATIENT-7", [HoldLine("strip", "icu", ReserveLine(4, lot_id="L100"))], ttl_ms=60_000)
    applied = await apply(gw, "cabinet", event("temperature_excursion", cabinet_id="ICU-1", temp_c=14.5, limit_c=8.0))
    assert applied.units == 15
    hold = await gw.get_hold("PATIENT-7")
    assert (hold.parts[0].held_qty, hold.parts[0].released_qty) == (0, 4)  # cut, journaled
    assert (await quants(gw, "strip", "icu"))[("L100", "CAB1", "quality_frozen", "own")] == 10
    again = await apply(gw, "cabinet", event("temperature_excursion", cabinet_id="ICU-1", temp_c=14.5, limit_c=8.0))
    assert again.units == 0  # a redelivery (or a second excursion) finds it all frozen


async def test_door_changes_no_stock_but_needs_a_known_cabinet(gw: Gateway) -> None:
    assert (await apply(gw, "cabinet", event("door", cabinet_id="ICU-1", state="open"))).commands == 0
    with pytest.raises(BadEvent) as bad:
        await apply(gw, "cabinet", event("door", cabinet_id="NOPE", state="open"))
    assert bad.value.code is DeadLetterCode.UNKNOWN_REF


async def test_wms_flow_receipt_qc_putaway_pick_pack_ship(gw: Gateway) -> None:
    lines = [{"sku": "cath", "lot": "C9", "qty": 30, "expiry": "2028-01-31", "bin": "DOCK"}]
    await apply(gw, "wms", event("receipt", site="WH1", asn="ASN-1", lines=lines, finance=FIN))
    assert (await quants(gw, "cath", "dc"))[("C9", "DOCK", "receiving", "own")] == 30
    await apply(gw, "wms", event("qc", site="WH1", sku="cath", lot="C9", qty=30, bin="DOCK", result="pass"))
    await apply(
        gw,
        "wms",
        event("putaway", site="WH1", sku="cath", lot="C9", qty=30, from_bin="DOCK", to_bin="B/02", status="available"),
    )
    await apply(gw, "wms", event("pick", site="WH1", sku="cath", lot="C9", qty=4, bin="B/02"))
    await apply(gw, "wms", event("pack", site="WH1", sku="cath", lot="C9", qty=4, bin="B/02"))
    q = await quants(gw, "cath", "dc")
    assert q[("C9", "B/02", "packed", "own")] == 4
    assert q[("C9", "B/02", "available", "own")] == 26
    await apply(gw, "wms", event("ship", site="WH1", lines=[{"sku": "cath", "lot": "C9", "qty": 4}]))
    q = await quants(gw, "cath", "dc")
    assert ("C9", "B/02", "packed", "own") not in q


async def test_qc_fail_goes_to_the_configured_status(gw: Gateway) -> None:
    await apply(gw, "wms", event("receipt", site="dc", lines=[{"sku": "cath", "lot": "C7", "qty": 3}]))
    await apply(gw, "wms", event("qc", site="dc", sku="cath", lot="C7", qty=3, result="fail"))
    assert (await quants(gw, "cath", "dc"))[("C7", "", "damaged", "own")] == 3


async def test_ship_of_a_hold_commits_it(gw: Gateway) -> None:
    from engine.domain.commands import ReserveLine
    from engine.runtime.types import HoldLine

    await gw.reserve("r1", "ORDER-1", [HoldLine("cath", "dc", ReserveLine(5))], ttl_ms=60_000)
    await apply(gw, "wms", event("ship", site="dc", hold_id="ORDER-1"))
    hold = await gw.get_hold("ORDER-1")
    assert hold.parts[0].committed_qty == 5
    assert sum((await quants(gw, "cath", "dc")).values()) == 45


async def test_cycle_count_adjusts_and_finds_unknown_lots(gw: Gateway) -> None:
    lines = [
        {"sku": "cath", "lot": "C1", "qty": 47},
        {"sku": "cath", "lot": "C5", "qty": 2, "expiry": "2027-06-30"},
    ]
    await apply(gw, "wms", event("cycle_count", site="dc", bin="B/01", lines=lines))
    q = await quants(gw, "cath", "dc")
    assert q[("C1", "B/01", "available", "own")] == 47
    assert q[("C5", "B/01", "available", "own")] == 2


async def test_transfer_out_then_in_moves_stock_through_transit(gw: Gateway) -> None:
    out = event("transfer_out", site="WH1", to_site="icu", transfer_id="T-1", lines=[{"sku": "cath", "qty": 6}])
    await apply(gw, "wms", out)
    assert (await quants(gw, "cath", "dc"))[("C1", "B/01", "available", "own")] == 44
    assert await quants(gw, "cath", "icu") == {("C1", "", "in_transit_in", "own"): 6}
    assert (await gw.get_availability("cath", "icu")).available == 0  # in transit is not sellable
    await apply(gw, "wms", out)  # a duplicate: nothing more moves
    assert (await quants(gw, "cath", "dc"))[("C1", "B/01", "available", "own")] == 44
    arrive = event(
        "transfer_in", site="icu", transfer_id="T-1", lines=[{"sku": "cath", "lot": "C1", "qty": 6, "bin": "CAB1"}]
    )
    await apply(gw, "wms", arrive)
    assert await quants(gw, "cath", "icu") == {("C1", "CAB1", "receiving", "own"): 6}


async def test_unknown_references_are_typed(gw: Gateway) -> None:
    cases = [
        ("cabinet", event("scan_take", cabinet_id="GHOST", sku="strip")),
        ("cabinet", event("scan_take", cabinet_id="ICU-1", barcode="(01)00000000000017(10)X")),
    ]
    for source, raw in cases:
        with pytest.raises(BadEvent) as bad:
            await apply(gw, source, raw)
        assert bad.value.code is DeadLetterCode.UNKNOWN_REF, raw
    with pytest.raises(NotFound) as nf:
        await apply(gw, "wms", event("receipt", site="nowhere", lines=[{"sku": "cath", "lot": "C1", "qty": 1}]))
    assert nf.value.resource_type == "site"


async def test_a_putaway_of_more_than_is_there_is_refused_and_changes_nothing(gw: Gateway) -> None:
    before = await quants(gw, "cath", "dc")
    with pytest.raises(InsufficientStock):
        await apply(
            gw,
            "wms",
            event(
                "putaway", site="dc", sku="cath", lot="C1", qty=999, from_bin="B/01", to_bin="B/09", status="available"
            ),
        )
    assert await quants(gw, "cath", "dc") == before


async def test_barcode_and_spelled_out_lot_must_agree(gw: Gateway) -> None:
    with pytest.raises(BadEvent) as bad:
        await apply(gw, "cabinet", event("scan_take", cabinet_id="ICU-1", barcode=strip_barcode("L100"), lot="L200"))
    assert bad.value.code is DeadLetterCode.INVALID
