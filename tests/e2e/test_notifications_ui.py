"""A conference reminder in the browser: pushed live to the invitee's open dashboard as a toast and a count on
the bell, listed under the bell, marked read; a page without a socket shows it from its periodic refresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import Browser
from sqlalchemy import select

from teleconsult.cli import build_app
from teleconsult.clock import FakeClock
from teleconsult.seed import seed_demo
from teleconsult.settings import Settings
from teleconsult.storage.models import PresenceLeaseRow
from tests.e2e.conftest import login
from tests.transport.conftest import Live
from tests.transport.test_conference_room import book, ids
from web.keys import SERVICES

# 13:50 in Vietnam on the session's day: its 15-minute reminder is due (within the grace window).
BEFORE_START = datetime(2026, 12, 1, 6, 50, tzinfo=UTC)


@pytest.fixture
async def live(sqlite_settings: Settings, aiohttp_server: Any) -> AsyncIterator[Live]:
    settings = sqlite_settings.model_copy(update={"conference_reminder_tick_s": 3600.0})
    server = await aiohttp_server(build_app(settings, FakeClock(BEFORE_START)))
    await seed_demo(server.app[SERVICES])
    await server.app[SERVICES].directory.add_user(
        "sapa", "correct-horse-1", "clinician", "TTYT-SP", display_name="BS. Sùng A Páo"
    )
    yield Live(server, settings)


async def connected(live: Live, username: str, timeout_s: float = 20.0) -> None:
    user_id = (await ids(live))[username]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with live.services.db.transaction() as tx:
            stmt = select(PresenceLeaseRow.user_id).where(PresenceLeaseRow.user_id == user_id)
            if (await tx.execute(stmt)).first() is not None:
                return
        assert asyncio.get_running_loop().time() < deadline, f"{username}'s page never connected"
        await asyncio.sleep(0.1)


async def test_a_reminder_reaches_the_open_dashboard_and_the_bell(browser: Browser, live: Live) -> None:
    conference_id = await book(live, await ids(live))
    context, page = await login(browser, live, "clinician")  # type: ignore[arg-type]
    try:
        await page.wait_for_function("() => document.querySelector('#notifications') !== null")
        assert await page.is_hidden("#notifications .bell-count")
        await connected(live, "clinician")  # the dashboard's socket is up (its presence lease is written)
        assert await live.services.conferences.send_due_reminders() == 1

        toast = page.locator("#notification-toast")
        await toast.wait_for(state="visible", timeout=10_000)
        assert "Lào Cai cardiology case review: starts 14:00 01/12/2026" in await toast.inner_text()
        assert (await page.inner_text("#notifications .bell-count")).strip() == "1"
        await page.click("#notifications button.bell")
        link = page.locator("#notifications .bell-list a")
        assert await link.get_attribute("href") == f"/conferences/{conference_id}/room"
        await page.click("#notifications .bell-read")
        await page.wait_for_function("() => document.querySelector('#notifications .bell-count').hidden")

        # Another page, no socket of its own: the list comes from the server, already read.
        await page.goto(f"{live.url}/conferences")
        await page.click("#notifications button.bell")
        assert "Lào Cai cardiology case review" in await page.inner_text("#notifications .bell-list")
        assert await page.is_hidden("#notifications .bell-count")
    finally:
        await context.close()
