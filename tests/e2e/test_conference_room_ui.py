"""The teleconference room in real Chromium pages, through a real Janus on loopback.

The server runs in this process on a fake clock that sits ten minutes before a booked case review, so the
room is open. The coordinator (the host) and the presenting clinician enter, each sees the other's video
(through the SFU, brokered by our socket.io events), the agenda and the case; a note and a decision travel
live; a clinician who was not invited waits in the lobby until the host admits him, then switches to audio only
on his weak link; the host ends the session, reads the attendance and downloads the CSV; the decision is in the
patient's record. Other tests: the room before it opens, a decision saved over a newer one (shown for review),
a note written while the link is down (saved once when it returns), and a server without an SFU.

Demo network (teleconsult/seed.py): the coordinator (CN. Vũ Thị Mai) works at Bạch Mai (BVTW-BM), the host;
"clinician" (BS. Nguyễn Thị Lan) at Tả Van commune health station, where the patient Giàng Thị Mỷ was
registered; "clinician2" (BS. Trần Văn Hải) at Côn Đảo, not invited.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import socketio
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, expect
from sqlalchemy import select

from teleconsult.cli import build_app
from teleconsult.clock import FakeClock
from teleconsult.seed import DEMO_PASSWORD, seed_demo
from teleconsult.settings import Settings
from teleconsult.storage.models import FacilityRow, PatientRow, UserRow
from tests.e2e.janus import Janus, run_janus
from tests.transport.conftest import Live
from web.keys import SERVICES

pytestmark = [pytest.mark.e2e]

# Tuesday 1 December 2026, 13:50 in Vietnam: ten minutes before a 14:00-15:30 case review.
BEFORE_START = datetime(2026, 12, 1, 6, 50, tzinfo=UTC)
FIRST_VIDEO_MS = 45_000  # two cores, three Chromium pages each sending three layers, Janus and the server
PATIENT = "Giàng Thị Mỷ"
COORDINATOR, CLINICIAN, CLINICIAN2 = "CN. Vũ Thị Mai", "BS. Nguyễn Thị Lan", "BS. Trần Văn Hải"
NOTE = "ECG tại trạm: ST chênh lên V1-V4, đau ngực 3 giờ."
RECOMMENDATION = "Chuyển Bạch Mai can thiệp mạch vành qua da."
SECOND_PATIENT, SECOND_SUMMARY = "Lý Văn Sử", "Khó thở khi gắng sức, phù hai chân."


@dataclass
class Room:
    live: Live
    clock: FakeClock
    conference_id: int
    patient_id: int


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Janus]:
    with run_janus(tmp_path_factory.mktemp("janus")) as server:
        yield server


async def start_room(settings: Settings, aiohttp_server: Any) -> Room:
    # The closing loop runs once at start: the test moves the fake clock on and must not see the stays closed
    # as stale before the server renews its presence leases at the new time.
    settings = settings.model_copy(update={"conference_reminder_tick_s": 3600.0})
    clock = FakeClock(BEFORE_START)
    server = await aiohttp_server(build_app(settings, clock))
    await seed_demo(server.app[SERVICES])
    live = Live(server, settings)
    conference_id, patient_id = await book(live)
    return Room(live, clock, conference_id, patient_id)


@pytest.fixture
async def room(sqlite_settings: Settings, aiohttp_server: Any, janus: Janus) -> Room:
    sfu = {"janus_url": janus.url, "janus_api_secret": janus.api_secret, "janus_admin_key": janus.admin_key}
    return await start_room(sqlite_settings.model_copy(update=sfu), aiohttp_server)


@pytest.fixture
async def room_without_sfu(sqlite_settings: Settings, aiohttp_server: Any) -> Room:
    return await start_room(sqlite_settings, aiohttp_server)


class Link:
    """The page's socket.io connection through Playwright, so a test can cut it and bring it back."""

    def __init__(self) -> None:
        self.down = False
        self.open: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    async def route(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r".*/socket\.io/.*"), self._connect)

    async def _connect(self, ws: WebSocketRoute) -> None:
        if self.down:
            await ws.close()
            return
        self.open.append((ws, ws.connect_to_server()))

    async def cut(self) -> None:
        self.down = True
        for page_side, server_side in self.open:
            await server_side.close()
            await page_side.close()
        self.open.clear()

    def restore(self) -> None:
        self.down = False


