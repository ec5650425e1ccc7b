"""Three participants in one room form a mesh; audio-only stops a sender's video for everyone."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page

from teleconsult.seed import DEMO_PASSWORD
from tests.e2e.conftest import Server, login
from tests.e2e.test_consultation_flow import api

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

PLAYING_COUNT = """() => [...document.querySelectorAll('#remote-videos figure.remote:not(.video-muted) video')]
    .filter(v => v.videoWidth > 0 && v.readyState >= 2).length"""


async def playing(page: Page, count: int, timeout_ms: int = 45_000) -> None:
    # Three Chromium peers encode six streams on a 2-core machine shared with another test process.
    await page.wait_for_function(f"() => ({PLAYING_COUNT})() === {count}", timeout=timeout_ms)


async def test_three_participants_see_each_other_and_audio_only_stops_video(browser: Browser, server: Server) -> None:
    added = server.cli(
        "user",
        "add",
        "nurse.mai",
        "--role",
        "clinician",
        "--facility",
        "TYT-TV",
        "--name",
        "ĐD. Hà Thị Mai",
        stdin="nurse-password-1\n",
    )
    assert added.returncode == 0, added.stderr
    token = api(server, "POST", "/api/v1/auth/token", body={"username": "clinician", "password": DEMO_PASSWORD})[
        "token"
    ]
    patient_id = api(server, "GET", "/api/v1/patients?q=giang", token)["patients"][0]["id"]
    cid = api(
        server,
        "POST",
        "/api/v1/consultations",
        token,
        {"patient_id": patient_id, "specialty": "cardiology", "urgency": "routine", "summary": "Hội chẩn."},
    )["id"]
    spec = api(server, "POST", "/api/v1/auth/token", body={"username": "cardiologist", "password": DEMO_PASSWORD})
    api(server, "POST", f"/api/v1/consultations/{cid}/accept", spec["token"])

    contexts, pages = [], []
    for username in ("clinician", "cardiologist"):
        ctx, page = await login(browser, server, username)
        contexts.append(ctx)
        pages.append(page)
    nurse_ctx = await browser.new_context(locale="vi-VN", permissions=["camera", "microphone"])
    nurse = await nurse_ctx.new_page()
    await nurse.goto(f"{server.url}/login")
    await nurse.fill("#username", "nurse.mai")
    await nurse.fill("#password", "nurse-password-1")
    await nurse.click("#login-submit")
    await nurse.wait_for_url(f"{server.url}/dashboard")
    contexts.append(nurse_ctx)
    pages.append(nurse)
    try:
        for page in pages:
            await page.goto(f"{server.url}/consultations/{cid}/room")
        await asyncio.gather(*(playing(page, 2) for page in pages))
        assert await nurse.locator("#btn-mute").inner_text() == "Tắt tiếng"  # her page speaks Vietnamese

        clinician, specialist, _ = pages
        await clinician.click("#btn-mute")
        await clinician.locator("#btn-mute[aria-pressed='true']").wait_for()
        await clinician.click("#btn-audio-only")
        await clinician.locator("#btn-audio-only[aria-pressed='true']").wait_for()  # the switch is asynchronous
        # The others stop receiving her picture but still have the third participant's.
        await asyncio.gather(playing(specialist, 1), playing(nurse, 1))
        await clinician.click("#btn-audio-only")
        await asyncio.gather(playing(specialist, 2), playing(nurse, 2))
    finally:
        for ctx in contexts:
            await ctx.close()
