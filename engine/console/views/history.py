"""Movements (SearchMovements, paged), the balance as of a time (a slider over the last
days, GetBalanceAsOf) and a lot's trace (TraceLot): history as ClickHouse answers it.

The slider's fragment (/history/asof) is what htmx fetches while the reader slides: the
same view renders it inside the full page on first load.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import history_pb2 as hpb
from engine.console.api import ApiProblem
from engine.console.forms import FormProblem, HistoryForm, parse_history
from engine.console.pages import Console, Page, with_default_site

_DAY_MS = 86_400_000
SLIDER_STEP_MS = 60_000  # one minute: finer than anyone can slide, coarse enough to cache


def _dimension_name(value: int) -> str:
    return hpb.HistoryDimension.Name(value).removeprefix("HISTORY_DIMENSION_").lower()


def _balance_rows(answer: hpb.GetBalanceAsOfResponse) -> tuple[list[str], list[tuple[list[str], int, int]]]:
    columns = [_dimension_name(g.dimension) for g in answer.rows[0].group] if answer.rows else []
    return columns, [([g.value for g in r.group], r.qty, r.held) for r in answer.rows]


def _slider(form: HistoryForm, now_ms: int) -> tuple[int, int, int]:
    """(start, end, value) of the as-of slider, whole minutes."""
    end = now_ms - now_ms % SLIDER_STEP_MS + SLIDER_STEP_MS
    start = end - form.window_days * _DAY_MS
    value = form.as_of_ms or end
    if not start <= value <= end:
        raise FormProblem("as_of_ms", "must lie within the slider's window")
    return start, end, value


async def history_page(console: Console, request: Request, page: Page) -> Response:
    form = parse_history(request.query_params)
    start, end, value = _slider(form, console.clock_ms())
    try:
        movements, balance = await asyncio.gather(
            console.api.search_movements(page.token, form.search_request()),
            console.api.balance_as_of(page.token, form.as_of_request(value)),
        )
    except ApiProblem as problem:
        return await with_default_site(console, request, page, problem)
    columns, rows = _balance_rows(balance)
    return console.render(
        request,
        page,
        "history.html",
        form=form,
        movements=movements.movements,
        next_query=form.query(cursor=movements.next_cursor) if movements.next_cursor else "",
        slider=(start, end, value, SLIDER_STEP_MS),
        as_of_ms=value,
        balance_columns=columns,
        balance_rows=rows,
    )


async def as_of_fragment(console: Console, request: Request, page: Page) -> Response:
    form = parse_history(request.query_params)
    _start, _end, value = _slider(form, console.clock_ms())
    balance = await console.api.balance_as_of(page.token, form.as_of_request(value))
    columns, rows = _balance_rows(balance)
    return console.render(request, page, "asof.html", as_of_ms=value, balance_columns=columns, balance_rows=rows)


async def trace_page(console: Console, request: Request, page: Page) -> Response:
    form = parse_history(request.query_params)
    trace = None
    if form.lot:
        trace = await console.api.trace_lot(page.token, hpb.TraceLotRequest(lot_id=form.lot, sku=form.sku, limit=500))
    return console.render(request, page, "trace.html", form=form, trace=trace)