async def book(live: Live) -> tuple[int, int]:
    """Case 1: a patient; case 2: another patient's open consultation, with two readings of vital signs."""
    async with live.services.db.transaction() as tx:
        users = dict((await tx.execute(select(UserRow.username, UserRow.id))).all())
        sites = dict((await tx.execute(select(FacilityRow.code, FacilityRow.id))).all())
        patient = (await tx.execute(select(PatientRow.id).where(PatientRow.cccd == "010190001234"))).scalar_one()
        second = (await tx.execute(select(PatientRow.id).where(PatientRow.cccd == "010185005678"))).scalar_one()
    clinician = await live.token("clinician")
    status, consultation = await live.api(
        "POST",
        "/api/v1/consultations",
        clinician,
        {"patient_id": second, "specialty": "cardiology", "urgency": "urgent", "summary": SECOND_SUMMARY},
    )
    assert status == 201, consultation
    for kind, value, value2 in (("hr", 112, None), ("bp", 90, 60)):
        status, vital = await live.api(
            "POST",
            f"/api/v1/consultations/{consultation['id']}/vitals",
            clinician,
            {"kind": kind, "value": value, "value2": value2, "client_id": f"vital-{kind}-0001"},
        )
        assert status == 201, vital
    status, body = await live.api(
        "POST",
        "/api/v1/conferences",
        await live.token("coordinator"),
        {
            "title": "Hội chẩn tim mạch Lào Cai",
            "purpose": "case_review",
            "day": "2026-12-01",
            "start": "14:00",
            "end": "15:30",
            "host_facility_id": sites["BVTW-BM"],
            "invited_site_ids": [sites["TYT-TV"]],
            "invited_user_ids": [users["clinician"]],
            "agenda": [
                {"presenter_user_id": users["clinician"], "patient_id": patient},
                {"presenter_user_id": users["clinician"], "patient_id": second, "consultation_id": consultation["id"]},
            ],
        },
    )
    assert status == 201, body
    return int(body["conference"]["id"]), int(patient)


@pytest.fixture
async def contexts() -> AsyncIterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for ctx in opened:
        await ctx.close()


async def login(browser: Browser, live: Live, contexts: list[BrowserContext], username: str, errors: list[str]) -> Page:
    context = await browser.new_context(locale="en-US", permissions=["camera", "microphone"])
    contexts.append(context)
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{username}: {error}"))
    page.set_default_timeout(20_000)
    await page.goto(f"{live.url}/login")
    await page.fill("#username", username)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(f"{live.url}/dashboard")
    return page


async def open_room(page: Page, room: Room, state: str = "inside") -> None:
    await page.goto(f"{room.live.url}/conferences/{room.conference_id}/room")
    await page.wait_for_function(f"() => document.body.dataset.conferenceState === '{state}'")


REMOTE_VIDEO_FROM = """(userId) => [...document.querySelectorAll('#cr-videos figure.remote')]
    .filter(f => f.dataset.userId === String(userId))
    .map(f => f.querySelector('video'))
    .some(v => v && v.videoWidth > 0 && v.readyState >= 2 && !v.paused)"""

LOW_LAYER_FROM = """(userId) => [...document.querySelectorAll('#cr-videos figure.remote')]
    .filter(f => f.dataset.userId === String(userId))
    .map(f => f.querySelector('video'))
    .some(v => v && v.videoWidth > 0 && v.videoWidth <= 240)"""

CURRENT_TIME_OF = """(userId) => {
    const f = [...document.querySelectorAll('#cr-videos figure.remote')].find(f => f.dataset.userId === String(userId));
    return f ? f.querySelector('video').currentTime : -1;
}"""


async def sees_video_of(page: Page, user_id: int) -> None:
    """A tile of that person whose video has a picture and keeps playing."""
    await page.wait_for_function(REMOTE_VIDEO_FROM, arg=user_id, timeout=FIRST_VIDEO_MS)
    before = await page.evaluate(CURRENT_TIME_OF, user_id)
    await page.wait_for_function(
        f"(userId) => ({CURRENT_TIME_OF})(userId) > {before} + 0.5", arg=user_id, timeout=15_000
    )


