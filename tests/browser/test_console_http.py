"""The console over plain HTTP (no browser), against the same real engine: the session and
CSRF rules, bad input answered 400 naming the field, refusals with their HTTP status, and
the authorization matrix — a clerk's pages show nothing outside their grant."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.browser.conftest import Estate

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.ray]


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def signed_in(url: str, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=url, timeout=30)
    form = await client.get("/login")
    reply = await client.post("/login", data={"token": token, "csrf": csrf_in(form.text)})
    assert reply.status_code == 303, reply.text
    assert reply.headers["location"] == "/stock"
    return client


@pytest_asyncio.fixture(loop_scope="session")
async def admin(estate: Estate) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(estate.url, estate.admin_token)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def clerk(estate: Estate) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(estate.url, estate.clerk_token)
    yield client
    await client.aclose()


async def test_pages_need_a_session_and_the_token_cookie_is_locked_down(estate: Estate) -> None:
    async with httpx.AsyncClient(base_url=estate.url) as anonymous:
        for path in ("/stock", "/history", "/charts", "/deadletters", "/deadletters/1", "/history/asof"):
            reply = await anonymous.get(path)
            assert (reply.status_code, reply.headers["location"]) == (303, "/login"), path
        form = await anonymous.get("/login")
        assert form.status_code == 200
        assert form.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
        assert "script-src 'self'" in form.headers["content-security-policy"]
        reply = await anonymous.post("/login", data={"token": estate.admin_token, "csrf": csrf_in(form.text)})
        cookie = next(v for k, v in reply.headers.multi_items() if k == "set-cookie" and v.startswith("lotwise_token="))
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie


async def test_sign_in_refuses_a_bad_token_a_missing_csrf_and_another_origin(estate: Estate) -> None:
    async with httpx.AsyncClient(base_url=estate.url) as client:
        csrf = csrf_in((await client.get("/login")).text)
        bad = await client.post("/login", data={"token": "not-a-jwt", "csrf": csrf})
        assert bad.status_code == 401
        assert 'id="login-failed"' in bad.text
        assert "lotwise_token" not in bad.headers.get("set-cookie", "")
        no_csrf = await client.post("/login", data={"token": estate.admin_token})
        assert no_csrf.status_code == 403
        foreign = await client.post(
            "/login", data={"token": estate.admin_token, "csrf": csrf}, headers={"origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
        assert "lotwise_token" not in foreign.headers.get("set-cookie", "")


async def test_a_token_the_engine_no_longer_accepts_ends_the_session(estate: Estate) -> None:
    async with httpx.AsyncClient(base_url=estate.url, cookies={"lotwise_token": "expired.or.forged"}) as client:
        reply = await client.get("/stock")
        assert (reply.status_code, reply.headers["location"]) == (303, "/login?expired=1")
        assert 'lotwise_token=""' in reply.headers["set-cookie"] or "Max-Age=0" in reply.headers["set-cookie"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/stock?group=colour", "group"),
        ("/stock?bin_depth=99", "bin_depth"),
        ("/stock?site=two%20words", "site"),
        ("/stock?min_shelf_life_days=soon", "min_shelf_life_days"),
        ("/history?as_of_ms=1", "as_of_ms"),
        ("/history?sku=" + "x" * 200, "sku"),
        ("/charts?days=0", "days"),
        ("/deadletters/abc", "seq"),
        ("/deadletters?code=whatever", "code"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(admin: httpx.AsyncClient, path: str, field: str) -> None:
    reply = await admin.get(path)
    assert reply.status_code == 400, reply.text
    assert f"<code>{field}</code>" in reply.text


async def test_engine_refusals_keep_their_meaning(admin: httpx.AsyncClient) -> None:
    missing = await admin.get("/deadletters/999999")
    assert missing.status_code == 404
    assert "NOT_FOUND" in missing.text


async def test_replay_needs_the_csrf_token(estate: Estate, admin: httpx.AsyncClient) -> None:
    listing = await admin.get("/deadletters")
    seqs = re.findall(r'data-seq="(\d+)"', listing.text)
    assert seqs, "the estate has a dead letter"
    forged = await admin.post("/deadletters/replay", data={"seq": seqs[0]})
    assert forged.status_code == 403
    wrong = await admin.post("/deadletters/replay", data={"seq": seqs[0], "csrf": "x" * 43})
    assert wrong.status_code == 403
    still = await admin.get(f"/deadletters/{seqs[0]}")
    assert still.status_code == 200  # nothing was replayed
    none_chosen = await admin.post("/deadletters/replay", data={"csrf": csrf_in(listing.text)})
    assert none_chosen.status_code == 400


async def test_a_clerk_sees_only_their_shelves_on_every_page(clerk: httpx.AsyncClient) -> None:
    stock = await clerk.get("/stock?f=1&by_site=1&group=bin&bin_depth=1")
    assert stock.status_code == 200
    assert re.findall(r'data-site="([^"]+)"', stock.text) == ["BOS"]
    assert re.findall(r'data-bin="([^"]*)"', stock.text) == ["A"]
    assert re.search(r'id="total-qty">435<', stock.text)
    other_site = await clerk.get("/stock?f=1&by_site=1&site=NYC")
    assert re.search(r'id="total-qty">0<', other_site.text)

    # History answers whole sites only: a grant to some shelves of BOS reads no history at all
    # (the engine refuses; the page says so), so nothing of BOS shelf B or another site leaks.
    for path in ("/history", "/history?sku=GLU&site=BOS", "/charts", "/history/trace?lot=L-NYC-1"):
        refused = await clerk.get(path, follow_redirects=True)
        assert refused.status_code == 403, path
        assert "PERMISSION_DENIED" in refused.text
        for lot in ("L-NYC-1", "L-LA-1", "L-BOS-3"):
            assert lot not in re.sub(r"<(form|header).*?</\1>", "", refused.text, flags=re.S)
    letters = await clerk.get("/deadletters")
    assert letters.status_code == 403
    assert "PERMISSION_DENIED" in letters.text
    page = await clerk.get("/stock")
    replay = await clerk.post("/deadletters/replay", data={"seq": "1", "csrf": csrf_in(page.text)})
    assert replay.status_code == 403


async def test_a_site_reader_sees_that_site_s_history_only(estate: Estate) -> None:
    viewer = await signed_in(estate.url, estate.viewer_token)
    try:
        # No site chosen: the page asks about the reader's (first) site, not about every site.
        redirected = await viewer.get("/history")
        assert (redirected.status_code, redirected.headers["location"]) == (303, "/history?site=BOS")
        history = await viewer.get("/history?site=BOS")
        assert history.status_code == 200
        assert "L-BOS-1" in history.text
        sites = set(re.findall(r"<td>(BOS|NYC|LA)</td>", history.text))
        assert sites == {"BOS"}
        for lot in ("L-NYC-1", "L-LA-1"):
            assert lot not in history.text
        assert (await viewer.get("/charts")).headers["location"] == "/charts?site=BOS"
        charts = await viewer.get("/charts?site=BOS")
        assert charts.status_code == 200
        assert re.search(r'id="consumption-total">5<', charts.text)
        assert "L-BOS-1" in charts.text
        assert "L-LA-1" not in charts.text  # expires in 5 days, at LA
        trace = await viewer.get("/history/trace?lot=L-NYC-1")
        assert trace.status_code in (200, 403)
        assert 'data-col="site">NYC' not in trace.text
    finally:
        await viewer.aclose()


async def test_language_switch_is_remembered_and_redirects_only_inside(admin: httpx.AsyncClient) -> None:
    switched = await admin.get("/lang/zh", params={"next": "//evil.example/x"})
    assert (switched.status_code, switched.headers["location"]) == (303, "/stock")
    page = await admin.get("/stock")
    assert "库存浏览" in page.text
    assert '<html lang="zh-Hans">' in page.text
    assert (await admin.get("/lang/fr")).status_code == 404
    await admin.get("/lang/en")
    assert "Stock explorer" in (await admin.get("/stock")).text


async def test_console_requests_are_measured(estate: Estate, admin: httpx.AsyncClient) -> None:
    await admin.get("/stock")
    async with httpx.AsyncClient() as plain:
        metrics = (await plain.get(estate.engine.metrics_url)).text
    assert re.search(r'lotwise_console_requests_total\{panel="stock",status="200"\} [1-9]', metrics)
    assert "lotwise_console_request_seconds_bucket" in metrics
