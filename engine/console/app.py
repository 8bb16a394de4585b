"""The web console: a Starlette app of server-rendered pages (Jinja2, htmx vendored under
/static, no CDN), every one of them answered by calling the engine's gRPC API as the
signed-in reader (engine.console.api). engine.bootstrap.console serves it with uvicorn in
the engine's own event loop, on 127.0.0.1, with a bound on concurrent requests.

    app = console_app(EngineApi(channel_to("127.0.0.1:50051")))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.console.api import ApiProblem, EngineApi
from engine.console.i18n import LANGS
from engine.console.pages import Console, Page, View, finish, wall_clock_ms
from engine.console.security import (
    CSRF_FIELD,
    MAX_TOKEN_CHARS,
    SUBJECT_COOKIE,
    TOKEN_COOKIE,
    clear_token_cookie,
    csrf_ok,
    same_origin,
    set_lang_cookie,
    set_token_cookie,
)
from engine.console.views import alerts, charts, deadletters, history, holds, stock, suggestions, transfers, vouchers

log = structlog.get_logger("lotwise.console")
STATIC = Path(__file__).parent / "static"
_PANELS = (
    "stock",
    "history",
    "charts",
    "holds",
    "suggestions",
    "vouchers",
    "alerts",
    "transfers",
    "deadletters",
    "login",
    "logout",
    "lang",
    "static",
    "healthz",
)


class ConsoleMetrics:
    """Requests by panel and HTTP status, and how long they took (Prometheus)."""

    _by_registry: dict[int, ConsoleMetrics] = {}  # noqa: RUF012 - one set of collectors per registry

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "lotwise_console_request_seconds",
            "Console page time, by panel",
            ["panel"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0),
        )
        self.requests = Counter(
            "lotwise_console_requests_total",
            "Console requests, by panel and HTTP status",
            ["panel", "status"],
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry = REGISTRY) -> ConsoleMetrics:
        """The collectors of `registry`, registered once however many consoles a process runs."""
        found = cls._by_registry.get(id(registry))
        if found is None:
            found = cls._by_registry[id(registry)] = cls(registry)
        return found


def _panel(path: str) -> str:
    first = path.strip("/").split("/", 1)[0]
    return first if first in _PANELS else ("stock" if not first else "other")


class ObservedApp:
    """Times and counts every request, and logs it as one structured line."""

    def __init__(self, app: ASGIApp, metrics: ConsoleMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            panel = _panel(scope.get("path", ""))
            self.metrics.seconds.labels(panel).observe(elapsed)
            self.metrics.requests.labels(panel, str(status[0])).inc()
            level = log.info if status[0] >= 400 else log.debug
            level(
                "console request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status[0],
                ms=round(elapsed * 1000, 1),
            )


def _local_path(target: str) -> str:
    """Only a path of this console may be a redirect target (no open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/stock"


def _routes(console: Console) -> list[Route | Mount]:
    def bind(handler: Callable[..., object]) -> Callable[[Request], object]:
        async def view(request: Request, page: Page) -> Response:
            return await handler(console, request, page)  # type: ignore[misc]

        return console.view(view)

    async def login_form(request: Request) -> Response:
        page = console.page_of(request)
        return console.render(request, page, "login.html", failed=False, expired="expired" in request.query_params)

    async def login(request: Request) -> Response:
        page = console.page_of(request)
        form = await request.form(max_files=0, max_fields=4)
        token = str(form.get("token") or "").strip()
        if not same_origin(request) or not csrf_ok(request, str(form.get(CSRF_FIELD) or "")):
            return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
        if not token or len(token) > MAX_TOKEN_CHARS:
            return console.render(request, page, "login.html", 400, failed=True, expired=False)
        try:
            who = await console.api.whoami(token)
        except ApiProblem as problem:
            status = 401 if problem.code == "UNAUTHENTICATED" else problem.http_status
            return console.render(request, page, "login.html", status, failed=True, expired=False)
        response = RedirectResponse("/stock", status_code=303)
        set_token_cookie(response, request, token)
        response.set_cookie(SUBJECT_COOKIE, who.subject or "-", httponly=True, samesite="strict", path="/")
        finish(response, request, page)
        log.info("console sign-in", subject=who.subject)
        return response

    async def logout(request: Request) -> Response:
        page = console.page_of(request)
        form = await request.form(max_files=0, max_fields=2)
        if not same_origin(request) or not csrf_ok(request, str(form.get(CSRF_FIELD) or "")):
            return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
        response = RedirectResponse("/login", status_code=303)
        clear_token_cookie(response, request)
        response.delete_cookie(SUBJECT_COOKIE, path="/")
        return response

    async def switch_lang(request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang not in LANGS:
            return PlainTextResponse(f"unknown language {lang!r}: one of {', '.join(LANGS)}", status_code=404)
        response = RedirectResponse(_local_path(request.query_params.get("next", "/stock")), status_code=303)
        set_lang_cookie(response, request, lang)
        return response

    async def root(request: Request) -> Response:
        target = "/stock" if request.cookies.get(TOKEN_COOKIE) else "/login"
        return RedirectResponse(target, status_code=303)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return [
        Route("/", root),
        Route("/healthz", healthz),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang/{lang}", switch_lang),
        Route("/stock", bind(stock.stock_page)),
        Route("/history", bind(history.history_page)),
        Route("/history/asof", bind(history.as_of_fragment)),
        Route("/history/trace", bind(history.trace_page)),
        Route("/charts", bind(charts.charts_page)),
        Route("/alerts", bind(alerts.list_page), methods=["GET"]),
        Route("/alerts/act", bind(alerts.act), methods=["POST"]),
        Route("/transfers", bind(transfers.list_page), methods=["GET"]),
        Route("/transfers/decide", bind(transfers.decide), methods=["POST"]),
        Route("/holds", bind(holds.list_page), methods=["GET"]),
        Route("/holds/release", bind(holds.release), methods=["POST"]),
        Route("/suggestions", bind(suggestions.list_page), methods=["GET"]),
        Route("/suggestions/panel", bind(suggestions.panel_page), methods=["GET"]),
        Route("/suggestions/decide", bind(suggestions.decide), methods=["POST"]),
        Route("/vouchers", bind(vouchers.list_page), methods=["GET"]),
        Route("/vouchers/act", bind(vouchers.act), methods=["POST"]),
        Route("/deadletters", bind(deadletters.list_page), methods=["GET"]),
        Route("/deadletters/replay", bind(deadletters.replay), methods=["POST"]),
        Route("/deadletters/{seq}", bind(deadletters.show_page)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def console_app(
    api: EngineApi,
    *,
    metrics: ConsoleMetrics | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> ASGIApp:
    """The console over `api`; its metrics in the process registry unless told otherwise."""
    console = Console(api, clock_ms)
    app = Starlette(routes=_routes(console))
    return ObservedApp(app, metrics or ConsoleMetrics.of())


__all__ = ["ConsoleMetrics", "View", "console_app"]
