"""The holds, suggestions and voucher panels clicked through in headless chromium: release
a hold from its row, open a suggestion's key-parameter panel and accept it, annotate and
approve a voucher, all in Chinese once; a screenshot of each under build/test-artifacts/browser/.
Runs after tests/browser/test_console_panels.py on the same estate (it uses what is left)."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Estate, sign_in
from tests.browser.test_console_browser import shot

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.ray]


async def test_release_a_hold_from_its_row(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.admin_token)
    await page.click("#nav-holds")
    await expect(page.locator("h1")).to_have_text("Holds")
    await page.select_option('select[name="state"]', "active")
    await page.fill('input[name="site"]', "NYC")
    await page.click('form.filters button[type="submit"]')
    row = page.locator('tr[data-hold="CON-H-NYC"]')
    await expect(row).to_be_visible()
    await shot(page, "holds")
    await row.locator("button.release").click()
    await expect(page.locator("#released-state")).to_have_text("released")
    await expect(page.locator('tr[data-hold="CON-H-NYC"] td.state')).to_have_count(0)


async def test_open_a_suggestion_s_key_parameters_and_accept(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.admin_token)
    await page.click("#nav-suggestions")
    row = page.locator('tr[data-suggestion="SUG@SUP2"]')
    await expect(row).to_be_visible()
    await row.locator("a.open-panel").click()
    await expect(page).to_have_url(re.compile(r"/suggestions/panel\?sku=SUG&site=SUP2"))
    await expect(page.locator("#key-parameters")).to_contain_text("Reorder point")
    await shot(page, "suggestion-panel")
    await page.click("#accept")
    await expect(page.locator("#sug-state")).to_have_text("accepted")
    await expect(page.locator("#decide")).to_have_count(0)


async def test_annotate_and_approve_a_voucher_in_chinese(page: Page, estate: Estate) -> None:
    await sign_in(page, estate, estate.admin_token)
    await page.click("#lang-switch")
    await page.click("#nav-vouchers")  # the pool to review (pending + annotated)
    await expect(page.locator("h1")).to_have_text("凭证沙盒")
    await expect(page.locator('select[name="state"]')).to_have_value("review")
    await page.select_option('select[name="state"]', "")  # every state: the voucher stays in view
    await page.click('form.filters button[type="submit"]')
    # The filtered page replaces this one: find the row only once it is there, or the note
    # goes into the old page's input and the new page's form is sent empty.
    await expect(page).to_have_url(re.compile(r"/vouchers\?state=&"))
    await expect(page.locator('select[name="state"]')).to_have_value("")
    row = page.locator("tr[data-voucher]:has(button.annotate)").first
    voucher_id = await row.get_attribute("data-voucher")
    assert voucher_id
    await row.locator('input[name="text"]').fill("已核对采购单")
    await row.locator("button.annotate").click()
    await expect(page.locator("#acted-state")).to_have_text("已批注")
    again = page.locator(f'tr[data-voucher="{voucher_id}"]')
    await again.locator("summary").click()
    await expect(again.locator("p.note")).to_contain_text("已核对采购单")
    await shot(page, "vouchers-zh")
    await again.locator("button.approve").click()
    await expect(page.locator("#acted-state")).to_have_text("已审核")
    await page.click("#lang-switch")
