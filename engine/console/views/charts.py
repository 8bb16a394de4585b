"""Consumption (GetConsumptionSeries) and expiry exposure (GetExpiryExposure) as charts the
server draws in SVG: a line of daily consumption, bars of quantity by days left."""

from __future__ import annotations

import asyncio

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from engine.console.api import ApiProblem
from engine.console.forms import parse_charts
from engine.console.pages import Console, Page, with_default_site
from engine.console.svg import bar_chart, line_chart


async def charts_page(console: Console, request: Request, page: Page) -> Response:
    form = parse_charts(request.query_params)
    now_ms = console.clock_ms()
    try:
        series, exposure = await asyncio.gather(
            console.api.consumption(page.token, form.consumption_request(now_ms)),
            console.api.expiry_exposure(page.token, form.exposure_request(now_ms)),
        )
    except ApiProblem as problem:
        return await with_default_site(console, request, page, problem)
    t = page.t
    consumption_points = [(t.iso_day(p.day), p.qty) for p in series.points]
    exposure_points = [
        (t("expired") if total.days_left < 0 else str(total.days_left), total.qty) for total in exposure.totals
    ]
    return console.render(
        request,
        page,
        "charts.html",
        form=form,
        # Markup: the SVG is built here, every label in it escaped (engine.console.svg).
        consumption_svg=Markup(line_chart(t("consumption"), consumption_points, t.number)),
        exposure_svg=Markup(bar_chart(t("expiry_exposure"), exposure_points, t.number)),
        consumption_total=sum(p.qty for p in series.points),
        exposure=exposure,
    )
