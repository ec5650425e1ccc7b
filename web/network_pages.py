"""Pages for the hub-and-spoke network (administrators) and the on-call roster (coordinators, administrators).

Authenticate -> parse the form -> call NetworkService -> redirect (POST-redirect-GET) or show the form again
with its error. Times are shown in the display timezone (Asia/Ho_Chi_Minh), dates as dd/mm/yyyy.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from teleconsult.display import to_local
from teleconsult.domain.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.people import FacilityLevel
from teleconsult.services.network import NetworkService, RosterWeek, Shift, parse_clock, parse_day
from web.i18n import _
from web.keys import SERVICES, SETTINGS
from web.pages import _auth, _int, _render, error_page
from web.security import client_source

routes = web.RouteTableDef()
HUB_CHOICES = 3  # supporting hubs offered on the form, best first


def _network(request: web.Request) -> NetworkService:
    network: NetworkService = request.app[SERVICES].network
    return network


async def _form(request: web.Request) -> dict[str, Any]:
    post = await request.post()
    form: dict[str, Any] = {k: str(v).strip() for k, v in post.items() if k not in ("csrf_token", "days")}
    form["days"] = [str(v) for v in post.getall("days", [])]
    return form


def _status(exc: DomainError) -> int:
    return {Conflict: 409}.get(type(exc), 400)


def _notice(code: str | None) -> str | None:
    return {
        "facility_added": _("The facility has been added."),
        "facility_updated": _("The facility has been updated."),
        "support_saved": _("The supporting hubs have been saved."),
        "specialty_saved": _("The specialty has been saved."),
        "shift_added": _("The shift has been added to the roster."),
        "shifts_added": _("The shifts have been added to the roster."),
        "shift_removed": _("The shift has been removed."),
        "shift_ended": _("The shift has been ended now."),
    }.get(code or "")


# -- administrators: facilities, specialties, supporting hubs ------------------------------------------------------


@routes.get("/admin/network")
async def network_page(request: web.Request) -> web.Response:
    return await _network_page(request, notice=_notice(request.query.get("notice")))


async def _network_page(
    request: web.Request,
    *,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    which: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    auth = _auth(request)
    try:
        network = await _network(request).network(auth.actor, source=client_source(request))
    except DomainError as exc:
        return await error_page(request, exc)
    by_code = {f.code: f for f in network.facilities}
    editing = by_code.get(request.query.get("edit", ""))
    if form is None and editing is not None:
        form = {
            "code": editing.code,
            "name": editing.name,
            "level": editing.level.value,
            "province": editing.province,
            "parent": editing.parent.code if editing.parent else "",
        }
    support_for = by_code.get(request.query.get("support", "")) or editing
    specialty = next((s for s in network.specialties if s.code == request.query.get("specialty")), None)
    context = {
        "network": network,
        "levels": [level.value for level in FacilityLevel],
        "central": [f for f in network.facilities if f.level is FacilityLevel.CENTRAL],
        "editing": editing,
        "support_for": support_for,
        "hub_choices": HUB_CHOICES,
        "specialty": specialty,
        "form": form or {},
        "which": which,
        "error": error,
        "notice": notice,
    }
    return await _render(request, "admin_network.html", context, status=status)


@routes.post("/admin/network/facilities")
async def facility_add(request: web.Request) -> web.Response:
    return await _save_facility(request, None)


@routes.post("/admin/network/facilities/{code}")
async def facility_update(request: web.Request) -> web.Response:
    return await _save_facility(request, request.match_info["code"])


async def _save_facility(request: web.Request, code: str | None) -> web.Response:
    auth = _auth(request)
    form = await _form(request)
    network = _network(request)
    args = (form.get("name", ""), form.get("level", ""), form.get("province", ""), form.get("parent") or None)
    try:
        if code is None:
            saved = await network.add_facility(auth.actor, form.get("code", ""), *args, source=client_source(request))
        else:
            saved = await network.update_facility(auth.actor, code, *args, source=client_source(request))
    except PermissionDenied as exc:
        return await error_page(request, exc)
    except DomainError as exc:
        form["code"] = code or form.get("code", "")
        return await _network_page(request, error=exc.message, form=form, which="facility", status=_status(exc))
    notice = "facility_added" if code is None else "facility_updated"
    raise web.HTTPSeeOther(f"/admin/network?{urlencode({'notice': notice, 'support': saved.code})}#facilities")


@routes.post("/admin/network/support")
async def support_save(request: web.Request) -> web.Response:
    auth = _auth(request)
    form = await _form(request)
    hubs = [form.get(f"hub_{i}", "") for i in range(1, HUB_CHOICES + 1)]
    facility = form.get("facility", "")
    try:
        await _network(request).set_support(auth.actor, facility, hubs, source=client_source(request))
    except PermissionDenied as exc:
        return await error_page(request, exc)
    except DomainError as exc:
        return await _network_page(request, error=exc.message, form=form, which="support", status=_status(exc))
    raise web.HTTPSeeOther(f"/admin/network?{urlencode({'notice': 'support_saved', 'support': facility})}#facilities")


@routes.post("/admin/network/specialties")
async def specialty_save(request: web.Request) -> web.Response:
    auth = _auth(request)
    form = await _form(request)
    try:
        await _network(request).save_specialty(
            auth.actor,
            form.get("code", ""),
            form.get("name_en", ""),
            form.get("name_vi", ""),
            source=client_source(request),
        )
    except PermissionDenied as exc:
        return await error_page(request, exc)
    except DomainError as exc:
        return await _network_page(request, error=exc.message, form=form, which="specialty", status=_status(exc))
    raise web.HTTPSeeOther("/admin/network?notice=specialty_saved#specialties")


# -- coordinators: the on-call roster ---------------------------------------------------------------------------


def _week_of(value: str | None, today: date) -> date:
    try:
        return parse_day(value) if value else today
    except ValidationFailed:
        return today


def _today(request: web.Request) -> date:
    return to_local(request.app[SERVICES].clock.now(), request.app[SETTINGS].display_timezone).date()


@routes.get("/roster")
async def roster_page(request: web.Request) -> web.Response:
    hub = request.query.get("hub")
    return await _roster_page(
        request,
        _int(hub) if hub else None,
        _week_of(request.query.get("week"), _today(request)),
        notice=_notice(request.query.get("notice")),
    )


async def _roster_page(
    request: web.Request,
    hub_id: int | None,
    week_of: date,
    *,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    auth = _auth(request)
    try:
        week = await _network(request).roster(auth.actor, hub_id, week_of, source=client_source(request))
    except DomainError as exc:
        return await error_page(request, exc)
    tz = request.app[SETTINGS].display_timezone
    now = request.app[SERVICES].clock.now()
    today = _today(request)
    context = {
        "week": week,
        "days": _days(week, tz, now),
        "on_call": [_shift_view(s, tz, now) for s in week.on_call],
        "weekdays": _weekday_names(),
        "previous_week": (week.monday - timedelta(days=7)).isoformat(),
        "next_week": (week.monday + timedelta(days=7)).isoformat(),
        "this_week": today.isoformat(),
        "sunday": week.monday + timedelta(days=6),
        "form": form or {"day": max(today, week.monday).isoformat(), "start": "07:00", "end": "19:00", "weeks": "1"},
        "error": error,
        "notice": notice,
    }
    return await _render(request, "roster.html", context, status=status)


def _weekday_names() -> list[str]:
    return [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"), _("Sunday")]


def _days(week: RosterWeek, tz: str, now: datetime) -> list[dict[str, Any]]:
    """The seven days of the week, each with the shifts that start on it (a shift begun before Monday is
    listed on Monday), by specialty then start."""
    names = _weekday_names()
    days: list[dict[str, Any]] = [
        {"date": week.monday + timedelta(days=i), "name": names[i], "shifts": []} for i in range(7)
    ]
    for shift in week.shifts:
        index = min(max((to_local(shift.starts_at, tz).date() - week.monday).days, 0), 6)
        days[index]["shifts"].append(_shift_view(shift, tz, now))
    for day in days:
        day["shifts"].sort(key=lambda s: (s["specialty"], s["starts_at"]))
    return days


def _shift_view(shift: Shift, tz: str, now: datetime) -> dict[str, Any]:
    starts, ends = to_local(shift.starts_at, tz), to_local(shift.ends_at, tz)
    return {
        "id": shift.id,
        "specialty": shift.specialty,
        "name": shift.display_name,
        "starts_at": shift.starts_at,
        "start": starts.strftime("%H:%M"),
        "start_date": starts.date(),
        "end": ends.strftime("%H:%M"),
        "end_day": ends.strftime("%d/%m") if ends.date() != starts.date() else "",
        "current": shift.starts_at <= now < shift.ends_at,
        "removable": shift.ends_at > now,
    }


@routes.post("/roster/shifts")
async def shift_add(request: web.Request) -> web.Response:
    auth = _auth(request)
    form = await _form(request)
    hub_id = _int(form.get("hub", ""))
    week_of = _week_of(form.get("week"), _today(request))
    try:
        first_day = parse_day(form.get("day", ""))
        start, end = parse_clock(form.get("start", ""), "start"), parse_clock(form.get("end", ""), "end")
        try:
            weeks = int(form.get("weeks") or 1)
            weekdays = {int(d) for d in form["days"]} if form["days"] else None
        except ValueError:
            raise ValidationFailed("weeks and days must be numbers", field="weeks") from None
        result = await _network(request).add_shifts(
            auth.actor,
            hub_id,
            _int(form.get("user", "")) if form.get("user") else 0,
            first_day,
            start,
            end,
            weeks=weeks,
            weekdays=weekdays,
            source=client_source(request),
        )
    except PermissionDenied as exc:
        return await error_page(request, exc)
    except (ValidationFailed, Conflict, NotFound) as exc:
        return await _roster_page(request, hub_id, week_of, error=exc.message, form=form, status=_status(exc))
    notice = "shift_added" if len(result.added) == 1 else "shifts_added"
    query = urlencode({"hub": hub_id, "week": first_day.isoformat(), "notice": notice})
    raise web.HTTPSeeOther(f"/roster?{query}")


@routes.post("/roster/shifts/{shift_id}/remove")
async def shift_remove(request: web.Request) -> web.Response:
    auth = _auth(request)
    form = await _form(request)
    shift_id = _int(request.match_info["shift_id"])
    hub_id = _int(form["hub"]) if form.get("hub") else None
    week_of = _week_of(form.get("week"), _today(request))
    try:
        outcome = await _network(request).remove_shift(auth.actor, shift_id, source=client_source(request))
    except PermissionDenied as exc:
        return await error_page(request, exc)
    except (Conflict, NotFound) as exc:
        return await _roster_page(request, hub_id, week_of, error=exc.message, status=_status(exc))
    query = {"week": week_of.isoformat(), "notice": "shift_removed" if outcome == "removed" else "shift_ended"}
    if hub_id is not None:
        query["hub"] = str(hub_id)
    raise web.HTTPSeeOther(f"/roster?{urlencode(query)}")
