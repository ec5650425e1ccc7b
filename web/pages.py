"""HTML pages: authenticate -> parse the form -> call a service -> render. No decisions here."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import quote, urlparse

import aiohttp_jinja2
from aiohttp import web

from teleconsult.display import to_local
from teleconsult.domain.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.patients import PatientDraft, Sex
from teleconsult.domain.people import Actor, Role
from teleconsult.services.auth import AuthSession
from web import i18n
from web.i18n import _
from web.keys import SERVICES, SETTINGS
from web.security import (
    AUTH,
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_EXPIRED,
    check_login_csrf,
    client_source,
    new_login_csrf,
)

routes = web.RouteTableDef()


def _auth(request: web.Request) -> AuthSession:
    auth: AuthSession | None = request.get(AUTH)
    if auth is None:
        target = quote(request.path_qs, safe="")
        expired = "&expired=1" if request.get(SESSION_EXPIRED) else ""
        raise web.HTTPSeeOther(f"/login?next={target}{expired}")
    return auth


def _safe_next(value: str | None) -> str:
    if not value:
        return "/dashboard"
    parsed = urlparse(value)
    if parsed.scheme or parsed.netloc or not value.startswith("/") or value.startswith("//"):
        return "/dashboard"
    return value


async def _render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    auth: AuthSession | None = request.get(AUTH)
    base = {
        "actor": auth.actor if auth else None,
        "csrf_token": auth.csrf_token if auth else "",
        "locale": i18n.current_locale(),
        "path": request.path_qs,
        "specialty_names": {
            code: (name_vi if i18n.current_locale() == "vi" else name_en)
            for code, name_en, name_vi in await request.app[SERVICES].directory.specialties()
        },
        "today": to_local(request.app[SERVICES].clock.now(), request.app[SETTINGS].display_timezone).date(),
    }
    base.update(context)
    return aiohttp_jinja2.render_template(template, request, base, status=status)


def _int(value: str, name: str = "id") -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise web.HTTPNotFound() from None
    if number <= 0 or number > 2**31:
        raise web.HTTPNotFound()
    return number


async def error_page(request: web.Request, exc: DomainError) -> web.Response:
    status = {NotFound: 404, PermissionDenied: 403, Conflict: 409, ValidationFailed: 400}.get(type(exc), 400)
    titles = {404: _("Not found"), 403: _("Access denied"), 409: _("Already changed"), 400: _("Invalid request")}
    return await _render(request, "error.html", {"title": titles[status], "message": exc.message}, status=status)


# -- login / logout / language --------------------------------------------------------------------------------


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/dashboard" if request.get(AUTH) else "/login")


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    if request.get(AUTH):
        raise web.HTTPSeeOther("/dashboard")
    return await _login_page(request, error=None, status=200)


async def _login_page(request: web.Request, error: str | None, status: int, username: str = "") -> web.Response:
    token = new_login_csrf()
    notice = _("Your session has expired; please log in again.") if request.query.get("expired") else None
    response = await _render(
        request,
        "login.html",
        {
            "login_csrf": token,
            "error": error,
            "notice": notice,
            "username": username,
            "next": _safe_next(request.query.get("next")),
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        path="/login",
        secure=request.app[SETTINGS].cookie_secure,
    )
    return response


@routes.post("/login")
async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    if not check_login_csrf(request, str(form.get("csrf_token", ""))):
        return await _login_page(request, _("The form expired; please try again."), 400, username)
    try:
        issued = await request.app[SERVICES].auth.login(
            username, str(form.get("password", "")), source=client_source(request)
        )
    except DomainError:
        return await _login_page(request, _("Wrong username or password."), 401, username)
    settings = request.app[SETTINGS]
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", ""))))
    response.set_cookie(
        settings.session_cookie_name,
        issued.token,
        httponly=True,
        samesite="Lax",
        path="/",
        secure=settings.cookie_secure,
        max_age=issued.max_age_s,
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    auth = request.get(AUTH)
    if auth is not None:
        await request.app[SERVICES].auth.logout(auth.token_hash, source=client_source(request))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(request.app[SETTINGS].session_cookie_name, path="/")
    raise response


@routes.post("/language")
async def set_language(request: web.Request) -> web.Response:
    form = await request.post()
    locale = str(form.get("locale", ""))
    if locale not in i18n.LOCALES:
        raise web.HTTPBadRequest(text="unknown language")
    auth: AuthSession | None = request.get(AUTH)
    if auth is not None:
        await request.app[SERVICES].auth.set_locale(auth.actor, locale)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", ""))))
    response.set_cookie(LANG_COOKIE, locale, max_age=365 * 86400, samesite="Lax", path="/")
    raise response


# -- dashboards ---------------------------------------------------------------------------------------------


@routes.get("/dashboard")
async def dashboard(request: web.Request) -> web.Response:
    auth = _auth(request)
    actor = auth.actor
    services = request.app[SERVICES]
    context: dict[str, Any] = {"notice": _notice(request.query.get("notice"))}
    if actor.role is Role.SPECIALIST:
        context["open_requests"] = await services.consultations.open_requests(actor)
        context["mine"] = await services.consultations.active_for(actor)
        # The availability toggle starts from the stored choice; presence.updated keeps it current.
        context["presence"] = next(iter(await services.presence.of([actor.user_id])), None)
        return await _render(request, "dashboard_specialist.html", context)
    if actor.role is Role.CLINICIAN:
        context["mine"] = await services.consultations.active_for(actor)
        return await _render(request, "dashboard_clinician.html", context)
    if actor.role is Role.COORDINATOR:
        context["active"] = await services.consultations.active_for(actor)
        return await _render(request, "dashboard_coordinator.html", context)
    context["overview"] = await services.directory.overview(actor)
    return await _render(request, "dashboard_admin.html", context)


def _notice(code: str | None) -> str | None:
    return {
        "taken": _("Another specialist has already accepted this request."),
        "closed": _("The consultation has been closed and saved to the record."),
        "cancelled": _("The request has been cancelled."),
    }.get(code or "")


# -- patients -----------------------------------------------------------------------------------------------


@routes.get("/patients")
async def patient_search(request: web.Request) -> web.Response:
    auth = _auth(request)
    query = request.query.get("q", "").strip()
    results, error = [], None
    if query:
        try:
            results = await request.app[SERVICES].patients.search(auth.actor, query, source=client_source(request))
        except ValidationFailed as exc:
            error = exc.message
        except DomainError as exc:
            return await error_page(request, exc)
    return await _render(request, "patients_search.html", {"q": query, "results": results, "error": error})


@routes.get("/patients/new")
async def patient_new(request: web.Request) -> web.Response:
    _auth(request)
    return await _render(request, "patient_new.html", {"form": {}, "error": None})


@routes.post("/patients/new")
async def patient_create(request: web.Request) -> web.Response:
    auth = _auth(request)
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf_token"}
    try:
        try:
            dob = date.fromisoformat(form.get("date_of_birth", ""))
        except ValueError:
            raise ValidationFailed("date of birth must be a valid date", field="date_of_birth") from None
        try:
            sex = Sex(form.get("sex", ""))
        except ValueError:
            raise ValidationFailed("sex must be male, female or other", field="sex") from None
        draft = PatientDraft(
            cccd=form.get("cccd", ""),
            full_name=form.get("full_name", ""),
            date_of_birth=dob,
            sex=sex,
            bhyt=form.get("bhyt") or None,
            address=form.get("address", ""),
            province=form.get("province", ""),
        )
        patient = await request.app[SERVICES].patients.register(auth.actor, draft, source=client_source(request))
    except (ValidationFailed, Conflict) as exc:
        return await _render(request, "patient_new.html", {"form": form, "error": exc.message}, status=400)
    except DomainError as exc:
        return await error_page(request, exc)
    raise web.HTTPSeeOther(f"/patients/{patient.id}")


@routes.get("/patients/{patient_id}")
async def patient_record(request: web.Request) -> web.Response:
    auth = _auth(request)
    try:
        record = await request.app[SERVICES].patients.record(
            auth.actor, _int(request.match_info["patient_id"]), source=client_source(request)
        )
    except DomainError as exc:
        return await error_page(request, exc)
    return await _render(
        request, "patient_record.html", {"record": record, "notice": _notice(request.query.get("notice"))}
    )


# -- consultations ------------------------------------------------------------------------------------------


@routes.get("/patients/{patient_id}/consultations/new")
async def consultation_new(request: web.Request) -> web.Response:
    auth = _auth(request)
    services = request.app[SERVICES]
    try:
        patient = await services.patients.get(
            auth.actor, _int(request.match_info["patient_id"]), source=client_source(request)
        )
    except DomainError as exc:
        return await error_page(request, exc)
    return await _render(
        request,
        "consultation_new.html",
        {"patient": patient, "specialties": await services.directory.specialties(), "form": {}, "error": None},
    )


@routes.post("/patients/{patient_id}/consultations/new")
async def consultation_create(request: web.Request) -> web.Response:
    auth = _auth(request)
    services = request.app[SERVICES]
    patient_id = _int(request.match_info["patient_id"])
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf_token"}
    try:
        patient = await services.patients.get(auth.actor, patient_id, source=client_source(request))
        consultation = await services.consultations.request(
            auth.actor,
            patient_id,
            form.get("specialty", ""),
            form.get("urgency", ""),
            form.get("summary", ""),
            source=client_source(request),
        )
    except ValidationFailed as exc:
        return await _render(
            request,
            "consultation_new.html",
            {
                "patient": patient,
                "specialties": await services.directory.specialties(),
                "form": form,
                "error": exc.message,
            },
            status=400,
        )
    except DomainError as exc:
        return await error_page(request, exc)
    raise web.HTTPSeeOther(f"/consultations/{consultation.id}/room")


@routes.post("/consultations/{consultation_id}/accept")
async def consultation_accept(request: web.Request) -> web.Response:
    auth = _auth(request)
    cid = _int(request.match_info["consultation_id"])
    try:
        await request.app[SERVICES].consultations.accept(auth.actor, cid, source=client_source(request))
    except Conflict:
        raise web.HTTPSeeOther("/dashboard?notice=taken") from None
    except DomainError as exc:
        return await error_page(request, exc)
    raise web.HTTPSeeOther(f"/consultations/{cid}/room")


@routes.post("/consultations/{consultation_id}/cancel")
async def consultation_cancel(request: web.Request) -> web.Response:
    auth = _auth(request)
    cid = _int(request.match_info["consultation_id"])
    try:
        await request.app[SERVICES].consultations.cancel(auth.actor, cid, source=client_source(request))
    except DomainError as exc:
        return await error_page(request, exc)
    raise web.HTTPSeeOther("/dashboard?notice=cancelled")


@routes.get("/consultations/{consultation_id}/room")
async def consultation_room(request: web.Request) -> web.Response:
    auth = _auth(request)
    cid = _int(request.match_info["consultation_id"])
    try:
        card, patient, notes = await request.app[SERVICES].consultations.room(
            auth.actor, cid, source=client_source(request)
        )
    except DomainError as exc:
        return await error_page(request, exc)
    return await _render(
        request,
        "room.html",
        {
            "card": card,
            "patient": patient,
            "notes": notes,
            "can_close": _can_close(auth.actor, card.consultation.specialist_user_id),
            "error": None,
            "form": {},
        },
    )


def _can_close(actor: Actor, specialist_user_id: int | None) -> bool:
    # Only decides whether to show the form; the service decides whether closing is allowed.
    return actor.role is Role.SPECIALIST and actor.user_id == specialist_user_id


@routes.post("/consultations/{consultation_id}/close")
async def consultation_close(request: web.Request) -> web.Response:
    auth = _auth(request)
    cid = _int(request.match_info["consultation_id"])
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf_token"}
    services = request.app[SERVICES]
    try:
        consultation = await services.consultations.close(
            auth.actor,
            cid,
            form.get("recommendation", ""),
            form.get("icd10_code", ""),
            form.get("outcome", ""),
            source=client_source(request),
        )
    except ValidationFailed as exc:
        try:
            card, patient, notes = await services.consultations.room(auth.actor, cid, source=client_source(request))
        except DomainError as inner:
            return await error_page(request, inner)
        return await _render(
            request,
            "room.html",
            {"card": card, "patient": patient, "notes": notes, "can_close": True, "error": exc.message, "form": form},
            status=400,
        )
    except DomainError as exc:
        return await error_page(request, exc)
    raise web.HTTPSeeOther(f"/patients/{consultation.patient_id}?notice=closed")
