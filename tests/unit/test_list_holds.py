"""ListHolds' shard share (engine.domain.hold_listing): filters, grants, paging, checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from engine.api import convert
from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.domain.catalog import Site
from engine.domain.errors import InvalidArgument
from engine.domain.grants import ReadScope
from engine.domain.hold_listing import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    HoldFilter,
    ScanHolds,
    check_listing,
    part_visible,
    scan_holds,
)
from engine.domain.model import Allocation, HoldState, HoldView


def view(
    hold_id: str, sku: str, site: str, state: HoldState, expires: int = 10_000, bins: tuple[str, ...] = ("A/1",)
) -> HoldView:
    allocations = tuple(Allocation("L1", b, "available", "own", 1, 0) for b in bins)
    held = len(bins) if state is HoldState.ACTIVE else 0
    return HoldView(hold_id, sku, site, state, allocations, held, 0, 0, 1_000, expires)


@dataclass
class FakeCell:
    views: dict[str, HoldView] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def hold_ids(self) -> list[str]:
        return list(self.views)

    def hold_view(self, hold_id: str, now_ms: int) -> HoldView | None:
        self.asked.append(hold_id)
        return self.views.get(hold_id)


SITES = {"BOS": Site("BOS", "acme/east/boston"), "LA": Site("LA", "acme/west/la")}


def cells() -> dict[tuple[str, str], FakeCell]:
    return {
        ("GLU", "BOS"): FakeCell(
            {
                "h1": view("h1", "GLU", "BOS", HoldState.ACTIVE, 5_000),
                "h3": view("h3", "GLU", "BOS", HoldState.COMMITTED),
                "h4": view("h4", "GLU", "BOS", HoldState.ACTIVE, 20_000, bins=("B",)),
            }
        ),
        ("GLU", "LA"): FakeCell({"h1": view("h1", "GLU", "LA", HoldState.ACTIVE, 5_000)}),
        ("STRIP", "BOS"): FakeCell({"h2": view("h2", "STRIP", "BOS", HoldState.EXPIRED, 3_000)}),
    }


def scan(
    filt: HoldFilter | None = None, after: str = "", limit: int = 100, scope: ReadScope | None = None
) -> list[tuple[str, str, str]]:
    op = ScanHolds(filt or HoldFilter(), after, limit, scope)
    return [(p.hold_id, p.sku, p.site) for p in scan_holds(cells(), SITES, op, 0)]


def test_every_part_of_every_hold_in_hold_id_then_pair_order() -> None:
    assert scan() == [
        ("h1", "GLU", "BOS"),
        ("h1", "GLU", "LA"),
        ("h2", "STRIP", "BOS"),
        ("h3", "GLU", "BOS"),
        ("h4", "GLU", "BOS"),
    ]


def test_filters_by_pair_site_state_and_expiry() -> None:
    assert scan(HoldFilter(sku="GLU", site="LA")) == [("h1", "GLU", "LA")]
    assert scan(HoldFilter(site="BOS")) == [
        ("h1", "GLU", "BOS"),
        ("h2", "STRIP", "BOS"),
        ("h3", "GLU", "BOS"),
        ("h4", "GLU", "BOS"),
    ]
    assert scan(HoldFilter(sku="STRIP")) == [("h2", "STRIP", "BOS")]
    assert scan(HoldFilter(states=frozenset({HoldState.EXPIRED, HoldState.COMMITTED}))) == [
        ("h2", "STRIP", "BOS"),
        ("h3", "GLU", "BOS"),
    ]
    assert scan(HoldFilter(states=frozenset({HoldState.ACTIVE}), expiring_before_ms=6_000)) == [
        ("h1", "GLU", "BOS"),
        ("h1", "GLU", "LA"),
    ]


def test_one_pair_reads_one_cell_only() -> None:
    all_cells = cells()
    scan_holds(all_cells, SITES, ScanHolds(HoldFilter(sku="GLU", site="LA"), "", 10), 0)
    assert all_cells[("GLU", "LA")].asked == ["h1"]
    assert all_cells[("GLU", "BOS")].asked == []


def test_a_page_is_the_limit_smallest_ids_after_the_cursor() -> None:
    assert scan(limit=2) == [("h1", "GLU", "BOS"), ("h1", "GLU", "LA"), ("h2", "STRIP", "BOS")]
    assert scan(after="h2", limit=1) == [("h3", "GLU", "BOS")]
    assert scan(after="h4") == []


def test_grants_hide_parts_outside_the_callers_sites_and_bins() -> None:
    boston = ReadScope(False, sites=frozenset({"BOS"}))
    assert ("h1", "GLU", "LA") not in scan(scope=boston)
    assert len(scan(scope=boston)) == 4
    east = ReadScope(False, orgs=frozenset({"acme/east"}))
    assert scan(scope=east) == scan(scope=boston)
    shelf = ReadScope(False, bins={"BOS": ("A",)})  # bin A/1 is under A; bin B is not
    assert scan(scope=shelf) == [("h1", "GLU", "BOS"), ("h2", "STRIP", "BOS"), ("h3", "GLU", "BOS")]
    assert scan(scope=ReadScope(False, sites=frozenset({"NYC"}))) == []


def test_a_part_over_granted_and_other_bins_stays_hidden() -> None:
    scope = ReadScope(False, bins={"BOS": ("A/1",)})
    assert part_visible(view("h", "GLU", "BOS", HoldState.ACTIVE, bins=("A/1/x", "A/1")), scope, "")
    assert not part_visible(view("h", "GLU", "BOS", HoldState.ACTIVE, bins=("A/1", "A/10")), scope, "")
    assert not part_visible(view("h", "GLU", "BOS", HoldState.RELEASED, bins=()), scope, "")
    assert part_visible(view("h", "GLU", "BOS", HoldState.RELEASED, bins=()), None, "")


def test_a_malformed_listing_names_every_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_listing(ScanHolds(HoldFilter(sku="bad sku", site="x" * 200, expiring_before_ms=-1), "", 0))
    assert {v.field for v in err.value.violations} == {"sku", "site", "expiring_before_ms", "page_size"}
    check_listing(ScanHolds(HoldFilter(), "", MAX_PAGE_SIZE))


def test_the_request_converts_and_the_cursor_round_trips() -> None:
    q = convert.list_holds_from_pb(
        pb.ListHoldsRequest(sku="GLU", states=[pb.HOLD_STATE_ACTIVE], expiring_before_ms=9, page_size=0)
    )
    assert q == ScanHolds(HoldFilter("GLU", "", frozenset({HoldState.ACTIVE}), 9), "", DEFAULT_PAGE_SIZE)
    token = convert.page_token_of("order/17#a")
    assert convert.list_holds_from_pb(pb.ListHoldsRequest(page_token=token)).after == "order/17#a"
    assert convert.page_token_of("") == ""


def test_bad_states_sizes_and_tokens_are_invalid_arguments() -> None:
    with pytest.raises(InvalidArgument) as err:
        convert.list_holds_from_pb(
            pb.ListHoldsRequest(states=[pb.HOLD_STATE_PARTIAL, 42], page_size=MAX_PAGE_SIZE + 1, page_token="nope!")
        )
    assert {v.field for v in err.value.violations} == {"states[0]", "states[1]", "page_size", "page_token"}
