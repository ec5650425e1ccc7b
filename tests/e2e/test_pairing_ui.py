"""Pairing in real Chromium pages: the specialist's pager rings, the requester follows the pairing live, the
hub's coordinator sees the queue and hands a case over.

Demo network (teleconsult/seed.py): the clinician works at Tả Van commune health station, supported by Bạch Mai
(BVTW-BM) only, where "cardiologist" (PGS. Phạm Minh Tuấn) and the coordinator (CN. Vũ Thị Mai) work;
"cardiologist2" works at Chợ Rẫy, which does not support Tả Van. Every demo specialist is on call around the
clock. The tests add a second Bạch Mai cardiologist (on call, but away), whom only a coordinator's hand-over rings.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from teleconsult.seed import DEMO_PASSWORD
from tests.e2e.conftest import Server, login, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

CARDIOLOGIST = "PGS. Phạm Minh Tuấn"
COLLEAGUE = "TS. Hoàng Văn Nam"
ROUTINE_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def pairing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Routine offers ring for 5 s (the least allowed), so one test can watch an offer run out.
    running = start_server(
        tmp_path_factory.mktemp("pairing"), {"TELECONSULT_OFFER_TIMEOUT_ROUTINE_S": str(ROUTINE_TIMEOUT_S)}
    )
    try:
        added = running.cli(
            "user",
            "add",
            "cardiologist3",
            "--role",
            "specialist",
            "--facility",
            "BVTW-BM",
            "--specialty",
            "cardiology",
            "--name",
            COLLEAGUE,
            stdin=DEMO_PASSWORD + "\n",
        )
        assert added.returncode == 0, added.stderr
        yesterday = (date.today() - timedelta(days=1)).isoformat()
        shifts = running.cli(
            "roster",
            "add",
            "--user",
            "cardiologist3",
            "--date",
            yesterday,
            "--from",
            "12:00",
            "--to",
            "12:00",
            "--days",
            "all",
            "--weeks",
            "1",
        )
        assert shifts.returncode == 0, shifts.stderr
        token = login_token(running, "cardiologist3")
        api(running, "PUT", "/api/v1/presence", token, {"availability": "away"})
        yield running
    finally:
        stop_server(running)


@pytest.fixture
async def contexts() -> AsyncIterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for ctx in opened:
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


def login_token(server: Server, username: str) -> str:
    body = {"username": username, "password": DEMO_PASSWORD}
    return str(api(server, "POST", "/api/v1/auth/token", body=body)["token"])


def request_by_api(server: Server, specialty: str, urgency: str, summary: str) -> int:
    token = login_token(server, "clinician")
    patient_id = api(server, "GET", "/api/v1/patients?q=ly%20van", token)["patients"][0]["id"]
    body = {"patient_id": patient_id, "specialty": specialty, "urgency": urgency, "summary": summary}
    return int(api(server, "POST", "/api/v1/consultations", token, body)["id"])


async def open_page(browser: Browser, server: Server, contexts: list[BrowserContext], user: str, ready: str) -> Page:
    ctx, page = await login(browser, server, user)
    contexts.append(ctx)
    await page.wait_for_function(f"() => document.body.dataset.{ready} === '1'")
    return page


async def request_in_form(page: Page, summary: str) -> int:
    await page.fill("#patient-query", "giang thi")
    await page.click("#patient-search")
    await page.click("#patient-results a.button.primary")
    await page.select_option("#specialty", "cardiology")
    await page.check("input[name=urgency][value=emergency]")
    await page.fill("#summary", summary)
    await page.click("#consultation-submit")
    await page.wait_for_url("**/consultations/*/room")
    return int(page.url.rstrip("/").split("/")[-2])


def ring_card(page: Page, cid: int):  # noqa: ANN201 - a Playwright Locator
    return page.locator(f"#pager .ring-card[data-consultation-id='{cid}']")


async def test_ring_decline_escalate_hand_over_and_accept(
    browser: Browser, pairing_server: Server, contexts: list[BrowserContext]
) -> None:
    server = pairing_server
    specialist, coordinator, clinician = await asyncio.gather(
        open_page(browser, server, contexts, "cardiologist", "pagerReady"),
        open_page(browser, server, contexts, "coordinator", "queueReady"),
        open_page(browser, server, contexts, "clinician", "pairingReady"),
    )

    # The specialist's availability toggle goes through presence.set and back.
    available = specialist.locator("#presence button[data-availability=available]")
    await specialist.click("#presence button[data-availability=busy]")
    await expect(specialist.locator("#presence-state")).to_have_text(re.compile("You are busy"))
    await expect(coordinator.locator("#queue-staff tr", has_text=CARDIOLOGIST)).to_contain_text("Busy")
    await available.click()
    await expect(available).to_have_attribute("aria-pressed", "true")
    await expect(specialist.locator("#presence-state")).to_have_text(re.compile("You are available"))
    await expect(coordinator.locator("#queue-staff tr", has_text=CARDIOLOGIST)).to_contain_text("Available")

    # An emergency request from the form: the clinician lands in the room, where the pairing shows.
    summary = "Đau ngực 2 giờ, ST chênh lên DII, DIII, aVF."
    cid = await request_in_form(clinician, summary)
    card = ring_card(specialist, cid)
    await expect(card).to_be_visible(timeout=5_000)
    for text in ("Emergency", "Cardiology", "Tả Van Commune Health Station", summary, "Female"):
        await expect(card).to_contain_text(text)
    assert "Giàng" not in await card.inner_text()  # age and sex are enough to decide
    await expect(card.locator(".ring-countdown")).to_have_text(re.compile(r"00:[0-3]\d left to answer"))
    await specialist.wait_for_function("() => window.teleconsultPager.soundRinging === true")
    panel = clinician.locator("#pairing-panel .pairing-state")
    await expect(panel).to_have_text(f"Offered to {CARDIOLOGIST} (Cardiology, Bạch Mai Hospital)")
    await expect(clinician.locator("#pairing-panel .pairing-waited")).to_have_text(re.compile(r"Waited 00:\d\d"))
    row = coordinator.locator(f"#queue-cases tr[data-consultation-id='{cid}']")
    await expect(row).to_contain_text(f"Ringing: {CARDIOLOGIST}")

    # Declining needs a reason; nobody else can take it, so the coordinator is alerted.
    await card.locator(".ring-decline-open").click()
    await card.locator(".ring-reason").select_option("expertise")
    await card.locator(".ring-decline-send").click()
    await expect(card).to_have_attribute("data-state", "closed")
    await expect(card).to_contain_text("You declined this request")
    await specialist.wait_for_function("() => window.teleconsultPager.soundRinging === false")
    await expect(panel).to_have_text("Escalated: no specialist available now; the coordinator has been alerted")
    await expect(coordinator.locator("#queue-alert")).to_contain_text(f"Case #{cid} (Cardiology) was escalated")
    await expect(row).to_have_class(re.compile("q-alert"))
    await expect(row).to_contain_text("Escalated: nobody available")

    # The coordinator hands the case to a colleague who is away; his pager rings all the same.
    colleague = await open_page(browser, server, contexts, "cardiologist3", "pagerReady")
    await expect(colleague.locator("#presence-state")).to_have_text(re.compile("You are away"))
    option = row.locator("select.hand-to option", has_text=COLLEAGUE)
    await expect(option).to_have_text(f"{COLLEAGUE} — Away")
    await row.locator("select.hand-to").select_option(await option.get_attribute("value"))
    await row.locator(".hand-form button").click()
    await expect(row.locator(".hand-result")).to_have_text(f"Ringing {COLLEAGUE}")
    handed = ring_card(colleague, cid)
    await expect(handed).to_contain_text("Handed to you by CN. Vũ Thị Mai")
    await expect(panel).to_contain_text(f"Offered to {COLLEAGUE}")
    await expect(row).to_contain_text(f"Ringing: {COLLEAGUE}")

    # He accepts from the ringing card and lands in the room; the clinician sees who took it.
    await handed.locator(".ring-accept").click()
    await colleague.wait_for_url(f"**/consultations/{cid}/room")
    await expect(panel).to_have_text(re.compile(f"(Accepted by {COLLEAGUE} — joining|In consultation with)"))
    await expect(row).to_have_count(0)  # no longer waiting

    # A second request, made through the API, appears live on the clinician's dashboard.
    await clinician.goto(f"{server.url}/dashboard")
    await clinician.wait_for_function("() => document.body.dataset.pairingReady === '1'")
    second = request_by_api(server, "cardiology", "urgent", "Khó thở, phù chân, nghi suy tim.")
    item = clinician.locator(f"#my-consultations li[data-consultation-id='{second}']")
    await expect(item.locator(".pairing-state")).to_have_text(re.compile(f"^Offered to {CARDIOLOGIST}"))
    await expect(item.locator(".req-patient")).to_have_text("Lý Văn Sử")
    # Only a higher urgency is offered; raising it is seen by the specialist too.
    await expect(item.locator(".pairing-raise-btn")).to_have_text(["Raise to Emergency"])
    await item.locator(".pairing-raise-btn").click()
    await expect(item.locator(".req-urgency")).to_have_text("Emergency")
    await expect(item.locator(".pairing-raise-btn")).to_have_count(0)

    # The specialist accepts it from the ringing card.
    card = ring_card(specialist, second)
    await expect(card).to_contain_text("Khó thở, phù chân, nghi suy tim.")
    await card.locator(".ring-accept").click()
    await specialist.wait_for_url(f"**/consultations/{second}/room")
    await expect(item.locator(".pairing-state")).to_have_text(
        re.compile(f"(Accepted by {CARDIOLOGIST} — joining|In consultation with {CARDIOLOGIST})")
    )
    await expect(item.locator(".pairing-cancel")).to_be_hidden()


async def test_a_ring_survives_a_reload_and_runs_out(
    browser: Browser, pairing_server: Server, contexts: list[BrowserContext]
) -> None:
    server = pairing_server
    ctx, specialist = await login(browser, server, "neurologist")
    contexts.append(ctx)
    await specialist.wait_for_function("() => document.body.dataset.pagerReady === '1'")
    cid = request_by_api(server, "neurology", "routine", "Đau đầu kéo dài.")
    await expect(ring_card(specialist, cid)).to_be_visible(timeout=5_000)

    # A reload (or a dropped link) does not lose the ring: the pager asks what rings on every connect.
    await specialist.reload()
    card = ring_card(specialist, cid)
    await expect(card).to_be_visible()
    await expect(card).to_contain_text("Đau đầu kéo dài.")

    # Nobody answers: the offer runs out and the card says so.
    await expect(card).to_have_attribute("data-state", "closed", timeout=(ROUTINE_TIMEOUT_S + 5) * 1000)
    await expect(card).to_contain_text("Not answered in time")
    # Nobody else does neurology for Tả Van: the hub's coordinator is alerted.
    status = api(server, "GET", f"/api/v1/consultations/{cid}/pairing", login_token(server, "clinician"))
    assert status["state"] == "escalated"
