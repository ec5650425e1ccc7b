"""`teleconsult facility|specialty|roster`: the operator shapes the network and keeps rosters from a shell."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.transport.test_cli import one_line_error, run


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("cli-network")
    assert run(tmp_path, "migrate").returncode == 0
    seeded = run(tmp_path, "seed", "--demo")
    assert seeded.returncode == 0, seeded.stderr
    assert "Demo rosters: every specialist on call around the clock" in seeded.stdout
    again = run(tmp_path, "seed", "--demo")
    assert again.returncode == 0 and "; 0 new shifts." in again.stdout  # seeding twice adds nothing
    return tmp_path


def query(tmp_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(tmp_path / "cli.sqlite3")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def a_day_ahead(days: int) -> str:
    """A local day well after the demo rosters (which run three weeks), as dd/mm/yyyy."""
    return (datetime.now(UTC).astimezone(ZoneInfo("Asia/Ho_Chi_Minh")) + timedelta(days=days)).strftime("%d/%m/%Y")


def test_the_demo_network_has_its_supporting_hubs_and_everyone_on_call(seeded: Path) -> None:
    listed = run(seeded, "facility", "list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "supported by: BVTW-CR, BVTW-BM]" in lines["TYT-CD"]
    assert "supported by: BVTW-BM]" in lines["TYT-TV"]  # through Lào Cai provincial hospital
    roster = run(seeded, "roster", "list", "--hub", "bvtw-bm", "--days", "1")
    assert roster.returncode == 0, roster.stderr
    on_call = roster.stdout.splitlines()[-1]
    assert "PGS. Phạm Minh Tuấn (cardiology)" in on_call and "TS. Đỗ Quang Huy (neurology)" in on_call
    assert "TS. Lê Thu Hà" not in roster.stdout  # she is at Chợ Rẫy


def test_facilities_specialties_and_support_from_the_command_line(seeded: Path) -> None:
    added = run(
        seeded, "facility", "add", "TTYT-BX", "--name", "Trung tâm Y tế Bát Xát", "--level", "district",
        "--province", "Lào Cai", "--parent", "BVT-LC",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert run(seeded, "facility", "support", "TTYT-BX", "BVTW-CR", "BVTW-BM").returncode == 0
    line = next(x for x in run(seeded, "facility", "list").stdout.splitlines() if x.startswith("TTYT-BX"))
    assert "district" in line and "parent: BVT-LC; supported by: BVTW-CR, BVTW-BM]" in line
    cleared = run(seeded, "facility", "support", "TTYT-BX", "--clear")
    assert "none" in cleared.stdout
    assert query(seeded, "SELECT count(*) FROM facility_support fs JOIN facilities f ON f.id = fs.facility_id "
                 "WHERE f.code = 'TTYT-BX'") == [(0,)]  # fmt: skip
    assert run(seeded, "specialty", "add", "dermatology", "--en", "Dermatology", "--vi", "Da liễu").returncode == 0
    assert "dermatology            Dermatology / Da liễu" in run(seeded, "specialty", "list").stdout
    events = query(
        seeded,
        "SELECT action, actor_user_id, source FROM audit_events WHERE entity_id IN ('TTYT-BX', 'dermatology') "
        "ORDER BY id",
    )
    assert events == [
        ("facility.create", None, "cli"),
        ("facility.support", None, "cli"),
        ("facility.support", None, "cli"),
        ("specialty.create", None, "cli"),
    ]


def test_roster_add_a_weekly_pattern_list_and_remove(seeded: Path) -> None:
    day = a_day_ahead(40)
    added = run(
        seeded, "roster", "add", "--user", "neurologist", "--date", day, "--from", "19:00", "--to", "07:00",
        "--weeks", "2", "--days", "mon,thu",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shifts = added.stdout.splitlines()
    assert len(shifts) == 4 and all("19:00 - " in s and "07:00  neurology  TS. Đỗ Quang Huy" in s for s in shifts)
    first_id = int(shifts[0].split()[1].rstrip(":"))
    stored = query(seeded, "SELECT starts_at, ends_at FROM on_call_shifts WHERE id = ?", first_id)
    # 19:00 local is 12:00 UTC; the night ends at 07:00 local the next day, 00:00 UTC.
    starts, ends = (datetime.fromisoformat(str(v)) for v in stored[0])
    assert (starts.hour, ends.hour, (ends - starts).total_seconds()) == (12, 0, 12 * 3600)
    listed = run(seeded, "roster", "list", "--hub", "BVTW-BM", "--date", day, "--days", "14")
    assert listed.stdout.count("TS. Đỗ Quang Huy") >= 4 and str(first_id) in listed.stdout
    assert "removed" in run(seeded, "roster", "remove", str(first_id)).stdout
    assert "no such shift" in one_line_error(run(seeded, "roster", "remove", str(first_id)))
    events = query(
        seeded,
        "SELECT action, actor_user_id, source FROM audit_events WHERE entity_type = 'on_call_shift' AND entity_id = ?",
        str(first_id),
    )
    assert events == [("roster.shift_add", None, "cli"), ("roster.shift_remove", None, "cli")]


def roster_add(user: str = "cardiologist", day: str = "01/01/2099", start: str = "07:00", *more: str) -> list[str]:
    return ["roster", "add", "--user", user, "--date", day, "--from", start, "--to", "19:00", *more]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (roster_add(day="tomorrow"), "dd/mm/yyyy"),
        (roster_add(start="7h"), "HH:MM"),
        (roster_add("coordinator"), "no active specialist"),
        (roster_add("cardiologist", "01/01/2099", "07:00", "--weeks", "99"), "weeks"),
        (roster_add("cardiologist", "01/01/2099", "07:00", "--days", "mon,someday"), "days"),
        (roster_add(day="01/01/2020"), "already over"),
        (["roster", "list", "--hub", "NOWHERE"], "NOWHERE"),
        (["facility", "support", "TYT-TV", "BVT-LC"], "not a central hospital"),
        (["facility", "support", "TYT-TV", "TYT-TV"], "itself"),
        (["facility", "support", "TYT-TV"], "--clear"),
        (["facility", "add", "TYT-TV", "--name", "Again", "--level", "commune"], "already exists"),
        (["facility", "add", "BVT-X", "--name", "X", "--level", "provincial", "--parent", "TYT-TV"], "higher level"),
        (["specialty", "add", "Bad Code", "--en", "x", "--vi", "y"], "specialty code"),
    ],
)
def test_bad_arguments_get_one_line_and_a_non_zero_exit(seeded: Path, args: list[str], expected: str) -> None:
    assert expected in one_line_error(run(seeded, *args))


def test_an_overlapping_shift_is_refused(seeded: Path) -> None:
    day = a_day_ahead(70)
    base = ["roster", "add", "--user", "cardiologist", "--date", day]
    assert run(seeded, *base, "--from", "07:00", "--to", "19:00").returncode == 0
    assert "already has a shift overlapping" in one_line_error(run(seeded, *base, "--from", "18:00", "--to", "20:00"))
