"""The alerts panel over plain HTTP against the same real engine: the dead letter the estate
was seeded with raised an alert, which the admin sees and acknowledges on the page (the
engine records who); a shelf clerk sees no engine-wide alert; the form needs its CSRF token;
a bad filter is a 400 naming the field."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Estate
from tests.browser.test_console_http import csrf_in, signed_in

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.ray]


async def test_the_admin_acknowledges_the_dead_letter_alert_on_the_page(estate: Estate) -> None:
    admin = await signed_in(estate.url, estate.admin_token)
    try:
        page = await admin.get("/alerts", params={"kind": "dead_letter"})
        assert page.status_code == 200
        found = [line for line in page.text.splitlines() if "data-alert=" in line]
        assert found, page.text
        alert_id = found[0].split('data-alert="', 1)[1].split('"', 1)[0]
        forged = await admin.post("/alerts/act", data={"alert_id": alert_id, "action": "acknowledge", "csrf": "x"})
        assert forged.status_code == 403
        form = {"alert_id": alert_id, "action": "acknowledge", "note": "looking", "csrf": csrf_in(page.text)}
        acted = await admin.post("/alerts/act", data=form)
        assert acted.status_code == 200, acted.text
        assert 'id="acted-state">acknowledged<' in acted.text
        listed = await admin.get("/alerts", params={"state": "acknowledged", "kind": "dead_letter"})
        assert f'data-alert="{alert_id}"' in listed.text
        bad = await admin.get("/alerts", params={"state": "sleeping"})
        assert bad.status_code == 400
        assert "state" in bad.text
    finally:
        await admin.aclose()


async def test_a_clerk_sees_no_engine_wide_alert(estate: Estate) -> None:
    clerk = await signed_in(estate.url, estate.clerk_token)
    try:
        page = await clerk.get("/alerts", params={"kind": "dead_letter"})
        assert page.status_code == 200
        assert "data-alert=" not in page.text
    finally:
        await clerk.aclose()