async def user_ids(room: Room) -> dict[str, int]:
    async with room.live.services.db.transaction() as tx:
        return dict((await tx.execute(select(UserRow.username, UserRow.id))).all())


async def test_host_and_sites_see_each_other_write_decide_admit_end_and_export(
    browser: Browser, room: Room, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    ids = await user_ids(room)
    errors: list[str] = []  # uncaught exceptions in the pages
    coordinator, clinician = await asyncio.gather(
        login(browser, room.live, contexts, "coordinator", errors),
        login(browser, room.live, contexts, "clinician", errors),
    )
    await asyncio.gather(open_room(coordinator, room), open_room(clinician, room))

    # Both see the agenda with its one case, under discussion, and the case's record summary.
    for page in (coordinator, clinician):
        current = page.locator("#cr-agenda li.current")
        await expect(current).to_contain_text(PATIENT)
        await expect(current).to_contain_text(f"Presenter: {CLINICIAN}")
        await expect(current).to_contain_text("Now discussing")
        await expect(page.locator("#cr-case-title")).to_have_text(f"Case 1: {PATIENT}")
        await expect(page.locator("#cr-title")).to_have_text("Hội chẩn tim mạch Lào Cai")
    await expect(coordinator.locator("#cr-host-controls")).to_be_visible()
    await expect(clinician.locator("#cr-host-controls")).to_be_hidden()
    await expect(clinician.locator("#cr-decision-form")).to_be_hidden()  # a clinician who is not the host

    # Each sees the other's video, labelled with name and site, through the SFU.
    await asyncio.gather(sees_video_of(coordinator, ids["clinician"]), sees_video_of(clinician, ids["coordinator"]))
    tile = coordinator.locator(f"#cr-videos figure.remote[data-user-id='{ids['clinician']}'] figcaption")
    await expect(tile).to_have_text(f"{CLINICIAN} · Tả Van Commune Health Station")
    await expect(clinician.locator("#cr-participants")).to_contain_text(COORDINATOR)

    # The host moves to the second case: every page follows, with that case's record summary.
    await expect(clinician.locator("#cr-agenda li")).to_have_count(2)
    await expect(clinician.locator("#cr-agenda .cr-discuss")).to_have_count(0)  # only the host moves
    await coordinator.locator("#cr-agenda li[data-position='2'] .cr-discuss").click()
    await expect(clinician.locator("#cr-agenda li.current")).to_contain_text(SECOND_PATIENT)
    await expect(clinician.locator("#cr-case-title")).to_have_text(f"Case 2: {SECOND_PATIENT}")
    await expect(clinician.locator("#cr-case-consultation")).to_contain_text("Cardiology · Urgent")
    await expect(clinician.locator("#cr-case-summary")).to_have_text(SECOND_SUMMARY)
    await expect(clinician.locator("#cr-vitals tr[data-kind='hr']")).to_contain_text("112 /min")
    await expect(clinician.locator("#cr-vitals tr[data-kind='bp']")).to_contain_text("90/60 mmHg")
    await coordinator.locator("#cr-agenda li[data-position='1'] .cr-discuss").click()
    await expect(clinician.locator("#cr-agenda li.current")).to_contain_text(PATIENT)
    await expect(clinician.locator("#cr-case-title")).to_have_text(f"Case 1: {PATIENT}")

    # The clinician's note appears on the coordinator's page.
    await clinician.fill("#cr-note-text", NOTE)
    await clinician.click("#cr-note-send")
    await expect(coordinator.locator("#cr-notes li.note", has_text=NOTE)).to_contain_text(CLINICIAN)
    await expect(clinician.locator("#cr-notes li.note:not(.note-pending)", has_text=NOTE)).to_have_count(1)
    assert await clinician.evaluate("() => window.teleconsultConference.outbox()") == []

    # The host records the decision; the code comes back normalised on the clinician's page.
    await coordinator.fill("#cr-recommendation", RECOMMENDATION)
    await coordinator.fill("#cr-icd10", "i21.0")
    await coordinator.select_option("#cr-outcome", "transfer")
    await coordinator.click("#cr-decision-save")
    await expect(clinician.locator("#cr-decision .icd10")).to_have_text("I21.0")
    await expect(clinician.locator("#cr-decision .recommendation")).to_have_text(RECOMMENDATION)
    await expect(clinician.locator("#cr-decision .outcome-value")).to_have_text("Transfer to a higher-level hospital")
    await expect(coordinator.locator("#cr-decision .decided-by")).to_have_attribute("data-version", "1")

    # Someone not invited waits in the lobby; the host admits him from the lobby panel and he walks in.
    outsider = await login(browser, room.live, contexts, "clinician2", errors)
    await open_room(outsider, room, "lobby")
    await expect(outsider.locator("#cr-gate-text")).to_have_text("Waiting for the host to admit you…")
    await expect(outsider.locator("#cr-inside")).to_be_hidden()
    waiting = coordinator.locator(f"#cr-lobby li[data-user-id='{ids['clinician2']}']")
    await expect(waiting).to_contain_text(CLINICIAN2)
    await waiting.locator("button.cr-admit").click()
    await outsider.wait_for_function("() => document.body.dataset.conferenceState === 'inside'")
    await expect(outsider.locator("#cr-decision .icd10")).to_have_text("I21.0")
    await expect(coordinator.locator("#cr-lobby")).to_contain_text("Nobody is waiting.")
    await expect(coordinator.locator("#cr-participants")).to_contain_text(CLINICIAN2)

    # On his weak link he switches to audio only: he uploads no video and asks for the lightest layer.
    await sees_video_of(outsider, ids["coordinator"])
    await outsider.check("#cr-audio-only")
    await expect(outsider.locator("#cr-videos figure.self .cr-badge")).to_have_text("Audio only")
    his_tile = coordinator.locator(f"#cr-videos figure.remote[data-user-id='{ids['clinician2']}']")
    await expect(his_tile.locator(".cr-badge")).to_have_text("Audio only")
    await expect(his_tile).to_have_class(re.compile("no-video"))
    await sees_video_of(outsider, ids["coordinator"])
    # Janus forwards him the lowest simulcast layer: a quarter of the 960 px camera picture.
    await outsider.wait_for_function(LOW_LAYER_FROM, arg=ids["coordinator"], timeout=15_000)

    # Twelve minutes later the host ends the session; everyone sees it ended.
    room.clock.advance(12 * 60)
    await coordinator.click("#cr-end")
    await coordinator.click("#cr-end-confirm")
    for page in (coordinator, clinician, outsider):
        await page.wait_for_function("() => document.body.dataset.conferenceState === 'ended'")
        await expect(page.locator("#cr-gate-text")).to_have_text("The session has ended.")
    await expect(clinician.locator("#cr-attendance-link")).to_have_count(0)
    assert await clinician.locator("#cr-videos figure").count() == 0  # camera released

    # The host reads the attendance: one line per person, in Vietnam time, and downloads the CSV.
    await coordinator.click("#cr-attendance-link")
    await coordinator.wait_for_url(f"**/conferences/{room.conference_id}/attendance")
    rows = coordinator.locator("table.attendance tr.attendee")
    await expect(rows).to_have_count(3)
    for name in (COORDINATOR, CLINICIAN, CLINICIAN2):
        await expect(coordinator.locator("table.attendance", has_text=name)).to_have_count(1)
    host_row = coordinator.locator(f"tr.attendee[data-user-id='{ids['coordinator']}']")
    await expect(host_row).to_contain_text("01/12/2026 13:50")
    await expect(host_row.locator("td.num").first).to_have_text("12")
    async with coordinator.expect_download() as info:
        await coordinator.click("#attendance-csv")
    download = await info.value
    assert download.suggested_filename == f"conference-{room.conference_id}-attendance.csv"
    saved = tmp_path / "attendance.csv"
    await download.save_as(saved)
    text = saved.read_text(encoding="utf-8-sig")
    assert "I21.0" in text and RECOMMENDATION in text and "transfer" in text
    for name in (COORDINATOR, CLINICIAN, CLINICIAN2):
        assert name in text

    # The decision and the note are in the patient's record.
    await clinician.goto(f"{room.live.url}/patients/{room.patient_id}")
    reviews = clinician.locator("#conference-reviews li.review")
    await expect(reviews).to_have_count(1)
    await expect(reviews).to_contain_text("Hội chẩn tim mạch Lào Cai")
    await expect(reviews).to_contain_text("01/12/2026 14:00")
    await expect(reviews.locator(".icd10")).to_have_text("I21.0")
    await expect(reviews.locator(".outcome-value")).to_have_text("Transfer to a higher-level hospital")
    await expect(reviews.locator(".recommendation")).to_have_text(RECOMMENDATION)
    await expect(reviews).to_contain_text(re.compile(f"Decided by {COORDINATOR}, 01/12/2026 13:50"))
    await expect(reviews.locator("li.note", has_text=NOTE)).to_contain_text(CLINICIAN)
    assert errors == []


async def test_attendance_and_its_csv_are_for_the_hosts_only(room: Room) -> None:
    live = room.live
    base = f"/conferences/{room.conference_id}"
    for username in ("clinician", "cardiologist"):
        token = await live.token(username)
        for path in (f"{base}/attendance", f"{base}/attendance.csv"):
            status, body = await live.api("GET", path, token)
            assert status == 403, (username, path, body)
            assert "tim mạch Lào Cai" not in body
    status, _ = await live.api("GET", "/conferences/999999/attendance", await live.token("coordinator"))
    assert status == 404
    # The room page itself is only a shell: no patient data before the server lets someone in.
    status, page = await live.api("GET", f"{base}/room", await live.token("clinician2"))
    assert status == 200 and PATIENT not in page and "tim mạch Lào Cai" not in page


async def test_the_room_opens_on_time_and_a_stale_decision_is_shown_for_review(
    browser: Browser, room: Room, contexts: list[BrowserContext]
) -> None:
    errors: list[str] = []
    # At 13:30 the room of the 14:00 session is not open yet: the page says when it opens.
    room.clock.advance(-20 * 60)
    coordinator = await login(browser, room.live, contexts, "coordinator", errors)
    await open_room(coordinator, room, "closed")
    await expect(coordinator.locator("#cr-gate-text")).to_have_text(
        "The room opens at 01/12/2026 13:45 (Vietnam time)."
    )
    room.clock.advance(20 * 60)
    await coordinator.click("#cr-retry")
    await coordinator.wait_for_function("() => document.body.dataset.conferenceState === 'inside'")

    # A cardiologist of the host hospital takes part from a script (a second decider).
    cardiologist = socketio.AsyncClient(reconnection=False)
    decided: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    cardiologist.on("conference.decided", decided.put_nowait)
    await cardiologist.connect(
        room.live.url, auth={"token": await room.live.token("cardiologist")}, transports=["websocket"]
    )
    try:
        entered = await cardiologist.call("conference.enter", {"conference_id": room.conference_id}, timeout=10)
        assert entered["entry"] == "enter", entered
        session_id, item_id = entered["session"]["id"], entered["cases"][0]["item_id"]  # the current case

        await coordinator.fill("#cr-recommendation", RECOMMENDATION)
        await coordinator.fill("#cr-icd10", "I21.0")
        await coordinator.select_option("#cr-outcome", "transfer")
        await coordinator.click("#cr-decision-save")
        await expect(coordinator.locator("#cr-decision .decided-by")).to_have_attribute("data-version", "1")
        assert (await asyncio.wait_for(decided.get(), 10))["decision"]["version"] == 1

        # The coordinator starts changing it while the cardiologist saves another decision.
        await coordinator.fill("#cr-recommendation", "Điều trị nội khoa tại tỉnh.")
        theirs = await cardiologist.call(
            "conference.decide",
            {
                "session_id": session_id,
                "agenda_item_id": item_id,
                "recommendation": "Theo dõi men tim, làm lại ECG sau 6 giờ.",
                "icd10": "I20.0",
                "outcome": "further_investigation",
                "expected_version": 1,
            },
            timeout=10,
        )
        assert theirs["ok"] and theirs["decision"]["version"] == 2, theirs
        await expect(coordinator.locator("#cr-decision .icd10")).to_have_text("I20.0")
        message = coordinator.locator("#cr-decision-message")
        await expect(message).to_have_text(
            "PGS. Phạm Minh Tuấn has just changed this decision (shown above); review it before saving yours."
        )
        await expect(coordinator.locator("#cr-recommendation")).to_have_value("Điều trị nội khoa tại tỉnh.")

        # Saving on top of the version they saw is refused: the newer one is shown, the next save goes through.
        await coordinator.click("#cr-decision-save")
        await expect(message).to_have_text(
            "PGS. Phạm Minh Tuấn changed this decision meanwhile (shown above). Review it, then save again."
        )
        await expect(message).to_have_attribute("data-kind", "conflict")
        await expect(coordinator.locator("#cr-decision .decided-by")).to_have_attribute("data-version", "2")
        await coordinator.click("#cr-decision-save")
        await expect(coordinator.locator("#cr-decision .decided-by")).to_have_attribute("data-version", "3")
        await expect(coordinator.locator("#cr-decision .recommendation")).to_have_text("Điều trị nội khoa tại tỉnh.")
        versions = [(await asyncio.wait_for(decided.get(), 10))["decision"]["version"] for _ in range(2)]
        assert versions == [2, 3]
    finally:
        await cardiologist.disconnect()
    assert errors == []


async def test_a_note_written_while_the_link_is_down_is_saved_once_after_it_returns(
    browser: Browser, room: Room, contexts: list[BrowserContext]
) -> None:
    errors: list[str] = []
    ids = await user_ids(room)
    coordinator = await login(browser, room.live, contexts, "coordinator", errors)
    clinician = await login(browser, room.live, contexts, "clinician", errors)
    link = Link()
    await link.route(clinician)
    await asyncio.gather(open_room(coordinator, room), open_room(clinician, room))
    await sees_video_of(coordinator, ids["clinician"])

    await link.cut()
    await expect(clinician.locator("#cr-status")).to_have_text("Connection lost — reconnecting…")
    await expect(coordinator.locator(f"#cr-videos figure[data-user-id='{ids['clinician']}']")).to_have_count(0)
    await clinician.fill("#cr-note-text", NOTE)
    await clinician.click("#cr-note-send")
    pending = clinician.locator("#cr-notes li.note.note-pending", has_text=NOTE)
    await expect(pending).to_contain_text("Not yet saved")
    assert [i["text"] for i in await clinician.evaluate("() => window.teleconsultConference.outbox()")] == [NOTE]
    await clinician.reload()  # even a reload keeps it (localStorage)
    await expect(clinician.locator("#cr-status")).to_have_text("Connecting…")

    link.restore()
    await clinician.wait_for_function("() => document.body.dataset.conferenceState === 'inside'")
    await expect(clinician.locator("#cr-notes li.note:not(.note-pending)", has_text=NOTE)).to_have_count(1)
    await expect(coordinator.locator("#cr-notes li.note", has_text=NOTE)).to_have_count(1)
    assert await clinician.evaluate("() => window.teleconsultConference.outbox()") == []
    # Back in the room with video both ways.
    await asyncio.gather(sees_video_of(coordinator, ids["clinician"]), sees_video_of(clinician, ids["coordinator"]))
    assert errors == []


async def test_without_an_sfu_the_room_says_video_is_unavailable_and_keeps_working(
    browser: Browser, room_without_sfu: Room, contexts: list[BrowserContext]
) -> None:
    errors: list[str] = []
    room = room_without_sfu
    clinician = await login(browser, room.live, contexts, "clinician", errors)
    await open_room(clinician, room)
    await expect(clinician.locator("#cr-media-note")).to_have_text(
        "Video is not available for this session; the agenda, notes and decisions still work."
    )
    await expect(clinician.locator("#cr-videos figure")).to_have_count(0)
    await expect(clinician.locator("#cr-case-title")).to_have_text(f"Case 1: {PATIENT}")
    await clinician.fill("#cr-note-text", NOTE)
    await clinician.click("#cr-note-send")
    await expect(clinician.locator("#cr-notes li.note:not(.note-pending)", has_text=NOTE)).to_contain_text(CLINICIAN)
    assert errors == []
