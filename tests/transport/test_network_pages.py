"""The network and roster pages over real HTTP: forms with CSRF, POST-redirect-GET, roles, local time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from teleconsult.storage.models import AuditEventRow, FacilityRow, FacilitySupportRow, OnCallShiftRow
from tests.transport.conftest import Live
from tests.transport.test_http import browser_login, page_csrf

pytestmark = pytest.mark.asyncio
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def day_block(page: str, day: str) -> str:
    """The list of shifts under one day of the week view."""
    found = re.search(rf'<ul class="roster-day" data-day="{day}">(.*?)</ul>', page, re.S)
    assert found, f"no day {day} on the page"
    return found.group(1)


async def test_admin_adds_a_facility_and_sets_its_supporting_hubs_through_the_forms(live: Live) -> None:
    http = await browser_login(live, "admin")
    async with http:
        token = await page_csrf(http, f"{live.url}/admin/network")
        form = {"code": "TTYT-BX", "name": "Trung tâm Y tế Bát Xát", "level": "district", "province": "Lào Cai"}
        async with http.post(f"{live.url}/admin/network/facilities", data=form, allow_redirects=False) as resp:
            assert resp.status == 403  # no CSRF token
        async with http.post(
            f"{live.url}/admin/network/facilities",
            data={**form, "parent": "BVT-LC", "csrf_token": token},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            location = resp.headers["Location"]
        async with http.get(f"{live.url}{location}") as resp:
            page = await resp.text()
            assert "The facility has been added." in page
            assert re.search(r'<tr data-code="TTYT-BX">.*?Trung tâm Y tế Bát Xát.*?BVT-LC', page, re.S)
        async with http.post(
            f"{live.url}/admin/network/support",
            data={"csrf_token": token, "facility": "TTYT-BX", "hub_1": "BVTW-CR", "hub_2": "BVTW-BM", "hub_3": ""},
        ) as resp:
            page = await resp.text()
            assert resp.status == 200 and "The supporting hubs have been saved." in page
            row = re.search(r'<tr data-code="TTYT-BX">(.*?)</tr>', page, re.S).group(1)  # type: ignore[union-attr]
            assert "1. BVTW-CR, 2. BVTW-BM" in row and "BVTW-CR → BVTW-BM" in row
        # A provincial hospital cannot support anyone: the form comes back with the reason, nothing changes.
        async with http.post(
            f"{live.url}/admin/network/support",
            data={"csrf_token": token, "facility": "TTYT-BX", "hub_1": "BVT-LC"},
        ) as resp:
            assert resp.status == 400
            assert "BVT-LC is not a central hospital" in await resp.text()
        async with http.post(
            f"{live.url}/admin/network/facilities", data={**form, "csrf_token": token}
        ) as resp:  # the same code again
            assert resp.status == 409 and "already exists" in await resp.text()
        async with http.post(
            f"{live.url}/admin/network/specialties",
            data={"csrf_token": token, "code": "dermatology", "name_en": "Dermatology", "name_vi": "Da liễu"},
        ) as resp:
            assert resp.status == 200 and "Da liễu" in await resp.text()
    async with live.services.db.transaction() as tx:
        facility = (await tx.execute(select(FacilityRow).where(FacilityRow.code == "TTYT-BX"))).scalar_one()
        support = (
            await tx.execute(
                select(FacilityRow.code)
                .join(FacilitySupportRow, FacilitySupportRow.hub_id == FacilityRow.id)
                .where(FacilitySupportRow.facility_id == facility.id)
                .order_by(FacilitySupportRow.priority)
            )
        ).scalars()
        assert list(support) == ["BVTW-CR", "BVTW-BM"]


async def test_clinicians_and_specialists_may_not_open_the_network_or_a_roster(live: Live) -> None:
    for username in ("clinician", "cardiologist"):
        http = await browser_login(live, username)
        async with http:
            token = await page_csrf(http, f"{live.url}/dashboard")
            for path in ("/admin/network", "/roster"):
                async with http.get(f"{live.url}{path}") as resp:
                    assert resp.status == 403, (username, path)
            async with http.post(
                f"{live.url}/admin/network/facilities",
                data={"csrf_token": token, "code": "TYT-X", "name": "X", "level": "commune"},
            ) as resp:
                assert resp.status == 403
            async with http.post(
                f"{live.url}/roster/shifts",
                data={
                    "csrf_token": token,
                    "hub": "1",
                    "user": "3",
                    "day": "2099-01-01",
                    "start": "07:00",
                    "end": "19:00",
                },
            ) as resp:
                assert resp.status == 403
                text = await resp.text()
            assert 'href="/roster"' not in text and 'href="/admin/network"' not in text  # not in their menu
    coordinator = await browser_login(live, "coordinator")
    async with coordinator, coordinator.get(f"{live.url}/admin/network") as resp:
        assert resp.status == 403
    async with live.services.db.transaction() as tx:
        assert (await tx.execute(select(FacilityRow).where(FacilityRow.code == "TYT-X"))).first() is None
        denied = (await tx.execute(select(AuditEventRow).where(AuditEventRow.outcome == "denied"))).scalars().all()
    assert {e.action for e in denied} >= {"network.view", "roster.view", "facility.create", "roster.shift_add"}


async def test_coordinator_adds_a_night_shift_and_sees_it_in_local_time(live: Live) -> None:
    # A Thursday well after the demo rosters (three weeks), so that nobody is on call then yet.
    local_today = datetime.now(UTC).astimezone(HCM).date()
    day = local_today + timedelta(days=35 + (3 - local_today.weekday()) % 7)
    http = await browser_login(live, "coordinator")
    async with http:
        async with http.get(f"{live.url}/roster") as resp:
            page = await resp.text()
            assert resp.status == 200 and 'id="on-call-now"' in page
            on_call = re.search(r'<ul id="on-call-now">(.*?)</ul>', page, re.S).group(1)  # type: ignore[union-attr]
            assert "PGS. Phạm Minh Tuấn" in on_call and "TS. Đỗ Quang Huy" in on_call  # the demo rosters
            assert "TS. Lê Thu Hà" not in on_call  # Chợ Rẫy's, not this hub's
            member = re.search(r'<option value="(\d+)"[^>]*>TS\. Đỗ Quang Huy', page).group(1)  # type: ignore[union-attr]
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            hub = re.search(r'data-hub-id="(\d+)"', page).group(1)  # type: ignore[union-attr]
        shift = {
            "csrf_token": token,
            "hub": hub,
            "user": member,
            "day": day.isoformat(),
            "start": "19:00",
            "end": "07:00",
        }
        async with http.post(f"{live.url}/roster/shifts", data=shift, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
            location = resp.headers["Location"]
        async with http.get(f"{live.url}{location}") as resp:
            page = await resp.text()
        assert "The shift has been added to the roster." in page
        thursday = day_block(page, day.isoformat())
        next_morning = (day + timedelta(days=1)).strftime("%d/%m")
        assert "TS. Đỗ Quang Huy" in thursday and f"19:00–07:00 ({next_morning})" in thursday
        assert "TS. Đỗ Quang Huy" not in day_block(page, (day + timedelta(days=1)).isoformat())
        # The same night again overlaps: refused, shown on the page with the form.
        async with http.post(f"{live.url}/roster/shifts", data=shift) as resp:
            assert resp.status == 409 and "already has a shift overlapping" in await resp.text()
        that_day = datetime.combine(day, datetime.min.time(), tzinfo=HCM)
        async with live.services.db.transaction() as tx:
            stored = (
                (await tx.execute(select(OnCallShiftRow).where(OnCallShiftRow.starts_at >= that_day))).scalars().all()
            )
        assert len(stored) == 1
        # 19:00 in Hồ Chí Minh City is 12:00 UTC; the shift ends at midnight UTC, 07:00 the next morning there.
        assert stored[0].starts_at == datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        assert stored[0].ends_at - stored[0].starts_at == timedelta(hours=12)
        async with http.post(
            f"{live.url}/roster/shifts/{stored[0].id}/remove",
            data={"csrf_token": token, "hub": hub, "week": day.isoformat()},
        ) as resp:
            page = await resp.text()
            assert resp.status == 200 and "The shift has been removed." in page
            assert "TS. Đỗ Quang Huy" not in day_block(page, day.isoformat())


async def test_the_roster_page_speaks_vietnamese(live: Live) -> None:
    http = await browser_login(live, "coordinator", lang="vi")
    async with http, http.get(f"{live.url}/roster") as resp:
        page = await resp.text()
        assert "Lịch trực" in page and "Đang trực" in page
