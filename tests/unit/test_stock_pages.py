"""QueryStock by cursor: walking every page gives exactly the whole answer (each row once, in
order, with its full sums), for every grouping and grant; a cursor is stable while rows are
added; a bad cursor or page size is refused by name. Shards in process (no Ray)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import bootstrap
from engine.api import convert
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter, SliceRow
from engine.domain.clock import ManualClock
from engine.domain.commands import Receive
from engine.domain.errors import FailedPrecondition, InvalidArgument
from engine.domain.grants import ReadScope
from engine.domain.inventory import MAX_STOCK_PAGE, StockKey, StockQuery, StockRow
from engine.domain.shard import GroupSums, result_too_large
from engine.runtime.gateway import Gateway

DAY_MS = 86_400_000
SKUS = tuple(f"S{i}" for i in range(12))
SITES = (("A", "acme/east/a"), ("B", "acme/east/b"), ("C", "acme/west/c"), ("D", "acme/west/d"))
SHAPES = (
    StockQuery(),
    StockQuery(by_sku=False),
    StockQuery(by_site=False),
    StockQuery(group_by=(Dimension.STATUS,), by_sku=False),  # from the kept totals
    StockQuery(group_by=(Dimension.OWNER, Dimension.STATUS), by_sku=False, by_site=False),
    StockQuery(group_by=(Dimension.BIN,), bin_depth=1),
    StockQuery(group_by=(Dimension.LOT,), org_prefix="acme/east"),
    StockQuery(filter=SliceFilter(owner="consignment"), group_by=(Dimension.OWNER,)),
    StockQuery(scope=ReadScope(everything=False, sites=frozenset({"C"}), bins={"A": ("X",)})),
    StockQuery(group_by=(Dimension.STATUS,), by_sku=False, scope=ReadScope(everything=False, bins={"B": ("Y",)})),
)


async def _receive(gateway: Gateway, n: int, rng: random.Random) -> None:
    sku, (site, _), lot = rng.choice(SKUS), rng.choice(SITES), rng.randint(1, 3)
    await gateway.execute(
        Receive(
            f"rcv-{n}",
            sku,
            site,
            f"L{lot}",
            rng.randint(1, 50),
            status=rng.choice(("available", "qc_hold", "damaged")),
            expires_at_ms=1_800_000_000_000 + lot * 30 * DAY_MS,  # one expiry per lot
            owner=rng.choice(("own", "consignment:acme", "consignment:zeta")),
            bin=rng.choice(("X/1", "X/2", "Y/1", "Z/9")),
        )
    )


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = bootstrap.local_gateway(shards=3, clock=ManualClock(1_800_000_000_000), sweep_interval_ms=0)
    for sku in SKUS:
        await gw.put_sku(Sku(sku, sku))
    for site, org in SITES:
        await gw.put_site(Site(site, org, "cabinet"))
    rng = random.Random(17)
    for n in range(160):
        await _receive(gw, n, rng)
    yield gw
    await gw.close()


async def _walk(gateway: Gateway, q: StockQuery, page_size: int) -> list[StockRow]:
    """Every page in turn, as the servicer answers them (the extra row says 'more')."""
    rows: list[StockRow] = []
    after: StockKey | None = None
    for _ in range(10_000):
        page = await gateway.query_stock(replace(q, page_size=page_size, after=after))
        assert len(page) <= page_size + 1
        answer = convert.stock_page_to_pb(page, page_size)
        rows.extend(page[:page_size])
        if not answer.next_page_token:
            assert len(page) <= page_size
            return rows
        v = convert.Violations()
        after = convert.stock_key_of(answer.next_page_token, v)
        assert not v.items
        assert after == (rows[-1].sku, rows[-1].site, rows[-1].row.group)
    raise AssertionError("the pages never ended")


async def test_every_page_walk_is_the_whole_answer(gateway: Gateway) -> None:
    for q in SHAPES:
        whole = await gateway.query_stock(q)
        assert whole, q
        for page_size in (1, 2, 3, 7, len(whole), len(whole) + 5):
            assert await _walk(gateway, q, page_size) == whole, (q, page_size)


async def test_a_page_never_counts_more_than_a_limit(gateway: Gateway) -> None:
    """Paged, the answer is never refused for its size; whole, it still is."""
    q = StockQuery(limit=5)
    with pytest.raises(FailedPrecondition) as refused:
        await gateway.query_stock(q)
    assert refused.value.reason == "RESULT_TOO_LARGE"
    assert len(await _walk(gateway, q, 4)) > 5


async def test_the_cursor_is_stable_while_rows_are_added(gateway: Gateway) -> None:
    """Rows received between pages never make a page repeat or skip a row that existed."""
    before = {(r.sku, r.site, r.row.group) for r in await gateway.query_stock(StockQuery())}
    seen: list[StockKey] = []
    after: StockKey | None = None
    rng = random.Random(3)
    n = 1_000
    while True:
        page = await gateway.query_stock(StockQuery(page_size=5, after=after))
        shown = page[:5]
        seen.extend((r.sku, r.site, r.row.group) for r in shown)
        if len(page) <= 5:
            break
        after = seen[-1]
        for _ in range(3):
            await _receive(gateway, n, rng)
            n += 1
    assert seen == sorted(set(seen))  # in order, none twice
    assert before <= set(seen)


async def test_the_page_size_is_bounded(gateway: Gateway) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await gateway.query_stock(StockQuery(page_size=MAX_STOCK_PAGE + 1))
    assert refused.value.violations[0].field == "page_size"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.QueryStockRequest(page_size=-1), "page_size"),
        (pb.QueryStockRequest(page_size=MAX_STOCK_PAGE + 1), "page_size"),
        (pb.QueryStockRequest(page_size=10, page_token="not-a-token"), "page_token"),
        (pb.QueryStockRequest(page_size=10, page_token=convert.page_token_of("hold-1")), "page_token"),
        (pb.QueryStockRequest(page_size=10, page_token="x" * 5000), "page_token"),
        (pb.QueryStockRequest(page_token=convert.stock_token_of(("a", "b", ()))), "page_token"),
    ],
)
def test_bad_paging_is_refused_by_name(request_: pb.QueryStockRequest, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        convert.stock_query_from_pb(request_, None)
    assert [v.field for v in refused.value.violations] == [field]


def test_a_token_round_trips_any_key() -> None:
    key: StockKey = ("sku/é 1", "", (("status", "qc_hold"), ("bin", "A/1")))
    request = pb.QueryStockRequest(page_size=3, page_token=convert.stock_token_of(key))
    assert convert.stock_query_from_pb(request, None).after == key
    again = convert.stock_query_from_pb(convert.stock_query_to_pb(StockQuery(page_size=3, after=key)), None)
    assert (again.page_size, again.after) == (3, key)


keys = st.tuples(st.sampled_from("abc"), st.sampled_from(("", "x", "y")), st.just(()))


@settings(max_examples=300, deadline=None)
@given(adds=st.lists(st.tuples(keys, st.integers(1, 9)), max_size=80), keep=st.integers(1, 6), after=st.none() | keys)
def test_group_sums_keep_exactly_the_first_keys(
    adds: list[tuple[StockKey, int]], keep: int, after: StockKey | None
) -> None:
    """Pruning to the smallest keys never loses a sum that belongs on the page."""
    sums = GroupSums(limit=1, keep=keep, after=after)
    whole: dict[StockKey, int] = {}
    for key, qty in adds:
        total = sums.slot(key)
        if total is not None:
            total[0] += qty
        if after is None or key > after:
            whole[key] = whole.get(key, 0) + qty
    expected = sorted(whole.items())[:keep]
    assert [((sku, site, row.group), row.qty) for sku, site, row in sums.rows()] == expected


def test_whole_group_sums_refuse_past_the_limit() -> None:
    sums = GroupSums(limit=2)
    sums.slot(("a", "", ()))
    sums.slot(("b", "", ()))
    with pytest.raises(type(result_too_large(2))):
        sums.slot(("c", "", ()))
    assert isinstance(sums.rows()[0][2], SliceRow)
