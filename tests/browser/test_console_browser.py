"""The console in a real headless chromium (Debian's, driven by Playwright) against a real
engine: sign in, explore stock, group by status, drill into a bin, slide the as-of time,
trace a lot, replay a dead letter, switch to Chinese; a clerk sees their shelves only.
Each test leaves a screenshot under build/test-artifacts/browser/."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from engine.console.forms import PAGE_ROWS
from tests.browser.conftest import PAGED_LOTS, PAGED_SITE, Estate, artifacts_dir, have_cjk_font, sign_in

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.ray]


async def shot(page: Page, name: str) -> None:
    path = artifacts_dir() / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} is (nearly) empty"


async def cell_texts(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in await page.locator(selector).all_inner_texts()]


async def test_sign_in_and_explore_stock_by_org_status_and_bin(page: Page, estate: Estate) -> None:
    await page.goto(f"{estate.url}/stock")
    await expect(page).to_have_url(re.compile(r"/login$"))  # no token: the sign-in page
    await sign_in(page, estate, estate.admin_token)
    await expect(page.locator("#subject")).to_have_text("admin")
    # The org tree rolls every site up: 100+40+25-5 (GLU) + 300 (GAU) at BOS, 70 NYC, 50 LA.
    tree = page.locator("#org-tree")
    await expect(tree.locator('a[data-site="BOS"] + .num')).to_have_text("460")
    await expect(tree.locator('a[data-org="acme/east"] + .num')).to_have_text("530")
    await expect(tree.locator('a[data-org="acme"] + .num')).to_have_text("580")
    await expect(page.locator("#total-qty")).to_have_text("900")  # + 320 lots of 1 at PGS (org beta)

    # Group by status (site totals split per status).
    await page.check("#group-status")
    await page.click("#apply")
    await expect(page).to_have_url(re.compile(r"group=status"))
    rows = page.locator("#stock-table tbody tr")
    await expect(rows.filter(has_text="qc_hold")).to_have_count(1)
    assert "40" in await rows.filter(has_text="qc_hold").inner_text()

    # Narrow to BOS in the tree, then group by bin and drill A → A/01.
    await page.click('#org-tree a[data-site="BOS"]')
    await expect(page).to_have_url(re.compile(r"site=BOS"))
    await page.uncheck("#group-status")
    await page.check("#group-bin")
    await page.click("#apply")
    await expect(page.locator('a.drill[data-bin="A"]')).to_be_visible()
    assert await cell_texts(page, '#stock-table td[data-col="bin"]') == ["A", "B"]
    await page.click('a.drill[data-bin="A"]')
    await expect(page).to_have_url(re.compile(r"bin_prefix=A&"))
    assert await cell_texts(page, '#stock-table td[data-col="bin"]') == ["A/01", "A/02"]
    await expect(page.locator("#total-qty")).to_have_text("435")  # 95 + 300 in A/01, 40 in A/02
    await shot(page, "stock-bin-drill")


async def test_slide_the_as_of_time_and_trace_a_lot(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.admin_token)
    await page.click("#nav-history")
    await expect(page).to_have_url(re.compile(r"/history$"))  # the boosted swap is done: fill the new form
    await expect(page.locator("#history-form")).to_be_visible()
    await page.fill('input[name="sku"]', "GLU")
    await page.fill('input[name="site"]', "BOS")
    await page.click("#search")
    await expect(page).to_have_url(re.compile(r"/history\?sku=GLU&site=BOS"))
    kinds = await cell_texts(page, "#movements tbody td:nth-child(2)")
    assert kinds.count("receive") == 3, kinds  # GLU at BOS only: three lots received
    assert "consume" in kinds, kinds
    assert set(await cell_texts(page, "#movements tbody td:nth-child(4)")) == {"BOS"}
    await expect(page.locator("#asof-table tbody tr")).to_have_count(3)  # now: three lots

    slider = page.locator("#as-of-slider")
    before = await page.locator("#as-of-at").get_attribute("data-as-of-ms")
    # Back to before the first receipt: htmx fetches the balance as of then; nothing was there.
    start = await slider.get_attribute("min")
    await slider.fill(str(start))
    await expect(page.locator("#as-of-at")).not_to_have_attribute("data-as-of-ms", before or "")
    await expect(page.locator("#asof-empty")).to_be_visible()
    # And forward again: the lots are back.
    await slider.fill(str(await slider.get_attribute("max")))
    await expect(page.locator("#asof-table tbody tr")).to_have_count(3)
    await shot(page, "history-as-of")

    await page.click('#movements a.lot:text("L-BOS-1") >> nth=0')
    await expect(page).to_have_url(re.compile(r"/history/trace\?lot=L-BOS-1"))
    stops = page.locator("#trace-stops tbody tr")
    await expect(stops).to_have_count(1)
    assert "BOS" in await stops.first.inner_text()
    await expect(page.locator("#trace-documents")).to_contain_text("CASE-17")
    await shot(page, "lot-trace")


async def test_charts_are_server_drawn_svg(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.admin_token)
    await page.click("#nav-charts")
    # 5 GLU at BOS, and the 10 + 10 SUG scanned out at SUP1 and SUP2 (the suggestions' pairs).
    await expect(page.locator("#consumption-total")).to_have_text("25")
    await expect(page.locator("#consumption svg.chart polyline")).to_have_count(1)
    await expect(page.locator("#exposure svg.chart rect.bar").first).to_be_visible()
    await expect(page.locator("#exposure-table")).to_contain_text("L-LA-1")  # 5 days left
    await shot(page, "charts")


async def test_show_and_replay_a_dead_letter(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.admin_token)
    await page.click("#nav-deadletters")
    row = page.locator("#dead-letters tbody tr", has_text="unknown_reference").first
    await expect(row).to_be_visible()
    seq = await row.get_attribute("data-seq")
    await page.click(f"#show-{seq}")
    await expect(page.locator("#dl-payload")).to_contain_text(estate.bad_event_id)
    await page.click("#replay-one")
    await expect(page.locator("#replayed")).to_have_text(str(seq))
    # Replayed and removed; the event still names an unknown sku, so it comes back as a new letter.
    await expect(page.locator(f'#dead-letters tr[data-seq="{seq}"]')).to_have_count(0)
    await shot(page, "dead-letters-replayed")


async def test_switch_to_chinese_and_it_is_remembered(page: Page, estate: Estate) -> None:
    assert have_cjk_font(), "no CJK font: run `make browser` (fonts-noto-cjk)"
    await sign_in(page, estate, estate.admin_token)
    await page.click("#lang-switch")
    await expect(page.locator("h1")).to_have_text("库存浏览")
    await expect(page.locator("#nav-history")).to_have_text("库存流水")
    assert await page.evaluate("document.documentElement.lang") == "zh-Hans"
    await page.goto(f"{estate.url}/charts")  # a new page load: the choice is remembered
    await expect(page.locator("#nav-charts")).to_have_text("图表")
    await page.goto(f"{estate.url}/stock")
    await shot(page, "stock-zh")
    # The Chinese label is drawn with a CJK font (its width is that of real glyphs, wider than
    # the same number of Latin letters), not left at zero or boxes of the fallback font.
    width = await page.evaluate(
        "() => { const s = document.createElement('span'); s.style.font = '32px sans-serif';"
        " s.textContent = '库存浏览'; document.body.appendChild(s); const w = s.getBoundingClientRect().width;"
        " s.remove(); return w; }"
    )
    assert width >= 4 * 28, f"CJK text is {width}px wide: no CJK font renders it"
    await page.click("#lang-switch")
    await expect(page.locator("h1")).to_have_text("Stock explorer")


async def test_a_clerk_sees_their_shelves_only(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.clerk_token)
    await expect(page.locator("#subject")).to_have_text("clerk-bos")
    tree = page.locator("#org-tree")
    await expect(tree.locator("a.site")).to_have_count(1)
    await expect(tree.locator('a[data-site="BOS"] + .num')).to_have_text("435")  # shelves A only, not B
    await expect(tree).not_to_contain_text("NYC")
    await expect(tree).not_to_contain_text("LA")
    await page.goto(f"{estate.url}/stock?f=1&by_site=1&site=NYC,LA")
    await expect(page.locator("#total-qty")).to_have_text("0")
    await page.goto(f"{estate.url}/stock?f=1&by_site=1&group=bin&bin_depth=1&site=BOS")
    assert await cell_texts(page, '#stock-table td[data-col="bin"]') == ["A"]
    await page.click("#nav-deadletters")
    await expect(page.locator("#problem")).to_contain_text("PERMISSION_DENIED")
    await shot(page, "clerk-dead-letters-denied")


async def _walk_pages(page: Page, first_url: str) -> list[str]:
    """Every page of a stock table grouped by lot, by its `next page` links: the lots shown."""
    await page.goto(first_url)
    lots: list[str] = []
    for _ in range(10):
        shown = await cell_texts(page, '#stock-table td[data-col="lot"]')
        assert 0 < len(shown) <= PAGE_ROWS
        lots.extend(shown)
        if await page.locator("#stock-next").count() == 0:
            return lots
        await page.click("#stock-next")
        await expect(page.locator("#stock-first")).to_be_visible()
        await expect(page.locator('#stock-table td[data-col="lot"]').first).not_to_have_text(shown[0])
    raise AssertionError("the pages never ended")


async def test_the_stock_table_pages_and_its_total_covers_every_page(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.admin_token)
    url = f"{estate.url}/stock?f=1&by_site=1&site={PAGED_SITE.site}&group=lot"
    lots = await _walk_pages(page, url)
    assert lots == [f"PL-{n:04d}" for n in range(PAGED_LOTS)]  # each lot once, in order
    await expect(page.locator("#total-qty")).to_have_text(str(PAGED_LOTS))  # the last page: still every page
    await shot(page, "stock-last-page")
    await page.goto(url)
    await expect(page.locator("#total-qty")).to_have_text(str(PAGED_LOTS))  # the first page: the same


async def test_a_shelf_clerk_sees_their_shelves_on_every_page(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.paged_clerk_token)
    await expect(page.locator("#subject")).to_have_text("clerk-pgs")
    url = f"{estate.url}/stock?f=1&by_site=1&site={PAGED_SITE.site}&group=lot&group=bin&bin_depth=1"
    lots = await _walk_pages(page, url)
    assert lots == [f"PL-{n:04d}" for n in range(0, PAGED_LOTS, 2)]  # shelf A only, on every page
    await expect(page.locator("#total-qty")).to_have_text(str(PAGED_LOTS // 2))
    assert set(await cell_texts(page, '#stock-table td[data-col="bin"]')) == {"A"}
