"""The transfers panel over plain HTTP against the same real engine: a site manager sees a
request and approves it on the page; the engine's flow decides (a requester without the
role is refused, in the engine's words); a clerk sees no transfer outside their grant; the
decision form needs its CSRF token; a bad filter is a 400 naming the field."""

from __future__ import annotations

import httpx
import pytest

from engine.api.auth import mint_token
from engine.api.client import LotwiseClient
from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
from engine.api.gen.lotwise.v1 import transfers_pb2_grpc as tpb_grpc
from tests.browser.conftest import Estate
from tests.browser.test_console_http import csrf_in, signed_in
from tests.conftest import TEST_SECRET_FILE

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.ray]


def token(subject: str, groups: list[str]) -> str:
    return mint_token(TEST_SECRET_FILE.read_bytes().strip(), subject, groups, ttl_s=3_600)


async def request_transfer(estate: Estate, transfer_id: str) -> None:
    async with LotwiseClient(estate.engine.grpc_address, token=token("ana", ["admin"]), timeout_s=30) as ana:
        line = tpb.TransferLine(sku="GLU", qty=10)
        create = tpb.CreateTransferRequest(
            request_id=f"{transfer_id}-c", transfer_id=transfer_id, from_site="BOS", to_site="NYC", lines=[line]
        )
        await tpb_grpc.TransfersStub(ana.channel).CreateTransfer(create, metadata=ana.metadata)


async def decide(client: httpx.AsyncClient, transfer_id: str, decision: str, csrf: str = "") -> httpx.Response:
    page = await client.get("/transfers")
    form = {"transfer_id": transfer_id, "decision": decision, "note": "ok", "csrf": csrf or csrf_in(page.text)}
    return await client.post("/transfers/decide", data=form)


async def test_a_site_manager_approves_on_the_page(estate: Estate) -> None:
    await request_transfer(estate, "CON-T1")
    ben = await signed_in(estate.url, token("ben", ["admin", "site_manager"]))
    try:
        listed = await ben.get("/transfers", params={"state": "requested"})
        assert listed.status_code == 200
        assert 'data-transfer="CON-T1"' in listed.text
        assert 'value="approve"' in listed.text
        decided = await decide(ben, "CON-T1", "approve")
        assert decided.status_code == 200, decided.text
        assert 'id="decided-state">approved<' in decided.text
        again = await ben.get("/transfers", params={"state": "approved"})
        assert 'data-transfer="CON-T1"' in again.text
    finally:
        await ben.aclose()


async def test_the_engine_decides_who_may_approve_and_the_form_is_guarded(estate: Estate) -> None:
    await request_transfer(estate, "CON-T2")
    ana = await signed_in(estate.url, token("ana", ["admin"]))  # the requester, without the role
    try:
        refused = await decide(ana, "CON-T2", "approve")
        assert refused.status_code == 403, refused.text
        assert "site_manager" in refused.text
        forged = await decide(ana, "CON-T2", "approve", csrf="not-the-token")
        assert forged.status_code == 403
        bad = await ana.get("/transfers", params={"state": "no such/state"})
        assert bad.status_code == 400
        assert "state" in bad.text
        still = await ana.get("/transfers", params={"state": "requested"})
        assert 'data-transfer="CON-T2"' in still.text
    finally:
        await ana.aclose()


async def test_a_clerk_sees_no_transfer_outside_their_grant(estate: Estate) -> None:
    await request_transfer(estate, "CON-T3")
    clerk = await signed_in(estate.url, estate.clerk_token)  # BOS shelves A only: not the whole site
    try:
        page = await clerk.get("/transfers")
        assert page.status_code == 200
        assert "data-transfer=" not in page.text
    finally:
        await clerk.aclose()
