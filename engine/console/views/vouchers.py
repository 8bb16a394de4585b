"""The voucher sandbox (issue 16, issue 17 item 2): the pool to review (pending + annotated, one
ListVouchers call) and the other states, a page at a time, each voucher with its lines and notes;
annotate, approve or reject (with a reason) from the row. Everything goes through
lotwise.v1.Accounting as the reader: `read_cost` lists, `approve_voucher` approves or rejects, and
the engine refuses an approval by the voucher's own preparer (VOUCHER_SELF_APPROVAL) — the page
only shows its answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import finance_pb2 as fpb
from engine.console.forms import VOUCHER_STATES, parse_voucher_action, parse_vouchers
from engine.console.pages import Console, Page
from engine.console.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, same_origin

PAGE_VOUCHERS = 50
SETTLED = frozenset({"approved", "posted", "rejected"})  # nothing left to review
REVIEW_POOL = ("pending", "annotated")  # the form's "review": what is not settled yet


def list_request(state: str, company: str, page_token: str) -> fpb.ListVouchersRequest:
    """One ListVouchers call for the form's state; the review pool asks for both its states."""
    states = REVIEW_POOL if state == "review" else ()
    return fpb.ListVouchersRequest(
        state="" if states else state,
        states=states,
        company=company,
        page_size=PAGE_VOUCHERS,
        page_token=page_token,
    )


async def list_page(console: Console, request: Request, page: Page, acted: fpb.Voucher | None = None) -> Response:
    form = parse_vouchers(request.query_params)
    listing = await console.api.list_vouchers(page.token, list_request(form.state, form.company, form.page_token))
    return console.render(
        request, page, "vouchers.html", listing=listing, form=form, states=VOUCHER_STATES, settled=SETTLED, acted=acted
    )


async def act(console: Console, request: Request, page: Page) -> Response:
    form = await request.form(max_files=0, max_fields=6)
    submitted = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, ""))
    if not same_origin(request) or not csrf_ok(request, submitted):
        return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
    voucher_id, action, text = parse_voucher_action({k: str(v) for k, v in form.items()})
    acted = await console.api.act_on_voucher(page.token, action, voucher_id, text)
    return await list_page(console, request, page, acted)
