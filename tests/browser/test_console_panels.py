"""Holds, replenishment suggestions and the voucher sandbox over plain HTTP against the same
real engine: each panel lists what the reader may see and acts from the row through its own
gRPC service (ListHolds/Release, lotwise.v1.Replenishment, lotwise.v1.Accounting); the
engine decides who may act (a voucher is never approved by its preparer); every form needs
its CSRF token; bad input is a 400 naming the field; and the authorization matrix: a
shelf clerk, a site reader and a planner of one site see nothing outside their grants."""

from __future__ import annotations

import re

import pytest

from engine.api.auth import mint_token
from tests.browser.conftest import Estate
from tests.browser.test_console_http import csrf_in, signed_in
from tests.conftest import TEST_SECRET_FILE

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.ray]


def token(subject: str, groups: list[str]) -> str:
    return mint_token(TEST_SECRET_FILE.read_bytes().strip(), subject, groups, ttl_s=3_600)


def holds_in(html: str) -> list[str]:
    return re.findall(r'data-hold="([^"]+)"', html)


async def test_holds_are_listed_by_site_and_state_and_released_from_the_row(estate: Estate) -> None:
    admin = await signed_in(estate.url, estate.admin_token)
    try:
        every = await admin.get("/holds", params={"state": "active"})
        assert every.status_code == 200, every.text
        assert {"CON-H-A", "CON-H-B", "CON-H-NYC"} <= set(holds_in(every.text))
        nyc = await admin.get("/holds", params={"site": "NYC"})
        assert holds_in(nyc.text) == ["CON-H-NYC"]
        soon = await admin.get("/holds", params={"state": "active", "expiring_within_h": "2"})
        assert "CON-H-A" in holds_in(soon.text)
        forged = await admin.post("/holds/release", data={"hold_id": "CON-H-B", "csrf": "x" * 43})
        assert forged.status_code == 403
        form = {"hold_id": "CON-H-B", "csrf": csrf_in(every.text)}
        released = await admin.post("/holds/release", data=form)
        assert released.status_code == 200, released.text
        assert 'id="released-state">released<' in released.text
        active = await admin.get("/holds", params={"state": "active"})
        assert "CON-H-B" not in holds_in(active.text)
        assert "CON-H-B" in holds_in((await admin.get("/holds", params={"state": "released"})).text)
        for bad, field in (({"state": "melted"}, "state"), ({"expiring_within_h": "soon"}, "expiring_within_h")):
            reply = await admin.get("/holds", params=bad)
            assert reply.status_code == 400
            assert f"<code>{field}</code>" in reply.text
        missing = await admin.post("/holds/release", data={"hold_id": "", "csrf": csrf_in(every.text)})
        assert missing.status_code == 400
    finally:
        await admin.aclose()


async def test_a_planner_reads_the_key_parameters_and_decides(estate: Estate) -> None:
    planner = await signed_in(estate.url, token("planner-sup1", []))
    try:
        listing = await planner.get("/suggestions", params={"state": "open"})
        assert listing.status_code == 200, listing.text
        assert re.findall(r'data-suggestion="([^"]+)"', listing.text) == ["SUG@SUP1"]  # not SUP2
        panel = await planner.get("/suggestions/panel", params={"sku": "SUG", "site": "SUP1"})
        assert panel.status_code == 200, panel.text
        assert 'id="key-parameters"' in panel.text
        assert 'id="rop"' in panel.text
        version = re.search(r'name="version" value="(\d+)"', panel.text)
        assert version
        other = await planner.get("/suggestions/panel", params={"sku": "SUG", "site": "SUP2"})
        assert other.status_code in (403, 404)  # another site's suggestion: not shown
        assert 'id="key-parameters"' not in other.text
        decide = {"sku": "SUG", "site": "SUP1", "version": version.group(1), "csrf": csrf_in(panel.text)}
        no_reason = await planner.post("/suggestions/decide", data={**decide, "decision": "reject"})
        assert no_reason.status_code == 400
        assert "<code>reason</code>" in no_reason.text
        forged = await planner.post("/suggestions/decide", data={**decide, "decision": "accept", "csrf": "x" * 43})
        assert forged.status_code == 403
        overridden = await planner.post(
            "/suggestions/decide", data={**decide, "decision": "override", "qty": "70", "reason": "promo week"}
        )
        assert overridden.status_code == 200, overridden.text
        assert 'id="sug-state">overridden<' in overridden.text
        assert 'id="decided-qty">70<' in overridden.text
        again = await planner.post("/suggestions/decide", data={**decide, "decision": "accept"})
        assert again.status_code == 409  # decided already: the engine's answer
        assert "SUGGESTION_DECIDED" in again.text
    finally:
        await planner.aclose()


