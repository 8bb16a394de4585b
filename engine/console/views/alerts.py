"""Alerts (issue 15 item 8): the ones the reader may see, by state, kind and site, and
acknowledge / close from the row. The engine scopes the list by the reader's grants and
decides who may act; the page only asks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import alerts_pb2 as lpb
from engine.console.forms import ALERT_KINDS, ALERT_STATES, parse_alert_action, parse_alerts
from engine.console.pages import Console, Page
from engine.console.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, same_origin

PAGE_ALERTS = 100


async def list_page(console: Console, request: Request, page: Page, acted: lpb.Alert | None = None) -> Response:
    form = parse_alerts(request.query_params)
    listing = await console.api.list_alerts(
        page.token,
        lpb.ListAlertsRequest(
            states=[form.state] if form.state else [],
            kinds=[form.kind] if form.kind else [],
            site=form.site,
            limit=PAGE_ALERTS,
        ),
    )
    return console.render(
        request, page, "alerts.html", listing=listing, form=form, states=ALERT_STATES, kinds=ALERT_KINDS, acted=acted
    )


async def act(console: Console, request: Request, page: Page) -> Response:
    form = await request.form(max_files=0, max_fields=8)
    submitted = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, ""))
    if not same_origin(request) or not csrf_ok(request, submitted):
        return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
    alert_id, close, note = parse_alert_action({k: str(v) for k, v in form.items()})
    acted = await console.api.act_on_alert(page.token, close, lpb.AlertActionRequest(alert_id=alert_id, note=note))
    return await list_page(console, request, page, acted)
