"""Demo data: a small slice of the hub-and-spoke network, its staff, and a few patients. Idempotent."""

from __future__ import annotations

from datetime import date, time, timedelta

from teleconsult.display import to_local
from teleconsult.domain.errors import Conflict
from teleconsult.domain.patients import PatientDraft, Sex
from teleconsult.domain.people import FacilityLevel
from teleconsult.services import Services

DEMO_PASSWORD = "demo-password-2026"

SPECIALTIES = [
    ("cardiology", "Cardiology", "Tim mạch"),
    ("neurology", "Neurology", "Thần kinh"),
    ("pediatrics", "Pediatrics", "Nhi khoa"),
    ("obstetrics", "Obstetrics", "Sản khoa"),
    ("infectious_diseases", "Infectious diseases", "Bệnh nhiệt đới"),
    ("emergency", "Emergency medicine", "Cấp cứu"),
]

# (code, name, level, province, hub code)
FACILITIES = [
    ("BVTW-BM", "Bạch Mai Hospital", FacilityLevel.CENTRAL, "Hà Nội", None),
    ("BVTW-CR", "Chợ Rẫy Hospital", FacilityLevel.CENTRAL, "TP. Hồ Chí Minh", None),
    ("BVT-LC", "Lào Cai Provincial General Hospital", FacilityLevel.PROVINCIAL, "Lào Cai", "BVTW-BM"),
    ("TTYT-SP", "Sa Pa District Health Centre", FacilityLevel.DISTRICT, "Lào Cai", "BVT-LC"),
    ("TYT-TV", "Tả Van Commune Health Station", FacilityLevel.COMMUNE, "Lào Cai", "BVT-LC"),
    ("TYT-CD", "Côn Đảo Commune Health Station", FacilityLevel.COMMUNE, "Bà Rịa - Vũng Tàu", "BVTW-CR"),
]

# facility code -> the central hospitals that support it, best first (besides its referral line)
SUPPORT = {
    "TYT-CD": ["BVTW-CR", "BVTW-BM"],
    "BVT-LC": ["BVTW-BM"],
}

# Every demo specialist is on call around the clock: day 07:00-19:00 and night 19:00-07:00, local time.
SHIFTS = [(time(7), time(19)), (time(19), time(7))]
ROSTER_WEEKS = 3

# (username, display name, role, facility, specialty)
USERS = [
    ("clinician", "BS. Nguyễn Thị Lan", "clinician", "TYT-TV", None),
    ("clinician2", "BS. Trần Văn Hải", "clinician", "TYT-CD", None),
    ("cardiologist", "PGS. Phạm Minh Tuấn", "specialist", "BVTW-BM", "cardiology"),
    ("cardiologist2", "TS. Lê Thu Hà", "specialist", "BVTW-CR", "cardiology"),
    ("neurologist", "TS. Đỗ Quang Huy", "specialist", "BVTW-BM", "neurology"),
    ("coordinator", "CN. Vũ Thị Mai", "coordinator", "BVTW-BM", None),
    ("admin", "Quản trị hệ thống", "admin", "BVTW-BM", None),
]

# Fictional patients; CCCD/BHYT numbers follow the formats and belong to no one.
PATIENTS = [
    (
        "TYT-TV",
        PatientDraft(
            "010190001234",
            "Giàng Thị Mỷ",
            date(1958, 3, 14),
            Sex.FEMALE,
            "HN4010190001234",
            "Thôn Lao Chải, Tả Van",
            "Lào Cai",
        ),
    ),
    ("TYT-TV", PatientDraft("010185005678", "Lý Văn Sử", date(1971, 9, 2), Sex.MALE, None, "Tả Van", "Lào Cai")),
    (
        "TYT-CD",
        PatientDraft(
            "077192003456",
            "Phan Thị Hồng",
            date(1990, 12, 25),
            Sex.FEMALE,
            "DN4770192003456",
            "Côn Sơn, Côn Đảo",
            "Bà Rịa - Vũng Tàu",
        ),
    ),
]

_ROLE_LABEL = {"clinician": "clinician", "specialist": "specialist", "coordinator": "coordinator", "admin": "admin"}


async def seed_demo(services: Services) -> list[tuple[str, str]]:
    for code, name_en, name_vi in SPECIALTIES:
        await services.directory.ensure_specialty(code, name_en, name_vi)
    for code, name, level, province, hub in FACILITIES:
        await services.directory.ensure_facility(code, name, level, province, hub)
    logins = []
    for username, display, role, facility, specialty in USERS:
        await services.directory.add_user(
            username, DEMO_PASSWORD, role, facility, display_name=display, specialty=specialty, exist_ok=True
        )
        what = _ROLE_LABEL[role] + (f" ({specialty})" if specialty else "")
        logins.append((username, f"{what} at {facility}: {display}"))
    for facility_code, draft in PATIENTS:
        facility = await services.directory.facility_by_code(facility_code)
        try:
            await services.patients.register_as_system(draft, facility.id, source="seed")
        except Conflict:
            pass  # already seeded
    await seed_network(services)
    return logins


async def seed_network(services: Services) -> None:
    """Supporting hubs, and every demo specialist on call around the clock from yesterday evening for the
    coming weeks, so that a request pairs out of the box. Shifts already there are left as they are."""
    network = services.network
    current = {f.code: [h.code for h in f.support] for f in (await network.network(None, source="seed")).facilities}
    for facility_code, hubs in SUPPORT.items():
        if current.get(facility_code) != hubs:
            await network.set_support(None, facility_code, hubs, source="seed")
    yesterday = to_local(services.clock.now(), services.settings.display_timezone).date() - timedelta(days=1)
    added = 0
    for username, _display, role, _facility, _specialty in USERS:
        if role != "specialist":
            continue
        user_id, hub_id = await network.specialist_by_username(username)
        for start, end in SHIFTS:
            result = await network.add_shifts(
                None,
                hub_id,
                user_id,
                yesterday,
                start,
                end,
                weeks=ROSTER_WEEKS,
                weekdays=range(7),
                skip_taken=True,
                source="seed",
            )
            added += len(result.added)
    until = yesterday + timedelta(weeks=ROSTER_WEEKS)
    print(
        f"Demo rosters: every specialist on call around the clock (07:00-19:00, 19:00-07:00, "
        f"{services.settings.display_timezone}) until {until:%d/%m/%Y} 07:00; {added} new shifts.",
        flush=True,
    )
