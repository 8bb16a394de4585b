"""The console's pure parts: forms read from query strings, the org tree's roll-ups, SVG
charts, labels in both languages, and the CSRF / origin checks."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs

import pytest
from starlette.datastructures import QueryParams
from starlette.requests import Request

from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.console.forms import (
    PAGE_ROWS,
    FormProblem,
    parse_charts,
    parse_history,
    parse_seq,
    parse_stock,
)
from engine.console.i18n import LABELS, Translator, lang_of
from engine.console.rollups import RollupCache, Totals
from engine.console.security import CSRF_COOKIE, csrf_ok, same_origin
from engine.console.svg import bar_chart, line_chart
from engine.console.views.stock import org_tree


def stock(query: str):  # type: ignore[no-untyped-def]
    params = QueryParams(query)
    return parse_stock(params, params.getlist("group"))


def test_the_stock_form_defaults_to_site_totals() -> None:
    form = stock("")
    request = form.request()
    assert (request.by_sku, request.by_site, list(request.group_by)) == (False, True, [])
    assert (request.page_size, request.page_token) == (PAGE_ROWS, "")
    assert 100 <= PAGE_ROWS <= 200


def test_the_stock_table_pages_by_cursor_and_totals_every_page() -> None:
    form = stock("f=1&by_site=1&group=status&page=abc")
    assert (form.request().page_token, form.request().page_size) == ("abc", PAGE_ROWS)
    assert "page=" not in form.query()  # a changed filter starts at the first page
    total = form.total_request()
    assert (total.by_sku, total.by_site, list(total.group_by), total.page_size, total.page_token) == (
        False,
        False,
        [],
        0,
        "",
    )
    assert list(total.filter.statuses) == list(form.request().filter.statuses)
    rollup = form.rollup_request()
    assert (rollup.page_size, rollup.page_token) == (0, "")  # the org tree sums every site, unpaged


def test_grouping_by_bin_starts_one_level_deep_and_drills_one_more() -> None:
    form = stock("f=1&by_site=1&group=bin&group=status&site=BOS,NYC&status=available")
    request = form.request()
    assert list(request.group_by) == [pb.DIMENSION_BIN, pb.DIMENSION_STATUS]
    assert (request.bin_depth, list(request.sites), list(request.filter.statuses)) == (1, ["BOS", "NYC"], ["available"])
    drilled = parse_qs(form.drill_bin("A"))
    assert (drilled["bin_prefix"], drilled["bin_depth"], drilled["group"]) == (["A"], ["2"], ["bin", "status"])


def test_a_submitted_form_means_unticked_boxes_are_off() -> None:
    assert stock("f=1").request().by_site is False
    assert stock("f=1&by_sku=1").request().by_sku is True


def test_shelf_life_bounds_are_optional_fields() -> None:
    request = stock("min_shelf_life_days=3&max_shelf_life_days=30.5").request()
    assert (request.filter.min_shelf_life_days, request.filter.max_shelf_life_days) == (3.0, 30.5)
    assert not stock("").request().filter.HasField("min_shelf_life_days")


def test_a_table_per_site_over_every_site_is_its_own_rollup() -> None:
    assert stock("").covers_every_site()
    assert stock("f=1&by_site=1&by_sku=1&group=status").covers_every_site()
    assert not stock("f=1&by_site=1&site=BOS").covers_every_site()
    assert not stock("f=1&by_site=1&org=acme").covers_every_site()
    assert not stock("f=1&group=status").covers_every_site()  # summed over sites: no per-site rows


def test_rollups_ask_for_every_site_the_reader_may_see() -> None:
    rollup = stock("f=1&site=BOS&org=acme/east&group=lot&by_sku=1&status=qc_hold").rollup_request()
    assert (list(rollup.sites), rollup.org_prefix, list(rollup.group_by), rollup.by_sku) == ([], "", [], False)
    assert list(rollup.filter.statuses) == ["qc_hold"]  # the filter still applies


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("group=colour", "group"),
        ("bin_depth=9", "bin_depth"),
        ("bin_depth=x", "bin_depth"),
        ("site=a%20b", "site"),
        ("sku=" + ",".join(f"s{i}" for i in range(101)), "sku"),
        ("min_shelf_life_days=NaNx", "min_shelf_life_days"),
        ("bin_prefix=A%20B", "bin_prefix"),
        ("lot=" + "L" * 129, "lot"),
        ("page=" + "x" * 4097, "page"),
    ],
)
def test_bad_stock_values_name_their_field(query: str, field: str) -> None:
    with pytest.raises(FormProblem) as raised:
        stock(query)
    assert raised.value.field == field


def test_history_and_charts_forms() -> None:
    history = parse_history(QueryParams("sku=GLU&site=BOS&lot=L1"))
    as_of = history.as_of_request(123)
    assert (as_of.as_of_ms, list(as_of.skus), list(as_of.sites), as_of.lot_id) == (123, ["GLU"], ["BOS"], "L1")
    assert len(as_of.group_by) == 4  # sku, site, lot, status
    charts = parse_charts(QueryParams("days=7&horizon_days=14"))
    day = 86_400_000
    series = charts.consumption_request(10 * day + 5)
    assert (series.from_ms, series.to_ms) == (4 * day, 10 * day + 5)  # seven whole days, today included
    assert charts.exposure_request(99).horizon_days == 14
    with pytest.raises(FormProblem):
        parse_charts(QueryParams("horizon_days=0"))
    with pytest.raises(FormProblem):
        parse_seq("0")
    assert parse_seq("42") == 42


def test_the_org_tree_sums_each_node_over_its_sites() -> None:
    sites = [
        pb.Site(site="BOS", org_path="acme/east/boston"),
        pb.Site(site="NYC", org_path="acme/east/nyc"),
        pb.Site(site="LA", org_path="acme/west"),
        pb.Site(site="HQ", org_path=""),
    ]
    per_site = {"BOS": Totals(10, 1, 9, 10), "NYC": Totals(5), "LA": Totals(7), "HQ": Totals(1)}
    root = org_tree(sites, per_site)
    assert root.totals.qty == 23
    acme = root.children["acme"]
    assert (acme.totals.qty, acme.children["east"].totals.qty, acme.children["west"].totals.qty) == (22, 15, 7)
    assert acme.children["east"].children["boston"].sites == [("BOS", per_site["BOS"])]
    assert [s for s, _ in root.sites] == ["HQ"]
    assert acme.children["west"].path == "acme/west"


def test_charts_are_valid_svg_with_escaped_labels() -> None:
    t = Translator("en")
    line = line_chart("<consumption>", [("2026-12-01", 3), ("<b>", 1_200)], t.number)
    bars = bar_chart("exposure", [("expired", 5), ("3", 0)], t.number)
    for svg in (line, bars):
        ET.fromstring(svg)  # well-formed XML, whatever the labels held
    assert "&lt;b&gt;" in line
    assert "1,200" in line
    assert line_chart("empty", [], t.number).count("<polyline") == 0
    assert "2,000" in line  # the y axis ends on a round number above the top value


def test_both_languages_have_every_label() -> None:
    assert set(LABELS["en"]) == set(LABELS["zh"])
    assert all(value.strip() for labels in LABELS.values() for value in labels.values())


def test_numbers_and_dates_are_localised() -> None:
    en, zh = Translator("en"), Translator("zh")
    assert en.number(1234567) == "1,234,567"
    assert zh.number(1234567) == "1,234,567"
    ms = 1_796_601_600_000  # 2026-12-07T00:00:00Z
    assert en.day(ms) == "Dec 7, 2026"
    assert zh.day(ms) == "2026年12月7日"
    assert zh.iso_day("2026-12-07") == "2026年12月7日"
    assert en.day(0) == ""
    assert en.time(ms).endswith("UTC")
    assert (lang_of("zh"), lang_of("fr"), lang_of(None)) == ("zh", "en", "en")
    assert en("no-such-label") == "no-such-label"


def request_with(headers: dict[str, str], cookie: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if cookie:
        raw.append((b"cookie", f"{CSRF_COOKIE}={cookie}".encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "headers": raw,
        "query_string": b"",
        "server": ("127.0.0.1", 8470),
    }
    return Request(scope)


def test_csrf_is_a_double_submit_compared_in_full() -> None:
    token = "t" * 43
    assert csrf_ok(request_with({}, token), token)
    assert not csrf_ok(request_with({}, token), token[:-1] + "x")
    assert not csrf_ok(request_with({}, token), "")
    assert not csrf_ok(request_with({}), token)  # no cookie: nothing to compare with


def test_only_the_console_s_own_origin_may_post() -> None:
    assert same_origin(request_with({"host": "127.0.0.1:8470"}))  # no Origin header
    assert same_origin(request_with({"host": "127.0.0.1:8470", "origin": "http://127.0.0.1:8470"}))
    assert not same_origin(request_with({"host": "127.0.0.1:8470", "origin": "http://evil.example"}))
    assert not same_origin(request_with({"host": "127.0.0.1:8470", "origin": "null"}))


def test_rollups_are_kept_a_few_seconds_per_reader_and_filter() -> None:
    cache = RollupCache(ttl_ms=5_000, entries=2)
    by_site = stock("").rollup_request()
    held_only = stock("status=qc_hold").rollup_request()
    cache.put("alice", by_site, 1_000, {"BOS": Totals(5)})
    assert cache.get("alice", by_site, 6_000) == (1_000, {"BOS": Totals(5)})
    assert cache.get("alice", by_site, 6_001) is None  # too old: asked again
    assert cache.get("bob", by_site, 1_000) is None  # another reader, other grants: never shared
    assert cache.get("alice", held_only, 1_000) is None  # another filter
    cache.put("alice", held_only, 1_000, {})
    cache.put("bob", by_site, 1_000, {})
    assert cache.get("alice", by_site, 1_000) is None  # the oldest entry left: the cache is bounded
