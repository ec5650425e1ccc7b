"""A killed server: the room reconnects by itself, the note written offline is saved once, no ghosts."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser

from teleconsult.seed import DEMO_PASSWORD
from tests.e2e.conftest import Server, login, start_again, stop_server
from tests.e2e.test_consultation_flow import api, remote_video_playing

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


async def test_room_survives_a_killed_server_without_losing_a_note(browser: Browser, server: Server) -> None:
    clin_token = api(server, "POST", "/api/v1/auth/token", body={"username": "clinician", "password": DEMO_PASSWORD})[
        "token"
    ]
    spec_token = api(
        server, "POST", "/api/v1/auth/token", body={"username": "cardiologist", "password": DEMO_PASSWORD}
    )["token"]
    patient_id = api(server, "GET", "/api/v1/patients?q=giang", clin_token)["patients"][0]["id"]
    cid = api(
        server,
        "POST",
        "/api/v1/consultations",
        clin_token,
        {"patient_id": patient_id, "specialty": "cardiology", "urgency": "urgent", "summary": "Khó thở."},
    )["id"]
    api(server, "POST", f"/api/v1/consultations/{cid}/accept", spec_token)

    clin_ctx, clinician = await login(browser, server, "clinician")
    spec_ctx, specialist = await login(browser, server, "cardiologist")
    for page in (clinician, specialist):
        await page.goto(f"{server.url}/consultations/{cid}/room")
    await asyncio.gather(remote_video_playing(clinician), remote_video_playing(specialist))

    server.process.kill()  # as a crash would: no shutdown handlers run
    server.process.wait(10)
    # Written while the server is down: shown as not yet saved, kept in the page's outbox.
    await clinician.fill("#note-text", "Ghi chú khi mất kết nối: SpO2 88%.")
    await clinician.click("#note-send")
    await clinician.locator("#notes-list li.note.note-pending", has_text="SpO2 88%").wait_for()

    server = await asyncio.to_thread(start_again, server)
    try:
        # Both pages reconnect and rejoin by themselves; the note goes out and lands once.
        await clinician.locator("#notes-list li.note:not(.note-pending)", has_text="SpO2 88%").wait_for(timeout=30_000)
        await specialist.locator("#notes-list li.note", has_text="SpO2 88%").wait_for(timeout=30_000)
        await asyncio.gather(remote_video_playing(clinician), remote_video_playing(specialist))
        notes = api(server, "GET", f"/api/v1/consultations/{cid}/notes", clin_token)["notes"]
        assert [n["text"] for n in notes] == ["Ghi chú khi mất kết nối: SpO2 88%."]
        # Each participant appears once in each page, and the record shows exactly two open stays.
        for page in (clinician, specialist):
            assert await page.locator("#remote-videos figure.remote").count() == 1
        record = api(server, "GET", f"/api/v1/patients/{patient_id}", clin_token)
        stays = record["consultations"][0]["participants"]
        assert sorted(s["display_name"] for s in stays if s["left_at"] is None) == [
            "BS. Nguyễn Thị Lan",
            "PGS. Phạm Minh Tuấn",
        ]
    finally:
        await clin_ctx.close()
        await spec_ctx.close()
        stop_server(server)
