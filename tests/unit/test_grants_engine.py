"""Random grants and random queries against the in-memory engine never return a quantity
outside the grant: QueryStock with the caller's scope equals the sum, over the stock the
test put in, of exactly the quants an independent oracle says the grants cover."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.bootstrap import local_gateway
from engine.domain.catalog import Site, Sku
from engine.domain.cell import Dimension, SliceFilter
from engine.domain.commands import Receive
from engine.domain.grants import Action, compile_permissions, parse_policy
from engine.domain.inventory import StockQuery
from engine.runtime.gateway import Gateway

SITES = {"BOS": "acme/east/boston", "NYC": "acme/east/nyc", "LA": "acme/west/la", "EST": "acme/eastern"}
BINS = ("A", "A/1", "A/1/x", "A/10", "AA", "B", "B/2")
SKUS = ("S1", "S2")
# Each (sku, site, bin) holds a distinct power of two, so any wrong total is visible
# (S2 only in a few places: quantities stay below the engine's 10^12 bound).
PLACES = [("S1", site, bin_) for site in SITES for bin_ in BINS] + [("S2", "BOS", b) for b in ("A", "AA", "B")]
STOCK = {place: 1 << i for i, place in enumerate(PLACES)}

ORGS = ("", "acme", "acme/east", "acme/east/boston", "acme/ea", "acme/west")


def segments_cover(path: str, prefix: str) -> bool:
    want = prefix.split("/") if prefix else []
    return path.split("/")[: len(want)] == want if path else not want


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[asyncio.AbstractEventLoop, Gateway]]:
    loop = asyncio.new_event_loop()
    gateway = local_gateway(shards=3, sweep_interval_ms=0)

    async def fill() -> None:
        for sku in SKUS:
            await gateway.put_sku(Sku(sku))
        for site, org in SITES.items():
            await gateway.put_site(Site(site, org))
        for n, ((sku, site, bin_), qty) in enumerate(STOCK.items()):
            await gateway.execute(Receive(f"r{n}", sku, site, "L1", qty, bin=bin_, status="available"))

    loop.run_until_complete(fill())
    yield loop, gateway
    loop.run_until_complete(gateway.close())
    loop.close()


org_grants = st.builds(lambda o: {"org": o}, st.sampled_from(ORGS))
site_grants = st.builds(lambda s: {"site": s}, st.sampled_from(sorted(SITES)))
bin_grants = st.builds(lambda s, b: {"site": s, "bin": b}, st.sampled_from(sorted(SITES)), st.sampled_from(BINS))
grants = st.lists(st.one_of(org_grants, site_grants, bin_grants, bin_grants), min_size=1, max_size=5)
queries = st.builds(
    StockQuery,
    skus=st.sampled_from(((), ("S1",), ("S1", "S2"))),
    sites=st.sampled_from(((), ("BOS",), ("BOS", "LA"), ("EST",))),
    org_prefix=st.sampled_from(("", "acme/east", "acme/west")),
    filter=st.builds(SliceFilter, bin_prefix=st.sampled_from(("", "A", "A/1", "AA", "B"))),
    group_by=st.sampled_from(((), (Dimension.BIN,))),
    by_sku=st.booleans(),
    by_site=st.booleans(),
)


def visible(scopes: list[dict[str, str]], site: str, bin_: str) -> bool:
    for scope in scopes:
        if "org" in scope and segments_cover(SITES[site], scope["org"]):
            return True
        if scope.get("site") == site and segments_cover(bin_, scope.get("bin", "")):
            return True
    return False


def asked(q: StockQuery, sku: str, site: str, bin_: str) -> bool:
    return (
        (not q.skus or sku in q.skus)
        and (not q.sites or site in q.sites)
        and segments_cover(SITES[site], q.org_prefix)
        and segments_cover(bin_, q.filter.bin_prefix)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scopes=grants, q=queries)
def test_random_grants_never_leak(
    engine: tuple[asyncio.AbstractEventLoop, Gateway], scopes: list[dict[str, str]], q: StockQuery
) -> None:
    loop, gateway = engine
    policy = parse_policy(
        {"roles": {"reader": ["read"]}, "grants": [{"subject": "u", "role": "reader", **s} for s in scopes]}, "v"
    )
    scope = compile_permissions(policy, "u", ()).read_scope(Action.READ)
    rows = loop.run_until_complete(gateway.query_stock(replace(q, scope=None if scope.everything else scope)))
    expected = sum(
        qty for (sku, site, bin_), qty in STOCK.items() if asked(q, sku, site, bin_) and visible(scopes, site, bin_)
    )
    assert sum(r.row.qty for r in rows) == expected
    for r in rows:  # and no group names a bin or site outside the grant
        bin_ = dict(r.row.group).get("bin")
        if bin_ is not None and r.site:
            assert visible(scopes, r.site, bin_)
