"""Sessions, CSRF and security headers as aiohttp middlewares."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from teleconsult.domain.errors import Unauthenticated
from teleconsult.netaddr import forwarded_client
from teleconsult.services.auth import AuthSession
from web import i18n
from web.keys import SERVICES, SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUTH = web.RequestKey("auth", AuthSession | None)  # type: ignore[arg-type]
SESSION_EXPIRED = web.RequestKey("session_expired", bool)
LOGIN_CSRF_COOKIE = "tc_login_csrf"
LANG_COOKIE = "tc_lang"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' ws: wss:",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ]
)


def client_source(request: web.Request) -> str:
    return forwarded_client(
        request.remote or "", request.headers.get("X-Forwarded-For", ""), request.app[SETTINGS].trusted_proxies
    )


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the session (cookie for browsers, bearer token for API clients) and the language."""
    settings = request.app[SETTINGS]
    auth: AuthSession | None = None
    expired = rejected = False
    token = bearer_token(request) or request.cookies.get(settings.session_cookie_name)
    if token and not request.path.startswith(("/static/", "/vendor/", "/metrics", "/healthz")):
        try:
            auth = await request.app[SERVICES].auth.resolve(token)
        except Unauthenticated as exc:
            expired = "expired" in exc.message
            rejected = True
    request[AUTH] = auth
    request[SESSION_EXPIRED] = expired
    locale = (
        (auth.actor.locale if auth else None)
        or request.cookies.get(LANG_COOKIE)
        or i18n.negotiate(request.headers.get("Accept-Language", ""), settings.default_locale)
    )
    i18n.set_locale(locale if locale in i18n.LOCALES else settings.default_locale)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if rejected and not bearer_token(request):
            exc.del_cookie(settings.session_cookie_name, path="/")
        raise
    if rejected and not bearer_token(request):
        response.del_cookie(settings.session_cookie_name, path="/")
    return response


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cookie-authenticated writes must carry the session's CSRF token (form field or X-CSRF-Token)."""
    auth: AuthSession | None = request.get(AUTH)
    if request.method in _UNSAFE and auth is not None and auth.kind == "browser" and not bearer_token(request):
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
        if not sent or not hmac.compare_digest(sent, auth.csrf_token):
            raise web.HTTPForbidden(text="CSRF token missing or wrong; reload the page and try again")
    return await handler(request)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _decorate(request, response)
        raise
    _decorate(request, response)
    return response


def _decorate(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
    if not request.path.startswith(("/static/", "/vendor/")):
        # Pages and API answers carry patient data: never cache them. Scripts and styles may be cached.
        response.headers.setdefault("Cache-Control", "no-store")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def check_login_csrf(request: web.Request, sent: str | None) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    return bool(expected and sent and hmac.compare_digest(expected, sent))
