"""Booking a teleconference in real Chromium: the coordinator fills the form (weekly recurrence, host, sites,
people, agenda with a presenter), sees the conflict warnings before anything is saved, books anyway; the
series is stored in UTC with its RRULE. A clinician is refused the form.

Demo network (teleconsult/seed.py): the coordinator works at Bạch Mai; every demo specialist, the cardiologist
PGS. Phạm Minh Tuấn among them, is on call around the clock for three weeks from yesterday, so the first
sessions of a series starting next Tuesday clash with his on-call shifts.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from teleconsult.seed import DEMO_PASSWORD
from tests.e2e.conftest import Server, login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

TITLE = "Weekly cardiology case review"
CLINICIAN = "BS. Nguyễn Thị Lan"
CARDIOLOGIST = "PGS. Phạm Minh Tuấn"
CASES = ("giang%20thi", "ly%20van")  # Giàng Thị Mỷ, Lý Văn Sử


def api(server: Server, method: str, path: str, token: str | None = None, body: object = None) -> Any:
    request = urllib.request.Request(
        f"{server.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def token_of(server: Server, username: str) -> str:
    body = {"username": username, "password": DEMO_PASSWORD}
    return str(api(server, "POST", "/api/v1/auth/token", body=body)["token"])


def next_tuesday() -> date:
    today = date.today()
    return today + timedelta(days=(1 - today.weekday()) % 7 or 7)


async def invite(page: Page, query: str, name: str) -> None:
    await page.fill("#people-q", query)
    found = page.locator("#people-results li", has_text=name)
    await found.locator("button").click()
    await expect(page.locator("#people-chips li.chip", has_text=name)).to_have_count(1)


async def fill_the_form(page: Page, first: date) -> None:
    await page.fill("#title", TITLE)
    await page.select_option("#purpose", "case_review")
    await page.fill("#day", first.isoformat())
    await page.fill("#start", "14:00")
    await page.fill("#end", "15:30")
    await page.select_option("#repeat", "weekly")
    await expect(page.locator('input[name="byday"][value="TU"]')).to_be_checked()  # the first session's day
    await page.fill("#count", "8")
    await expect(page.locator("#repeat-text")).to_have_text(f"Every week on Tuesday, 8 sessions, from {first:%d/%m/%Y}")
    await page.select_option("#host", label="Bạch Mai Hospital")
    for site in ("Lào Cai Provincial General Hospital", "Tả Van Commune Health Station"):
        await page.locator("label.site", has_text=site).locator("input").check()
    await expect(page.locator("#sites-count")).to_have_text("Sites invited: 2")
    await invite(page, "lan", CLINICIAN)
    await invite(page, "tuan", CARDIOLOGIST)  # no diacritics typed
    await page.fill("#case-q", "giang")
    await page.locator("#case-results li.case-found", has_text="Giàng Thị Mỷ").locator("button").first.click()
    await expect(page.locator("#agenda li.agenda-item")).to_have_count(1)
    await page.locator("#agenda li.agenda-item select.presenter").select_option(label=CLINICIAN)


async def test_a_coordinator_books_a_weekly_case_review_past_the_on_call_warning(
    server: Server, browser: Browser
) -> None:
    context, page = await login(browser, server, "coordinator")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first = next_tuesday()
    try:
        await page.goto(f"{server.url}/conferences")
        await page.click("#book-new")
        await page.wait_for_url(f"{server.url}/conferences/new")
        await page.wait_for_function("() => document.body.dataset.bookReady === '1'")
        await fill_the_form(page, first)

        await page.click("#book-submit")
        warnings = page.locator("#warnings")
        await expect(warnings).to_be_visible()
        on_call = warnings.locator('li.warning[data-kind="person_on_call"]')
        await expect(on_call).to_have_count(1)
        await expect(on_call).to_contain_text(f"{CARDIOLOGIST} is on call at 14:00 Tue {first:%d/%m}")
        await expect(warnings.locator("li.warning", has_text=CLINICIAN)).to_have_count(0)
        token = token_of(server, "coordinator")
        assert api(server, "GET", "/api/v1/conferences?days=90", token) == {"sessions": []}  # not booked yet

        await page.click("#book-anyway")
        await page.wait_for_url(f"{server.url}/conferences?notice=booked")
        await expect(page.locator("#notice")).to_be_visible()
        assert errors == []
    finally:
        await context.close()

    sessions = api(server, "GET", "/api/v1/conferences?days=90", token)["sessions"]
    assert len(sessions) == 8
    expected = [datetime(first.year, first.month, first.day, 7, 0) + timedelta(weeks=w) for w in range(8)]
    assert [s["starts_at"] for s in sessions] == [f"{d:%Y-%m-%dT%H:%M:%S}+00:00" for d in expected]
    conference = api(server, "GET", f"/api/v1/conferences/{sessions[0]['conference_id']}", token)
    assert conference["title"] == TITLE and conference["purpose"] == "case_review"
    assert conference["rrule"] == "FREQ=WEEKLY;BYDAY=TU;COUNT=8"
    assert conference["starts_at"] == f"{first.isoformat()}T07:00:00+00:00"
    assert conference["ends_at"] == f"{first.isoformat()}T08:30:00+00:00"
    assert conference["tz"] == "Asia/Ho_Chi_Minh" and len(conference["site_ids"]) == 2
    invitees = {i["display_name"]: i["user_id"] for i in conference["invitees"]}
    assert set(invitees) == {CLINICIAN, CARDIOLOGIST}
    assert [a["presenter_user_id"] for a in conference["agenda"]] == [invitees[CLINICIAN]]
    assert conference["agenda"][0]["patient_id"] is not None


async def test_a_clinician_is_refused_the_booking_form(server: Server, browser: Browser) -> None:
    context, page = await login(browser, server, "clinician")
    try:
        await page.goto(f"{server.url}/conferences")
        await expect(page.locator("#book-new")).to_have_count(0)
        response = await page.goto(f"{server.url}/conferences/new")
        assert response is not None and response.status == 403
        await expect(page.locator("#book-form")).to_have_count(0)
    finally:
        await context.close()


async def test_the_edit_form_is_prefilled_and_saves_a_reordered_agenda(server: Server, browser: Browser) -> None:
    token = token_of(server, "coordinator")
    people = api(server, "GET", "/api/v1/directory/people?q=lan", token)["people"]
    clinician = next(p["id"] for p in people if p["display_name"] == CLINICIAN)
    sites = {p["facility_name"]: p["facility_id"] for p in people}
    patients = [
        api(server, "GET", f"/api/v1/conferences/agenda/cases?q={q}", token)["cases"][0] for q in ("giang", "ly")
    ]
    first = next_tuesday()
    booked = api(
        server,
        "POST",
        "/api/v1/conferences",
        token,
        {
            "title": TITLE,
            "purpose": "mdt",
            "day": first.isoformat(),
            "start": "14:00",
            "end": "15:30",
            "host_facility_id": api(server, "GET", "/api/v1/directory/people?q=tuan", token)["people"][0][
                "facility_id"
            ],
            "invited_site_ids": [sites["Tả Van Commune Health Station"]],
            "invited_user_ids": [clinician],
            "agenda": [{"presenter_user_id": clinician, "patient_id": p["patient_id"]} for p in patients],
            "rrule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;COUNT=3",
        },
    )["conference"]

    context, page = await login(browser, server, "coordinator", locale="vi-VN")
    try:
        await page.goto(f"{server.url}/conferences/{booked['id']}/edit")
        await page.wait_for_function("() => document.body.dataset.bookReady === '1'")
        await expect(page.locator("#title")).to_have_value(TITLE)
        await expect(page.locator("#purpose")).to_have_value("mdt")
        await expect(page.locator("#repeat-text")).to_have_text(
            f"Cứ 2 tuần một lần vào Thứ Ba, 3 buổi, từ ngày {first:%d/%m/%Y}"
        )
        await expect(page.locator("#people-chips li.chip")).to_have_count(1)
        rows = page.locator("#agenda li.agenda-item")
        await expect(rows.nth(0)).to_contain_text("Giàng Thị Mỷ")
        await rows.nth(1).locator(".case-up").click()
        await expect(rows.nth(0)).to_contain_text("Lý Văn Sử")
        await page.fill("#end", "16:00")
        await page.click("#book-submit")
        await page.wait_for_url(f"{server.url}/conferences?notice=saved")  # the clinician is not on call
        await expect(page.locator("#notice")).to_have_text("Đã lưu thay đổi; thư mời đã được cập nhật.")
    finally:
        await context.close()

    saved = api(server, "GET", f"/api/v1/conferences/{booked['id']}", token)
    assert saved["sequence"] == 1 and saved["rrule"] == "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;COUNT=3"
    assert saved["ends_at"] == f"{first.isoformat()}T09:00:00+00:00"
    assert [a["patient_id"] for a in saved["agenda"]] == [patients[1]["patient_id"], patients[0]["patient_id"]]
