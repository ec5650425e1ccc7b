"""Pages and the JSON API over real HTTP: login, CSRF, roles, authorization, languages, bad input."""

from __future__ import annotations

import re

import pytest
from aiohttp import ClientSession, CookieJar
from sqlalchemy import select

from teleconsult.seed import DEMO_PASSWORD
from teleconsult.storage.models import AuditEventRow, PatientRow
from tests.transport.conftest import Live, open_consultation

pytestmark = pytest.mark.asyncio
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def browser_login(live: Live, username: str, password: str = DEMO_PASSWORD, lang: str = "en") -> ClientSession:
    http = ClientSession(cookie_jar=CookieJar(unsafe=True), headers={"Accept-Language": lang})
    async with http.get(f"{live.url}/login") as resp:
        token = CSRF.search(await resp.text()).group(1)  # type: ignore[union-attr]
    async with http.post(
        f"{live.url}/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/dashboard"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303, await resp.text()
        cookie = resp.cookies["tc_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
    return http


async def page_csrf(http: ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        return CSRF.search(await resp.text()).group(1)  # type: ignore[union-attr]


async def test_healthz_reports_the_database(live: Live) -> None:
    async with ClientSession() as http, http.get(f"{live.url}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["database"] == "ok"


async def test_login_needs_the_form_token_and_the_right_password(live: Live) -> None:
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        async with http.post(
            f"{live.url}/login",
            data={"username": "clinician", "password": DEMO_PASSWORD, "csrf_token": "forged"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 400 and "tc_session" not in resp.cookies
        token = await page_csrf(http, f"{live.url}/login")
        async with http.post(
            f"{live.url}/login",
            data={"username": "clinician", "password": "wrong-password", "csrf_token": token},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 401 and "tc_session" not in resp.cookies
    async with live.services.db.transaction() as tx:
        failures = (
            (
                await tx.execute(
                    select(AuditEventRow).where(
                        AuditEventRow.action == "auth.login", AuditEventRow.outcome == "failure"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert len(failures) == 1


@pytest.mark.parametrize(
    ("username", "heading"),
    [
        ("clinician", "Find a patient"),
        ("cardiologist", "Open requests"),
        ("coordinator", "Active consultations across the network"),
        ("admin", "Facilities"),
    ],
)
async def test_each_role_lands_on_its_own_dashboard(live: Live, username: str, heading: str) -> None:
    http = await browser_login(live, username)
    async with http:
        async with http.get(f"{live.url}/dashboard") as resp:
            assert resp.status == 200
            assert heading in await resp.text()


async def test_pages_require_login_and_logout_ends_the_session(live: Live) -> None:
    async with ClientSession() as anonymous:
        async with anonymous.get(f"{live.url}/patients/1", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=")
    http = await browser_login(live, "clinician")
    async with http:
        token = await page_csrf(http, f"{live.url}/dashboard")
        async with http.post(f"{live.url}/logout", data={"csrf_token": token}, allow_redirects=False) as resp:
            assert resp.status == 303
        async with http.get(f"{live.url}/dashboard", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/login")


async def test_a_write_without_the_csrf_token_is_refused_and_changes_nothing(live: Live) -> None:
    http = await browser_login(live, "clinician")
    form = {"full_name": "Hoàng Văn Nam", "date_of_birth": "1980-05-05", "sex": "male", "cccd": "001080009999"}
    async with http:
        async with http.post(f"{live.url}/patients/new", data=form, allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.post(
            f"{live.url}/patients/new", data={**form, "csrf_token": "wrong"}, allow_redirects=False
        ) as resp:
            assert resp.status == 403
    async with live.services.db.transaction() as tx:
        assert (await tx.execute(select(PatientRow).where(PatientRow.cccd == "001080009999"))).first() is None


async def test_register_search_and_request_through_the_pages(live: Live) -> None:
    http = await browser_login(live, "clinician")
    async with http:
        token = await page_csrf(http, f"{live.url}/patients/new")
        bad = {
            "csrf_token": token,
            "full_name": "Hoàng Văn Nam",
            "date_of_birth": "1980-05-05",
            "sex": "male",
            "cccd": "12345",
        }
        async with http.post(f"{live.url}/patients/new", data=bad) as resp:
            assert resp.status == 400 and "12 digits" in await resp.text()
        good = {**bad, "cccd": "001080009999", "bhyt": "dn4010180009999"}
        async with http.post(f"{live.url}/patients/new", data=good, allow_redirects=False) as resp:
            assert resp.status == 303
            record_url = resp.headers["Location"]
        async with http.get(f"{live.url}{record_url}") as resp:
            text = await resp.text()
            assert "Hoàng Văn Nam" in text and "DN4010180009999" in text and "05/05/1980" in text
        async with http.get(f"{live.url}/patients", params={"q": "hoang van"}) as resp:
            assert "Hoàng Văn Nam" in await resp.text()
        async with http.get(f"{live.url}/patients", params={"q": "001080009999"}) as resp:
            assert "Hoàng Văn Nam" in await resp.text()
        patient_id = record_url.rsplit("/", 1)[1]
        new_url = f"{live.url}/patients/{patient_id}/consultations/new"
        token = await page_csrf(http, new_url)
        async with http.post(
            new_url,
            data={"csrf_token": token, "specialty": "cardiology", "urgency": "emergency", "summary": "Syncope, HR 38."},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"].endswith("/room")
        async with http.get(f"{live.url}{resp.headers['Location']}") as room:
            text = await room.text()
            assert room.status == 200 and "Hoàng Văn Nam" in text and "Syncope, HR 38." in text


async def test_a_record_is_closed_to_those_without_a_reason(live: Live) -> None:
    await open_consultation(live)  # patient 1, from clinician's station, accepted by cardiologist
    expectations = {
        "clinician": 200,
        "cardiologist": 200,
        "admin": 200,
        "clinician2": 403,
        "cardiologist2": 403,
        "neurologist": 403,
        "coordinator": 403,
    }
    for username, status in expectations.items():
        http = await browser_login(live, username)
        async with http, http.get(f"{live.url}/patients/1") as resp:
            assert resp.status == status, username
            if status == 403:
                assert "Giàng Thị Mỷ" not in await resp.text()
    async with live.services.db.transaction() as tx:
        denied = (
            (
                await tx.execute(
                    select(AuditEventRow).where(
                        AuditEventRow.action == "patient.read", AuditEventRow.outcome == "denied"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert len(denied) == 4 and all(row.patient_id == 1 for row in denied)


async def test_language_follows_choice_then_accept_language_then_vietnamese(live: Live) -> None:
    async with ClientSession() as http:
        async with http.get(f"{live.url}/login") as resp:
            assert "Đăng nhập" in await resp.text()
        async with http.get(f"{live.url}/login", headers={"Accept-Language": "en-GB,en;q=0.9"}) as resp:
            assert ">Log in<" in await resp.text()
    http = await browser_login(live, "clinician", lang="en")
    async with http:
        token = await page_csrf(http, f"{live.url}/dashboard")
        async with http.post(
            f"{live.url}/language", data={"csrf_token": token, "locale": "vi", "next": "/dashboard"}
        ) as resp:
            assert "Tìm bệnh nhân" in await resp.text()
    # The choice is remembered on the account, whatever the browser asks for next time.
    again = await browser_login(live, "clinician", lang="en")
    async with again, again.get(f"{live.url}/dashboard") as resp:
        assert "Tìm bệnh nhân" in await resp.text()


async def test_pages_carry_security_headers(live: Live) -> None:
    async with ClientSession() as http, http.get(f"{live.url}/login") as resp:
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"


async def test_api_rejects_bad_input_clearly(live: Live) -> None:
    token = await live.token("clinician")
    async with ClientSession() as http:
        async with http.get(f"{live.url}/api/v1/patients?q=giang") as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthenticated"
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{live.url}/api/v1/patients", data=b"{not json", headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid"
        async with http.post(
            f"{live.url}/api/v1/patients", json={"cccd": 1, "full_name": ["x"]}, headers=headers
        ) as resp:
            assert resp.status == 400
        async with http.post(
            f"{live.url}/api/v1/consultations",
            json={"patient_id": 1, "specialty": "cardiology", "urgency": "urgent", "summary": "x" * 300_000},
            headers=headers,
        ) as resp:
            assert resp.status == 413
        async with http.post(
            f"{live.url}/api/v1/consultations",
            json={"patient_id": 1, "specialty": "cardiology", "urgency": "whenever", "summary": "x"},
            headers=headers,
        ) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["field"] == "urgency"
    status, listing = await live.api("GET", "/api/v1/consultations?filter=mine", token)
    assert status == 200 and listing["consultations"] == []


async def test_loading_static_files_keeps_the_session(live: Live) -> None:
    http = await browser_login(live, "clinician")
    async with http:
        for path in ("/static/css/app.css", "/static/js/room.js", "/vendor/socket.io/socket.io.esm.min.js"):
            async with http.get(f"{live.url}{path}") as resp:
                assert resp.status == 200 and "tc_session" not in resp.cookies, path
        async with http.get(f"{live.url}/dashboard", allow_redirects=False) as resp:
            assert resp.status == 200


async def test_a_dead_session_cookie_is_cleared(live: Live) -> None:
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        http.cookie_jar.update_cookies({"tc_session": "stale"}, response_url=live.server.make_url("/"))
        async with http.get(f"{live.url}/dashboard", allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.cookies["tc_session"].value == ""
