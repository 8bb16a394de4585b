"""Holds (issue 17 item 4): the holds the reader may see, by pair, site, state and expiry,
a page at a time (ListHolds: each hold with only the parts the reader's grants cover), and
release from the row. The engine decides who may release (`reserve` at every part's site)."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import inventory_pb2 as pb
from engine.console.forms import HOLD_STATES, parse_hold_release, parse_holds
from engine.console.pages import Console, Page
from engine.console.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, same_origin

PAGE_HOLDS = 50
_STATE_OF = {name: pb.HoldState.Value(f"HOLD_STATE_{name.upper()}") for name in HOLD_STATES if name}


def state_name(state: int) -> str:
    return pb.HoldState.Name(state).removeprefix("HOLD_STATE_").lower()


async def list_page(console: Console, request: Request, page: Page, released: pb.Hold | None = None) -> Response:
    form = parse_holds(request.query_params)
    listing = await console.api.list_holds(
        page.token,
        pb.ListHoldsRequest(
            sku=form.sku,
            site=form.site,
            states=[_STATE_OF[form.state]] if form.state else [],  # type: ignore[list-item]
            expiring_before_ms=form.expiring_before_ms,
            page_size=PAGE_HOLDS,
            page_token=form.page_token,
        ),
    )
    return console.render(
        request,
        page,
        "holds.html",
        listing=listing,
        form=form,
        states=HOLD_STATES,
        released=released,
        state_name=state_name,
        active=pb.HOLD_STATE_ACTIVE,
    )


async def release(console: Console, request: Request, page: Page) -> Response:
    form = await request.form(max_files=0, max_fields=4)
    submitted = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, ""))
    if not same_origin(request) or not csrf_ok(request, submitted):
        return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
    hold_id = parse_hold_release({k: str(v) for k, v in form.items()})
    # A fresh request id per click: releasing a released hold again is answered by the engine.
    action = pb.ReleaseRequest(request_id=f"console:{secrets.token_hex(8)}", hold_id=hold_id, doc_ref="console")
    released = await console.api.release_hold(page.token, action)
    return await list_page(console, request, page, released.hold)