async def test_the_voucher_sandbox_annotates_approves_and_never_by_the_preparer(estate: Estate) -> None:
    preparer = await signed_in(estate.url, token("system:finance", ["admin"]))  # who prepared them
    admin = await signed_in(estate.url, estate.admin_token)
    try:
        pool = await admin.get("/vouchers", params={"state": "pending"})
        assert pool.status_code == 200, pool.text
        ids = re.findall(r'data-voucher="([^"]+)"', pool.text)
        assert len(ids) >= 2, "the priced receipts and their issues made vouchers"
        first, second = ids[0], ids[1]
        csrf = csrf_in(pool.text)
        empty_note = await admin.post("/vouchers/act", data={"voucher_id": first, "action": "annotate", "csrf": csrf})
        assert empty_note.status_code == 400
        assert "<code>text</code>" in empty_note.text
        noted = await admin.post(
            "/vouchers/act", data={"voucher_id": first, "action": "annotate", "text": "checked PO", "csrf": csrf}
        )
        assert noted.status_code == 200, noted.text
        assert 'id="acted-state">annotated<' in noted.text
        own = await preparer.get("/vouchers")  # opens on the pool to review: pending + annotated, one call
        pool_ids = re.findall(r'data-voucher="([^"]+)"', own.text)
        assert {first, second} <= set(pool_ids), "the annotated voucher stays in the pool with the pending"
        only_pending = await admin.get("/vouchers", params={"state": "pending"})
        assert first not in re.findall(r'data-voucher="([^"]+)"', only_pending.text)
        self_approved = await preparer.post(
            "/vouchers/act", data={"voucher_id": first, "action": "approve", "csrf": csrf_in(own.text)}
        )
        assert self_approved.status_code == 409, self_approved.text
        assert "VOUCHER_SELF_APPROVAL" in self_approved.text
        approved = await admin.post("/vouchers/act", data={"voucher_id": first, "action": "approve", "csrf": csrf})
        assert 'id="acted-state">approved<' in approved.text
        rejected = await admin.post(
            "/vouchers/act", data={"voucher_id": second, "action": "reject", "text": "wrong cost", "csrf": csrf}
        )
        assert 'id="acted-state">rejected<' in rejected.text
        settled_pool = re.findall(r'data-voucher="([^"]+)"', (await admin.get("/vouchers")).text)
        assert first not in settled_pool
        assert second not in settled_pool
        forged = await admin.post("/vouchers/act", data={"voucher_id": second, "action": "approve"})
        assert forged.status_code == 403
        bad = await admin.get("/vouchers", params={"state": "lost"})
        assert bad.status_code == 400
    finally:
        await preparer.aclose()
        await admin.aclose()


async def test_the_new_panels_show_nothing_outside_the_reader_s_grants(estate: Estate) -> None:
    """The authorization matrix over HTTP for holds, suggestions and vouchers."""
    clerk = await signed_in(estate.url, estate.clerk_token)  # BOS shelves A only
    viewer = await signed_in(estate.url, estate.viewer_token)  # read at BOS
    try:
        clerk_holds = await clerk.get("/holds")
        assert clerk_holds.status_code == 200
        assert set(holds_in(clerk_holds.text)) <= {"CON-H-A"}  # not shelf B, not NYC
        assert "CON-H-NYC" not in clerk_holds.text
        viewer_holds = await viewer.get("/holds")
        assert "CON-H-NYC" not in viewer_holds.text
        assert "NYC" not in re.sub(r"<(form|header).*?</\1>", "", viewer_holds.text, flags=re.S)
        for reader in (clerk, viewer):
            suggestions = await reader.get("/suggestions")
            assert suggestions.status_code in (200, 403)
            pairs = re.findall(r'data-suggestion="([^"]+)"', suggestions.text)
            assert all(pair.endswith("@BOS") for pair in pairs), pairs  # never SUP1, SUP2, NYC, LA
            if reader is clerk:  # a suggestion is the whole pair's: shelves alone do not show it
                assert pairs == []
            vouchers = await reader.get("/vouchers")  # no read_cost anywhere
            assert vouchers.status_code in (200, 403)
            assert "data-voucher=" not in vouchers.text
            page = await reader.get("/stock")
            forged = await reader.post(
                "/suggestions/decide",
                data={"sku": "SUG", "site": "SUP2", "version": "1", "decision": "accept", "csrf": csrf_in(page.text)},
            )
            assert forged.status_code == 403  # no `plan` at SUP2: refused, nothing decided
    finally:
        await clerk.aclose()
        await viewer.aclose()
