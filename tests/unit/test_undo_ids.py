"""Internal abort ids never share the callers' namespace (issue 12, "Must hold")."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from engine import bootstrap
from engine.domain.catalog import Site, Sku
from engine.domain.clock import ManualClock
from engine.domain.commands import (
    MAX_ID_LEN,
    UNDO_SUFFIX,
    Receive,
    Release,
    Reserve,
    ReserveLine,
    undo_request_id,
    validate,
)
from engine.domain.errors import InsufficientStock, InvalidArgument
from engine.domain.statuses import DEFAULT_DICTIONARY
from engine.runtime.gateway import Gateway
from engine.runtime.types import HoldLine

DAY_MS = 86_400_000


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Gateway]:
    clock = ManualClock()
    gateway = bootstrap.local_gateway(shards=3, clock=clock, sweep_interval_ms=0)
    await gateway.put_sku(Sku("strip", "Glucose test strips", "box"))
    for site in ("ward1", "ward2"):
        await gateway.put_site(Site(site, "acme/east", "cabinet"))
        expires = clock.now_ms() + 100 * DAY_MS
        await gateway.execute(
            Receive(f"rcv-{site}", "strip", site, "L1", 10, status="available", expires_at_ms=expires)
        )
    yield gateway
    await gateway.close()


def two_lines(first: int, second: int) -> list[HoldLine]:
    return [HoldLine("strip", "ward1", ReserveLine(first)), HoldLine("strip", "ward2", ReserveLine(second))]


async def available(gateway: Gateway) -> tuple[int, int]:
    a = await gateway.get_availability("strip", "ward1")
    b = await gateway.get_availability("strip", "ward2")
    return a.available, b.available


async def test_a_caller_id_with_the_undo_suffix_is_refused_at_the_door(gateway: Gateway) -> None:
    caller = Reserve("o1" + UNDO_SUFFIX, "strip", "ward1", "H1", (ReserveLine(1),), 60_000)
    with pytest.raises(InvalidArgument) as err:
        await gateway.execute(caller)
    assert [v.field for v in err.value.violations] == ["request_id"]
    with pytest.raises(InvalidArgument):  # a plain release may not borrow the engine's ids either
        await gateway.release(undo_request_id("o1"), "H1")
    assert await available(gateway) == (10, 10)


def test_the_cell_still_replays_an_old_journal_that_holds_such_an_id() -> None:
    # The rule lives at the gateway: a journal written before it may hold such ids, and
    # replay runs `validate` again.
    validate(Reserve("o1" + UNDO_SUFFIX, "strip", "ward1", "H1", (ReserveLine(1),), 60_000), DEFAULT_DICTIONARY)
    validate(Release(undo_request_id("o1"), "strip", "ward1", "H1", abort=True), DEFAULT_DICTIONARY)


def test_abort_ids_are_distinct_bounded_and_carry_the_suffix() -> None:
    long_a, long_b = "x" * 123 + "aaaaa", "x" * 123 + "bbbbb"
    ids = {undo_request_id(r) for r in ("o1", long_a, long_b, "x" * 123)}
    assert len(ids) == 4
    assert all(i.endswith(UNDO_SUFFIX) and len(i) <= MAX_ID_LEN for i in ids)
    assert undo_request_id("o1") == "o1" + UNDO_SUFFIX  # short ids keep the documented form


async def test_a_refused_multi_line_reserve_with_an_undo_suffixed_id_leaves_nothing_held(gateway: Gateway) -> None:
    # Before: the id was accepted, its abort got the very same id on the same cell, was
    # refused as a RequestConflict, and the held line stayed held until its TTL.
    request_id = "o" * (MAX_ID_LEN - len(UNDO_SUFFIX)) + UNDO_SUFFIX
    with pytest.raises(InvalidArgument):
        await gateway.reserve(request_id, "H1", two_lines(4, 99), 60_000)
    assert await available(gateway) == (10, 10)


async def test_long_ids_sharing_a_prefix_each_get_their_line_aborted(gateway: Gateway) -> None:
    # Two refused multi-line reserves whose ids share their first 123 characters: both
    # aborts reach the same cell, and each must roll its own line back.
    for suffix, hold in (("aaaaa", "H1"), ("bbbbb", "H2")):
        with pytest.raises(InsufficientStock):
            await gateway.reserve("x" * 123 + suffix, hold, two_lines(4, 99), 60_000)
        assert await available(gateway) == (10, 10)
