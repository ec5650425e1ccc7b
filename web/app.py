"""Build the aiohttp application for the HTTP side. The composition root attaches signaling to it."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from teleconsult.display import format_date, format_datetime, format_time
from teleconsult.services import Services
from teleconsult.settings import Settings
from web import (
    api,
    conference_api,
    conference_pages,
    conference_room_pages,
    fhir,
    i18n,
    monitor_api,
    network_pages,
    pages,
    pairing_api,
)
from web.i18n import _
from web.keys import LIVE_STATS, SERVICES, SETTINGS
from web.security import csrf_middleware, headers_middleware, session_middleware

TEMPLATES = Path(__file__).resolve().parent / "templates"


async def healthz(request: web.Request) -> web.Response:
    ok = await request.app[SERVICES].db.ping()
    stats: Any = request.app.get(LIVE_STATS)
    body: dict[str, Any] = {"status": "ok" if ok else "degraded", "database": "ok" if ok else "unavailable"}
    if stats is not None:
        body.update(stats())
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format. With TELECONSULT_METRICS_TOKEN set, scrapers must send it as a Bearer token."""
    token = request.app[SETTINGS].metrics_token
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return web.Response(status=401, text="metrics need the Bearer token\n")
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _jinja(app: web.Application, settings: Settings) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    tz = settings.display_timezone
    env.filters["date"] = format_date
    env.filters["datetime"] = lambda value: format_datetime(value, tz)
    env.filters["time"] = lambda value: format_time(value, tz)
    env.globals["role_label"] = role_label
    env.globals["level_label"] = level_label
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}


def role_label(role: str) -> str:
    labels = {
        "clinician": _("Clinician"),
        "specialist": _("Specialist"),
        "coordinator": _("Coordinator"),
        "admin": _("Administrator"),
    }
    return labels.get(str(role), str(role))


def level_label(level: str) -> str:
    labels = {
        "central": _("Central hospital"),
        "provincial": _("Provincial hospital"),
        "district": _("District health centre"),
        "commune": _("Commune health station"),
    }
    return labels.get(str(level), str(level))


def create_app(services: Services, settings: Settings) -> web.Application:
    i18n.load_catalogs()
    app = web.Application(
        middlewares=[headers_middleware, api.api_errors, session_middleware, csrf_middleware],
        client_max_size=256 * 1024,
    )
    app[SERVICES] = services
    app[SETTINGS] = settings
    _jinja(app, settings)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(pages.routes)
    app.router.add_routes(network_pages.routes)
    app.router.add_routes(api.routes)
    app.router.add_routes(fhir.routes)
    app.router.add_routes(monitor_api.routes)
    app.router.add_routes(pairing_api.routes)
    app.router.add_routes(conference_api.routes)
    app.router.add_routes(conference_pages.routes)
    app.router.add_routes(conference_room_pages.routes)
    app.router.add_static("/static/", settings.static_dir, append_version=False)
    for prefix, package in (("/vendor/socket.io/", "socket.io-client"), ("/vendor/uplot/", "uplot")):
        vendor = settings.node_modules_dir / package / "dist"
        if not vendor.is_dir():
            raise RuntimeError(f"{vendor} is missing; run `make setup` (npm ci)")
        app.router.add_static(prefix, vendor)
    return app
