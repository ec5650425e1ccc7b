"""Demo data: a small slice of the hub-and-spoke network, its staff, and a few patients. Idempotent."""

from __future__ import annotations

from datetime import date

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
    return logins
