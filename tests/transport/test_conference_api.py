"""Teleconferences over HTTP on the composed app: booking, the invitation download, the private calendar feed
and its token, notifications; who gets 401, 403 and 404."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import ClientSession
from icalendar import Calendar
from sqlalchemy import func, select

from teleconsult.storage.models import AuditEventRow, ConferenceRow, FacilityRow, NotificationRow, UserRow
from tests.transport.conftest import Live
from tests.transport.test_http import browser_login, page_csrf


async def _ids(live: Live) -> dict[str, int]:
    async with live.services.db.transaction() as tx:
        users = dict((await tx.execute(select(UserRow.username, UserRow.id))).all())
        facilities = dict((await tx.execute(select(FacilityRow.code, FacilityRow.id))).all())
    return {**users, **{f"site:{code}": fid for code, fid in facilities.items()}}


def _booking(ids: dict[str, int]) -> dict[str, Any]:
    return {
        "title": "Weekly cardiology case review",
        "purpose": "case_review",
        "day": (date.today() + timedelta(days=14)).isoformat(),
        "start": "14:00",
        "end": "15:30",
        "host_facility_id": ids["site:BVTW-BM"],
        "invited_site_ids": [ids["site:TYT-TV"]],
        "invited_user_ids": [ids["clinician"], ids["cardiologist"]],
    }


async def _get(url: str, token: str | None = None) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as http:
        async with http.get(url, headers=headers) as resp:
            return resp.status, resp.content_type, await resp.read()


async def test_booking_and_the_invitation_download(live: Live) -> None:
    ids = await _ids(live)
    coordinator, clinician = await live.token("coordinator"), await live.token("clinician")

    status, body = await live.api("POST", "/api/v1/conferences", clinician, _booking(ids))
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await live.api("POST", "/api/v1/conferences", coordinator, {**_booking(ids), "end": "13:00"})
    assert status == 400 and body["error"]["field"] == "end"
    status, body = await live.api("POST", "/api/v1/conferences", coordinator, _booking(ids))
    assert status == 201, body
    conference = body["conference"]
    assert conference["sequence"] == 0
    # The demo roster has every specialist on call around the clock: a warning, and the booking is saved.
    assert [(w["kind"], w["user_id"]) for w in body["warnings"]] == [("person_on_call", ids["cardiologist"])]

    status, kind, ics = await _get(f"{live.url}/conferences/{conference['id']}/invite.ics", clinician)
    assert status == 200 and kind == "text/calendar"
    calendar = Calendar.from_ical(ics)
    assert str(calendar["METHOD"]) == "REQUEST"
    assert [str(e["UID"]) for e in calendar.walk("VEVENT")] == [conference["uid"]]

    assert (await _get(f"{live.url}/conferences/{conference['id']}/invite.ics", await live.token("clinician2")))[
        0
    ] == 403
    assert (await _get(f"{live.url}/conferences/{conference['id']}/invite.ics"))[0] == 401
    assert (await _get(f"{live.url}/conferences/999999/invite.ics", clinician))[0] == 404

    status, answer = await live.api(
        "POST", f"/api/v1/conferences/{conference['id']}/rsvp", clinician, {"answer": "accepted"}
    )
    assert status == 200 and answer["rsvp"] == "accepted"
    status, sessions = await live.api("GET", "/api/v1/conferences", clinician)
    assert status == 200 and [s["rsvp"] for s in sessions["sessions"]] == ["accepted"]
    status, responses = await live.api("GET", f"/api/v1/conferences/{conference['id']}/responses", coordinator)
    assert status == 200 and {s["facility_id"] for s in responses["sites"]} == {
        ids["site:TYT-TV"],
        ids["site:BVTW-BM"],
    }

    status, edited = await live.api(
        "PUT",
        f"/api/v1/conferences/{conference['id']}",
        coordinator,
        {**_booking(ids), "start": "15:00", "end": "16:00"},
    )
    assert status == 200 and edited["conference"]["sequence"] == 1
    first_day = _booking(ids)["day"]
    status, moved = await live.api(
        "POST",
        f"/api/v1/conferences/{conference['id']}/move",
        coordinator,
        {"recurrence_id": f"{first_day}T15:00:00", "day": first_day, "start": "16:00", "end": "17:00"},
    )
    assert status == 200 and moved["sequence"] == 2
    status, refused = await live.api(
        "POST",
        f"/api/v1/conferences/{conference['id']}/move",
        clinician,
        {"recurrence_id": f"{first_day}T15:00:00", "day": first_day, "start": "16:00", "end": "17:00"},
    )
    assert status == 403
    status, _ = await live.api("POST", f"/api/v1/conferences/{conference['id']}/cancel", coordinator, {})
    assert status == 200
    status, _, ics = await _get(f"{live.url}/conferences/{conference['id']}/invite.ics", clinician)
    event = Calendar.from_ical(ics).walk("VEVENT")[0]
    assert str(Calendar.from_ical(ics)["METHOD"]) == "CANCEL" and int(event["SEQUENCE"]) == 3


async def test_the_calendar_feed_token_flow(live: Live) -> None:
    ids = await _ids(live)
    coordinator, clinician = await live.token("coordinator"), await live.token("clinician")
    status, booked = await live.api("POST", "/api/v1/conferences", coordinator, _booking(ids))
    assert status == 201

    status, issued = await live.api("POST", "/api/v1/calendar/token", clinician)
    assert status == 201 and issued["url"].endswith(f"/calendar/{issued['token']}.ics")
    status, kind, ics = await _get(issued["url"])  # no session: the token is the credential
    assert status == 200 and kind == "text/calendar"
    assert [str(e["UID"]) for e in Calendar.from_ical(ics).walk("VEVENT")] == [booked["conference"]["uid"]]

    assert (await _get(f"{live.url}/calendar/not-the-token.ics"))[:2] == (404, "text/plain")
    status, rotated = await live.api("POST", "/api/v1/calendar/token", clinician)
    assert status == 201
    assert (await _get(issued["url"]))[0] == 404
    assert (await _get(rotated["url"]))[0] == 200
    status, revoked = await live.api("DELETE", "/api/v1/calendar/token", clinician)
    assert status == 200 and revoked == {"revoked": 1}
    status, _, body = await _get(rotated["url"])
    assert status == 404 and b"revoked" not in body

    status, listed = await live.api("GET", "/api/v1/notifications", clinician)
    assert status == 200 and listed == {"notifications": []}
    async with live.services.db.transaction() as tx:
        tx.add(
            NotificationRow(
                user_id=ids["clinician"],
                kind="conference.reminder",
                text="Weekly cardiology case review: starts 14:00",
                conference_id=booked["conference"]["id"],
                created_at=datetime.now(UTC),
            )
        )
    status, listed = await live.api("GET", "/api/v1/notifications?unread=1", clinician)
    assert status == 200 and [n["kind"] for n in listed["notifications"]] == ["conference.reminder"]
    note_id = listed["notifications"][0]["id"]
    status, marked = await live.api(
        "POST", "/api/v1/notifications/read", await live.token("clinician2"), {"ids": [note_id]}
    )
    assert status == 200 and marked == {"marked": 0}  # not theirs
    status, marked = await live.api("POST", "/api/v1/notifications/read", clinician, {"ids": [note_id]})
    assert status == 200 and marked == {"marked": 1}
    status, listed = await live.api("GET", "/api/v1/notifications?unread=1", clinician)
    assert listed == {"notifications": []}
    async with ClientSession() as http:
        async with http.post(f"{live.url}/api/v1/calendar/token") as resp:
            assert resp.status == 401


async def test_the_pages_answer_show_responses_per_site_and_manage_the_feed(live: Live) -> None:
    ids = await _ids(live)
    status, booked = await live.api("POST", "/api/v1/conferences", await live.token("coordinator"), _booking(ids))
    assert status == 201
    cid = booked["conference"]["id"]

    http = await browser_login(live, "clinician", lang="vi")
    async with http:
        token = await page_csrf(http, f"{live.url}/conferences")
        async with http.get(f"{live.url}/conferences") as resp:
            page = await resp.text()
            assert f'data-conference-id="{cid}"' in page and "Chưa trả lời" in page
        async with http.post(
            f"{live.url}/conferences/{cid}/rsvp", data={"answer": "accepted", "csrf_token": token}
        ) as resp:
            assert resp.status == 200 and "Câu trả lời của bạn đã được lưu." in await resp.text()
        async with http.post(f"{live.url}/conferences/feed", data={"csrf_token": token}) as resp:
            found = re.search(r'<code id="feed-url">([^<]+)</code>', await resp.text())
            assert found
        assert (await _get(found.group(1)))[0] == 200
        async with http.post(f"{live.url}/conferences/feed/revoke", data={"csrf_token": token}) as resp:
            assert resp.status == 200
        assert (await _get(found.group(1)))[0] == 404
        async with http.get(f"{live.url}/conferences/{cid}/responses") as resp:
            assert resp.status == 403

    http = await browser_login(live, "coordinator")
    async with http:
        async with http.get(f"{live.url}/conferences/{cid}/responses") as resp:
            page = await resp.text()
            assert resp.status == 200
            sites = re.findall(r'<h3 class="site">([^<]+)</h3>\s*<ul>(.*?)</ul>', page, re.S)
            answers = {name: re.findall(r'data-rsvp="(\w+)"', block) for name, block in sites}
            assert sorted(answers.values()) == [["accepted"], ["needs_action"]]


# -- the booking form: conflicts before booking, people and cases to choose -----------------------------------


async def _conference_count(live: Live) -> int:
    async with live.services.db.transaction() as tx:
        return int((await tx.execute(select(func.count()).select_from(ConferenceRow))).scalar_one())


async def _post(live: Live, path: str, token: str, body: Any, lang: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Accept-Language": lang}
    async with ClientSession() as http:
        async with http.post(f"{live.url}{path}", json=body, headers=headers) as resp:
            return resp.status, await resp.json()


async def test_check_lists_the_warnings_with_names_and_books_nothing(live: Live) -> None:
    ids = await _ids(live)
    coordinator = await live.token("coordinator")
    weekly = {**_booking(ids), "day": _next_tuesday(), "rrule": "FREQ=WEEKLY;BYDAY=TU;COUNT=2"}

    status, body = await live.api("POST", "/api/v1/conferences/check", coordinator, weekly)

    assert status == 200, body
    # The demo roster has every specialist on call around the clock: the cardiologist, at both sessions.
    assert [(w["kind"], w["user_id"], w["person_name"]) for w in body["warnings"]] == [
        ("person_on_call", ids["cardiologist"], "PGS. Phạm Minh Tuấn"),
        ("person_on_call", ids["cardiologist"], "PGS. Phạm Minh Tuấn"),
    ]
    first = date.fromisoformat(weekly["day"])
    assert [w["local_start"] for w in body["warnings"]] == [
        f"{first.isoformat()}T14:00",
        f"{(first + timedelta(weeks=1)).isoformat()}T14:00",
    ]
    assert body["warnings"][0]["starts_at"] == f"{first.isoformat()}T07:00:00+00:00"
    assert await _conference_count(live) == 0
    status, sessions = await live.api("GET", "/api/v1/conferences?days=60", coordinator)
    assert status == 200 and sessions == {"sessions": []}

    # Booked, the series clashes with a copy of itself, but not when checked as an edit of itself.
    status, booked = await live.api("POST", "/api/v1/conferences", coordinator, weekly)
    assert status == 201
    status, again = await live.api("POST", "/api/v1/conferences/check", coordinator, weekly)
    kinds = {(w["kind"], w["other_conference_id"], w["other_title"], w["site_name"]) for w in again["warnings"]}
    assert ("site_busy", booked["conference"]["id"], weekly["title"], "Tả Van Commune Health Station") in kinds
    cid = booked["conference"]["id"]
    status, itself = await live.api("POST", f"/api/v1/conferences/{cid}/check", coordinator, weekly)
    assert status == 200 and {w["kind"] for w in itself["warnings"]} == {"person_on_call"}


async def test_check_refuses_clinicians_specialists_and_bad_input_and_changes_nothing(live: Live) -> None:
    ids = await _ids(live)
    async with live.services.db.transaction() as tx:
        audits = int((await tx.execute(select(func.count()).select_from(AuditEventRow))).scalar_one())
    for username in ("clinician", "cardiologist"):
        status, body = await live.api("POST", "/api/v1/conferences/check", await live.token(username), _booking(ids))
        assert status == 403 and body["error"]["code"] == "forbidden"
    async with live.services.db.transaction() as tx:
        denied = (await tx.execute(select(AuditEventRow).where(AuditEventRow.id > audits))).scalars().all()
    assert {(a.action, a.outcome) for a in denied if a.action.startswith("conference")} == {
        ("conference.check", "denied")
    }

    coordinator = await live.token("coordinator")
    status, body = await _post(live, "/api/v1/conferences/check", coordinator, {**_booking(ids), "end": "13:00"}, "en")
    assert status == 400 and body["error"]["field"] == "end"
    assert body["error"]["display"] == "The end time must be after the start time."
    status, body = await _post(live, "/api/v1/conferences/check", coordinator, {**_booking(ids), "end": "13:00"}, "vi")
    assert status == 400 and body["error"]["display"] == "Giờ kết thúc phải sau giờ bắt đầu."
    status, body = await _post(live, "/api/v1/conferences/check", coordinator, {**_booking(ids), "day": "31/12"}, "en")
    assert status == 400 and body["error"]["field"] == "day" and body["error"]["display"].startswith("Choose a valid")
    status, body = await live.api("POST", "/api/v1/conferences/check", coordinator, {**_booking(ids), "x": 1})
    assert status == 400 and body["error"]["code"] == "invalid"
    status, body = await live.api("POST", "/api/v1/conferences/999999/check", coordinator, _booking(ids))
    assert status == 404
    assert await _conference_count(live) == 0


async def test_bookers_find_people_and_cases_and_nobody_else_does(live: Live) -> None:
    coordinator, clinician = await live.token("coordinator"), await live.token("clinician")
    status, body = await live.api("GET", "/api/v1/directory/people?q=tuan", coordinator)
    assert status == 200
    assert body["people"] == [
        {
            "id": (await _ids(live))["cardiologist"],
            "display_name": "PGS. Phạm Minh Tuấn",
            "role": "specialist",
            "specialty": "cardiology",
            "facility_id": (await _ids(live))["site:BVTW-BM"],
            "facility_name": "Bạch Mai Hospital",
        }
    ]
    status, body = await live.api("GET", "/api/v1/directory/people?role=specialist&specialty=neurology", coordinator)
    assert [p["display_name"] for p in body["people"]] == ["TS. Đỗ Quang Huy"]
    status, body = await live.api("GET", "/api/v1/directory/people?role=nurse", coordinator)
    assert status == 400 and body["error"]["field"] == "role"
    assert (await live.api("GET", "/api/v1/directory/people?q=tuan", clinician))[0] == 403

    status, body = await live.api("GET", "/api/v1/conferences/agenda/cases?q=giang", coordinator)
    assert status == 200 and [c["patient_name"] for c in body["cases"]] == ["Giàng Thị Mỷ"]
    assert set(body["cases"][0]) == {"patient_id", "patient_name", "age", "sex", "consultations"}  # no CCCD, BHYT
    status, body = await live.api("GET", "/api/v1/conferences/agenda/cases?q=g", coordinator)
    assert status == 400 and body["error"]["field"] == "q"
    assert (await live.api("GET", "/api/v1/conferences/agenda/cases?q=giang", clinician))[0] == 403


async def test_the_booking_pages_are_for_coordinators_and_the_edit_page_is_prefilled(live: Live) -> None:
    ids = await _ids(live)
    status, booked = await live.api("POST", "/api/v1/conferences", await live.token("coordinator"), _booking(ids))
    assert status == 201
    cid = booked["conference"]["id"]

    http = await browser_login(live, "coordinator")
    async with http:
        async with http.get(f"{live.url}/conferences") as resp:
            page = await resp.text()
            assert 'href="/conferences/new"' in page and f'href="/conferences/{cid}/edit"' in page
        async with http.get(f"{live.url}/conferences/new") as resp:
            page = await resp.text()
            assert resp.status == 200 and 'id="book-form"' in page
            assert re.search(r'<select id="host"[^>]*>.*Bạch Mai Hospital.*</select>', page, re.S)
        async with http.get(f"{live.url}/conferences/{cid}/edit") as resp:
            page = await resp.text()
            assert resp.status == 200
            found = re.search(r'<script type="application/json" id="book-state">(.*?)</script>', page, re.S)
            assert found
            state = json.loads(found.group(1))
            assert (state["conference_id"], state["title"], state["start"], state["end"]) == (
                cid,
                "Weekly cardiology case review",
                "14:00",
                "15:30",
            )
            assert {p["id"] for p in state["people"]} == {ids["clinician"], ids["cardiologist"]}

    http = await browser_login(live, "clinician", lang="vi")
    async with http:
        async with http.get(f"{live.url}/conferences") as resp:
            assert 'href="/conferences/new"' not in await resp.text()
        for path in ("/conferences/new", f"/conferences/{cid}/edit"):
            async with http.get(f"{live.url}{path}") as resp:
                assert resp.status == 403, path


def _next_tuesday() -> str:
    today = date.today()
    return (today + timedelta(days=(1 - today.weekday()) % 7 or 7)).isoformat()
