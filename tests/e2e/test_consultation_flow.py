"""A rural clinician and a central-hospital specialist hold a video consultation in two real Chromium pages."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from playwright.async_api import Browser, Page

from teleconsult.rtc_peer import RoomPeer
from teleconsult.seed import DEMO_PASSWORD
from tests.e2e.conftest import Server, login

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

REMOTE_VIDEO_PLAYING = """() => [...document.querySelectorAll('video.remote-video')]
    .some(v => v.videoWidth > 0 && !v.paused && v.readyState >= 2)"""


async def remote_video_playing(page: Page, timeout_ms: int = 45_000) -> None:
    # Generous: with two test processes on two cores, two Chromium peers plus a server can take a while to
    # gather, connect and decode a first frame; a call that never plays still fails.
    await page.wait_for_function(REMOTE_VIDEO_PLAYING, timeout=timeout_ms)


async def request_consultation(page: Page, server: Server, summary: str) -> int:
    await page.fill("#patient-query", "giang thi")
    await page.click("#patient-search")
    await page.click("#patient-results a.button.primary")
    await page.select_option("#specialty", "cardiology")
    await page.check("input[name=urgency][value=emergency]")
    await page.fill("#summary", summary)
    await page.click("#consultation-submit")
    await page.wait_for_url("**/consultations/*/room")
    return int(page.url.rstrip("/").split("/")[-2])


async def test_request_accept_video_notes_close_and_record(browser: Browser, server: Server) -> None:
    spec_ctx, specialist = await login(browser, server, "cardiologist")
    await specialist.wait_for_function("() => document.body.dataset.dashboardReady === '1'")
    clin_ctx, clinician = await login(browser, server, "clinician")

    cid = await request_consultation(clinician, server, "Ngực đau 2 giờ, ST chênh lên ở DII, DIII, aVF.")
    await clinician.wait_for_function("() => document.body.dataset.roomReady === '1'")

    # The request appears on the specialist's dashboard live, without a reload.
    item = specialist.locator(f"#open-requests li.request[data-consultation-id='{cid}']")
    await item.wait_for()
    assert "Giàng Thị Mỷ" in await item.inner_text()
    await item.locator(".btn-accept").click()
    await specialist.wait_for_url(f"**/consultations/{cid}/room")
    await specialist.wait_for_function("() => document.body.dataset.roomReady === '1'")

    # Each sees the other's video playing.
    await asyncio.gather(remote_video_playing(clinician), remote_video_playing(specialist))

    # A note typed by one appears for the other, and is saved.
    await clinician.fill("#note-text", "HA 90/60, mạch 110, SpO2 94%.")
    await clinician.click("#note-send")
    note = specialist.locator("#notes-list li.note", has_text="HA 90/60, mạch 110, SpO2 94%.")
    await note.wait_for()
    await clinician.locator("#notes-list li.note:not(.note-pending)", has_text="SpO2 94%").wait_for()

    # The specialist closes with a recommendation; the clinician's room is told.
    await specialist.fill("#recommendation", "Chuyển tuyến trên để can thiệp mạch vành qua da.")
    await specialist.fill("#icd10_code", "I21.1")
    await specialist.select_option("#outcome", "transfer")
    await specialist.click("#close-submit")
    await specialist.wait_for_url("**/patients/*?notice=closed")
    await clinician.locator("#room-banner:not([hidden])").wait_for()

    # The record shows the note, the outcome and who took part.
    record = await specialist.locator(f"li.consultation[data-consultation-id='{cid}']").inner_text()
    assert "HA 90/60, mạch 110, SpO2 94%." in record
    assert "I21.1" in record and "Chuyển tuyến trên để can thiệp mạch vành qua da." in record
    assert "BS. Nguyễn Thị Lan" in record and "PGS. Phạm Minh Tuấn" in record
    await clin_ctx.close()
    await spec_ctx.close()


async def test_a_second_specialist_sees_the_request_taken(browser: Browser, server: Server) -> None:
    ctx_a, first = await login(browser, server, "cardiologist")
    ctx_b, second = await login(browser, server, "cardiologist2")
    for page in (first, second):
        await page.wait_for_function("() => document.body.dataset.dashboardReady === '1'")
    clin_ctx, clinician = await login(browser, server, "clinician")
    cid = await request_consultation(clinician, server, "Sốt cao, khó thở.")
    selector = f"#open-requests li.request[data-consultation-id='{cid}']"
    await first.locator(selector).wait_for()
    await second.locator(selector).wait_for()
    await first.locator(selector).locator(".btn-accept").click()
    await first.wait_for_url(f"**/consultations/{cid}/room")
    await second.locator(f"{selector}.taken").wait_for()
    assert await second.locator(selector).locator(".btn-accept").is_disabled()
    for ctx in (ctx_a, ctx_b, clin_ctx):
        await ctx.close()


def api(server: Server, method: str, path: str, token: str | None = None, body: object = None) -> dict:
    request = urllib.request.Request(
        f"{server.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


async def test_an_aiortc_peer_connects_to_a_chromium_peer(browser: Browser, server: Server) -> None:
    clin_token = api(server, "POST", "/api/v1/auth/token", body={"username": "clinician", "password": DEMO_PASSWORD})[
        "token"
    ]
    patient_id = api(server, "GET", "/api/v1/patients?q=giang", clin_token)["patients"][0]["id"]
    cid = api(
        server,
        "POST",
        "/api/v1/consultations",
        clin_token,
        {"patient_id": patient_id, "specialty": "cardiology", "urgency": "urgent", "summary": "ECG review"},
    )["id"]
    spec_token = api(
        server, "POST", "/api/v1/auth/token", body={"username": "cardiologist", "password": DEMO_PASSWORD}
    )["token"]
    api(server, "POST", f"/api/v1/consultations/{cid}/accept", spec_token)

    ctx, clinician = await login(browser, server, "clinician")
    await clinician.goto(f"{server.url}/consultations/{cid}/room")
    await clinician.wait_for_function("() => document.body.dataset.roomReady === '1'")

    peer = RoomPeer(server.url, spec_token, cid, track_factory=lambda: [AudioStreamTrack(), VideoStreamTrack()])
    try:
        await peer.join()  # the aiortc peer is the newcomer: it offers, Chromium answers with trickled candidates
        remote = await peer.wait_connected(timeout=20)
        await asyncio.wait_for(remote.channel_open.wait(), 15)
        assert sorted(t.kind for t in remote.tracks) == ["audio", "video"]
        video = next(t for t in remote.tracks if t.kind == "video")
        frame = await asyncio.wait_for(video.recv(), 15)  # Chromium's fake camera, decoded by aiortc
        assert frame.width > 0 and frame.height > 0
        await remote_video_playing(clinician)  # and Chromium plays aiortc's video
    finally:
        await peer.close()
        await ctx.close()
