"""Dead letters (DESIGN.md §12): list, show one with its payload, replay — with the engine's
admin grant, which the engine checks on every call (a reader without it sees why)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from engine.api.gen.lotwise.v1 import admin_pb2 as apb
from engine.console.forms import FormProblem, parse_seq
from engine.console.pages import Console, Page
from engine.console.security import CSRF_FIELD, CSRF_HEADER, csrf_ok, same_origin

PAGE_LETTERS = 50
MAX_PAYLOAD_SHOWN = 64 * 1024  # bytes of a payload a page shows; the rest is cut, and says so
CODES = ("", "decode_error", "schema_violation", "unknown_reference", "invalid_value", "refused", "gave_up")


def _list_request(request: Request) -> apb.ListDeadLettersRequest:
    after_raw = request.query_params.get("after", "")
    code = request.query_params.get("code", "")
    if code not in CODES:
        raise FormProblem("code", f"{code!r} is not one of {', '.join(c for c in CODES if c)}")
    after = parse_seq(after_raw, "after") if after_raw else 0
    return apb.ListDeadLettersRequest(after_seq=after, limit=PAGE_LETTERS, code=code)


async def list_page(
    console: Console, request: Request, page: Page, outcome: apb.ReplayDeadLettersResponse | None = None
) -> Response:
    listing = await console.api.list_dead_letters(page.token, _list_request(request))
    return console.render(
        request,
        page,
        "deadletters.html",
        listing=listing,
        codes=CODES,
        outcome=outcome,
        code=request.query_params.get("code", ""),
    )


async def show_page(console: Console, request: Request, page: Page) -> Response:
    seq = parse_seq(request.path_params["seq"])
    answer = await console.api.get_dead_letter(page.token, seq)
    payload = bytes(answer.letter.payload)
    cut = len(payload) > MAX_PAYLOAD_SHOWN
    text = payload[:MAX_PAYLOAD_SHOWN].decode("utf-8", errors="replace")
    return console.render(
        request, page, "deadletter.html", letter=answer.letter, payload=text, cut=cut, size=len(payload)
    )


async def replay(console: Console, request: Request, page: Page) -> Response:
    form = await request.form(max_files=0, max_fields=1_100)
    submitted = str(form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, ""))
    if not same_origin(request) or not csrf_ok(request, submitted):
        return console.render(request, page, "problem.html", 403, problem=None, form_problem=None, csrf=True)
    raw = [str(v) for v in form.getlist("seq")]
    if not raw:
        raise FormProblem("seq", "choose at least one dead letter")
    if len(raw) > 1000:
        raise FormProblem("seq", "at most 1000 at once")
    seqs = [parse_seq(v) for v in raw]
    outcome = await console.api.replay_dead_letters(page.token, seqs)
    return await list_page(console, request, page, outcome)
