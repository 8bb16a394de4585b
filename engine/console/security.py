"""The console's session rules: where the token lives, and why a POST can be trusted.

- The bearer token is kept in an HttpOnly, SameSite=Strict cookie: page scripts cannot read
  it, and no other site's page can make the browser send it. `Secure` is set whenever the
  console is reached over https (behind a TLS proxy), never needed on 127.0.0.1.
- Every POST carries a CSRF token (a form field or the X-CSRF-Token header htmx sends)
  that must equal the `lotwise_csrf` cookie (double submit), and an Origin header, when the
  browser sends one, must be the console's own. Either failing answers 403 and changes nothing.
- Pages are never cached, never framed, and load scripts only from the console itself.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

TOKEN_COOKIE = "lotwise_token"
CSRF_COOKIE = "lotwise_csrf"
LANG_COOKIE = "lotwise_lang"
SUBJECT_COOKIE = "lotwise_subject"  # shown in the header only; every decision is the engine's, by token
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_TOKEN_CHARS = 8192  # a JWT far beyond any real one is refused before it reaches the engine
SESSION_MAX_AGE_S = 12 * 3600  # the browser forgets the token after a working day
LANG_MAX_AGE_S = 365 * 86_400

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make chromium send `Origin: null` on POSTs
    "cache-control": "no-store",
}


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_of(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (then the response must set the cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if 16 <= len(current) <= 128:
        return current, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict", secure=is_https(request), path="/")


def set_token_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path="/",
    )


def clear_token_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))


def set_lang_cookie(response: Response, request: Request, lang: str) -> None:
    response.set_cookie(
        LANG_COOKIE, lang, max_age=LANG_MAX_AGE_S, httponly=True, samesite="strict", secure=is_https(request), path="/"
    )


def same_origin(request: Request) -> bool:
    """No Origin header (old browsers, plain clients), or the console's own origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin == own


def csrf_ok(request: Request, submitted: str) -> bool:
    """The submitted token equals the cookie's (compared in constant time)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())
