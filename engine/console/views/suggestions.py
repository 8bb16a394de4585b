"""Replenishment suggestions (issue 14, issue 17 item 2): the suggestions the reader may
read, a page at a time, and one pair's key-parameter panel — every number the proposal was
made of and the rules that shaped it — with accept / reject / override. Everything goes
through lotwise.v1.Replenishment as the reader: `read` lists and explains, `plan` decides,
and a decision on a version that is no longer current is refused by the engine."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import replenishment_pb2 as rpb
from engine.console.forms import SUGGESTION_STATES, parse_pair, parse_suggestion_decision, parse_suggestions
from engine.console.pages import Console, Page
from engine.console.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, same_origin

PAGE_SUGGESTIONS = 50


async def list_page(console: Console, request: Request, page: Page) -> Response:
    form = parse_suggestions(request.query_params)
    listing = await console.api.list_suggestions(
        page.token,
        rpb.ListSuggestionsRequest(
            site=form.site,
            sku=form.sku,
            state=form.state,
            flagged_only=form.flagged_only,
            page_size=PAGE_SUGGESTIONS,
            page_token=form.page_token,
        ),
    )
    return console.render(request, page, "suggestions.html", listing=listing, form=form, states=SUGGESTION_STATES)


async def panel_page(console: Console, request: Request, page: Page) -> Response:
    sku, site = parse_pair(request.query_params)
    suggestion = await console.api.explain_suggestion(page.token, sku, site)
    return console.render(request, page, "suggestion.html", s=suggestion, p=suggestion.panel, decided=False)


async def decide(console: Console, request: Request, page: Page) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    submitted = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, ""))
    if not same_origin(request) or not csrf_ok(request, submitted):
        return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
    d = parse_suggestion_decision({k: str(v) for k, v in form.items()})
    call: rpb.DecideSuggestionRequest | rpb.OverrideSuggestionRequest
    if d.decision == "override":
        call = rpb.OverrideSuggestionRequest(sku=d.sku, site=d.site, version=d.version, qty=d.qty, reason=d.reason)
    else:
        call = rpb.DecideSuggestionRequest(sku=d.sku, site=d.site, version=d.version, reason=d.reason)
    suggestion = await console.api.decide_suggestion(page.token, d.decision, call)
    return console.render(request, page, "suggestion.html", s=suggestion, p=suggestion.panel, decided=True)
