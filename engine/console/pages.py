"""What every panel shares: the signed-in caller, the language, rendering, refusals.

A view is `async def view(request, page) -> Response`; `Console.view` wraps it so that a
missing or refused token sends the reader to the sign-in page, an engine refusal becomes a
page that says what was refused (with the HTTP status of its gRPC code), and a bad form
value becomes a 400 naming the field. Nothing a caller typed ever becomes a 500.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from engine.console.api import ApiProblem, EngineApi
from engine.console.forms import FormProblem
from engine.console.i18n import Translator, lang_of
from engine.console.rollups import RollupCache
from engine.console.security import (
    LANG_COOKIE,
    SECURITY_HEADERS,
    SUBJECT_COOKIE,
    TOKEN_COOKIE,
    clear_token_cookie,
    csrf_of,
    set_csrf_cookie,
)

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class Page:
    """One request's reader: their token (never shown), language and CSRF token."""

    token: str
    t: Translator
    csrf: str
    new_csrf: bool
    subject: str = ""


View = Callable[[Request, Page], Awaitable[Response]]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Console:
    """The panels' shared parts: the engine API, the templates and the clock."""

    def __init__(self, api: EngineApi, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.api = api
        self.clock_ms = clock_ms
        self.rollups = RollupCache()  # per console: nothing kept between apps (or tests)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(("html",)), enable_async=False
        )

    def page_of(self, request: Request, token: str = "") -> Page:
        csrf, new = csrf_of(request)
        subject = request.cookies.get(SUBJECT_COOKIE, "")[:128] if token else ""
        return Page(token, Translator(lang_of(request.cookies.get(LANG_COOKIE))), csrf, new, subject)

    def render(self, request: Request, page: Page, template: str, status_code: int = 200, **context: Any) -> Response:
        html = self.env.get_template(template).render(
            t=page.t, page=page, request=request, path=request.url.path, **context
        )
        response = HTMLResponse(html, status_code=status_code)
        finish(response, request, page)
        return response

    def refusal(self, request: Request, page: Page, problem: ApiProblem | FormProblem) -> Response:
        if isinstance(problem, FormProblem):
            return self.render(request, page, "problem.html", 400, problem=None, form_problem=problem)
        if problem.code == "UNAUTHENTICATED":
            return to_login(request, expired=True)
        return self.render(request, page, "problem.html", problem.http_status, problem=problem, form_problem=None)

    def view(self, handler: View) -> Callable[[Request], Awaitable[Response]]:
        """A signed-in page: no token cookie → the sign-in page; refusals → a page that says why."""

        async def endpoint(request: Request) -> Response:
            token = request.cookies.get(TOKEN_COOKIE, "")
            if not token:
                return to_login(request)
            page = self.page_of(request, token)
            try:
                return await handler(request, page)
            except (ApiProblem, FormProblem) as problem:
                return self.refusal(request, page, problem)

        return endpoint


async def with_default_site(console: Console, request: Request, page: Page, problem: ApiProblem) -> Response:
    """History reads whole sites: a reader granted some sites only is refused a question about
    every site. Ask again about the first site they may see (a link away from the others), or
    show the refusal when they may see none."""
    if problem.code != "PERMISSION_DENIED" or request.query_params.get("site"):
        raise problem
    sites = await console.api.list_sites(page.token)
    if not sites.sites:
        raise problem
    params = dict(request.query_params)
    params["site"] = sites.sites[0].site
    return RedirectResponse(f"{request.url.path}?{urlencode(params)}", status_code=303)


def finish(response: Response, request: Request, page: Page) -> None:
    """Headers every console answer carries, and the CSRF cookie when it is new."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if page.new_csrf:
        set_csrf_cookie(response, request, page.csrf)


def to_login(request: Request, *, expired: bool = False) -> Response:
    """Back to the sign-in page (htmx follows HX-Redirect; a browser the 303)."""
    target = "/login?expired=1" if expired else "/login"
    if request.headers.get("hx-request") == "true":
        response: Response = Response(status_code=200, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    if expired:
        clear_token_cookie(response, request)
    return response
