"""Transfers and approvals (issue 13 item 2): the transfers the reader may see, a page at a
time, and approve / reject for those waiting on the reader. The engine decides everything —
who may approve in which state, no self-approval, grants at the source — exactly as for any
gRPC caller; a refusal comes back as the page's problem, in the engine's words."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import transfers_pb2 as tpb
from engine.console.forms import parse_decision, parse_transfers
from engine.console.pages import Console, Page
from engine.console.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, same_origin

PAGE_TRANSFERS = 50
STATES = ("", "requested", "pending_regional", "approved", "shipped", "received", "rejected", "cancelled")
OPEN_STATES = frozenset({"approved", "shipped", "received", "rejected", "cancelled"})  # nothing left to approve


async def list_page(console: Console, request: Request, page: Page, decided: tpb.Transfer | None = None) -> Response:
    form = parse_transfers(request.query_params)
    listing = await console.api.list_transfers(
        page.token,
        tpb.ListTransfersRequest(
            site=form.site, state=form.state, page_size=PAGE_TRANSFERS, page_token=form.page_token
        ),
    )
    return console.render(
        request,
        page,
        "transfers.html",
        listing=listing,
        form=form,
        states=STATES,
        settled=OPEN_STATES,
        decided=decided,
        total_qty=lambda t: sum(x.qty for x in t.lines),
        waited_ms=lambda t: t.state_times[-1].duration_ms if t.state_times else 0,
    )


async def decide(console: Console, request: Request, page: Page) -> Response:
    form = await request.form(max_files=0, max_fields=8)
    submitted = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, ""))
    if not same_origin(request) or not csrf_ok(request, submitted):
        return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
    transfer_id, approve, note = parse_decision({k: str(v) for k, v in form.items()})
    # A fresh request id per click: a double click is a second decision the engine judges
    # against the state the first left (it cannot approve twice in one state).
    action = tpb.TransferActionRequest(request_id=f"console:{secrets.token_hex(8)}", transfer_id=transfer_id, note=note)
    decided = await console.api.decide_transfer(page.token, approve, action)
    return await list_page(console, request, page, decided)
