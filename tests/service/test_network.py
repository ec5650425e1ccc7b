"""The network and its rosters through the service: facilities, support, shifts in local time, who is on call."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from teleconsult.clock import FakeClock
from teleconsult.domain.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from teleconsult.domain.people import FacilityLevel
from teleconsult.services import Services
from teleconsult.services.network import NetworkService, parse_day, parse_weekdays
from teleconsult.storage.models import FacilityRow, FacilitySupportRow, OnCallShiftRow, SpecialtyRow
from tests.conftest import PASSWORD, World
from tests.service.support import audit_rows, count, rows

# The fake clock starts on Sunday 22/11/2026 at 02:00 UTC, 09:00 in Asia/Ho_Chi_Minh (UTC+7).
MONDAY = date(2026, 11, 23)
DAY = (time(7), time(19))
NIGHT = (time(19), time(7))


def network(services: Services) -> NetworkService:
    return NetworkService(services.db, services.clock, services.settings)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def second_hub(services: Services, net: NetworkService, world: World) -> tuple[int, int]:
    """Chợ Rẫy, a second central hospital, with a cardiologist of its own: (hub id, specialist id)."""
    hub = await net.add_facility(world.admin, "BVTW-CR", "Bệnh viện Chợ Rẫy", "central", "TP. Hồ Chí Minh", source="t")
    user_id = await services.directory.add_user(
        "cr.cardio", PASSWORD, "specialist", "BVTW-CR", display_name="TS. Lê Thu Hà", specialty="cardiology"
    )
    return hub.id, user_id


# -- facilities, specialties, support ---------------------------------------------------------------------------


async def test_admin_adds_and_updates_a_facility_and_it_is_audited(services: Services, world: World) -> None:
    net = network(services)
    added = await net.add_facility(
        world.admin, "ttyt-bx", "  Trung tâm Y tế  Bát Xát ", "district", "Lào Cai", "BVT-LC", source="t"
    )
    assert (added.code, added.name, added.level, added.hub_id) == (
        "TTYT-BX",
        "Trung tâm Y tế Bát Xát",
        FacilityLevel.DISTRICT,
        world.bvt_lc.id,
    )
    updated = await net.update_facility(
        world.admin, "TTYT-BX", "Trung tâm Y tế huyện Bát Xát", "district", "Lào Cai", None, source="t"
    )
    assert updated.hub_id is None and updated.id == added.id
    with pytest.raises(Conflict):
        await net.add_facility(world.admin, "TTYT-BX", "Again", "district", source="t")
    with pytest.raises(NotFound):
        await net.update_facility(world.admin, "NOWHERE", "X", "district", source="t")
    events = await audit_rows(services, entity_type="facility", outcome="success")
    assert [(e.action, e.entity_id, e.actor_user_id) for e in events] == [
        ("facility.create", "TTYT-BX", world.admin.user_id),
        ("facility.update", "TTYT-BX", world.admin.user_id),
    ]


async def test_only_admins_shape_the_network_and_refusals_are_audited_and_change_nothing(
    services: Services, world: World
) -> None:
    net = network(services)
    facilities_before = await count(services, FacilityRow)
    for actor in (world.coord, world.clin_a, world.spec_cardio):
        with pytest.raises(PermissionDenied):
            await net.add_facility(actor, "TYT-X", "Trạm Y tế X", "commune", source="t")
        with pytest.raises(PermissionDenied):
            await net.update_facility(actor, "TYT-A", "Renamed", "commune", source="t")
        with pytest.raises(PermissionDenied):
            await net.set_support(actor, "TYT-B", ["BVTW"], source="t")
        with pytest.raises(PermissionDenied):
            await net.save_specialty(actor, "dermatology", "Dermatology", "Da liễu", source="t")
        with pytest.raises(PermissionDenied):
            await net.network(actor, source="t")
    assert await count(services, FacilityRow) == facilities_before
    assert await count(services, FacilitySupportRow) == 0
    assert await count(services, SpecialtyRow, SpecialtyRow.code == "dermatology") == 0
    [tyt_a] = await rows(services, FacilityRow, FacilityRow.id == world.tyt_a.id)
    assert tyt_a.name == world.tyt_a.name
    denied = await audit_rows(services, outcome="denied")
    assert len(denied) == 15
    assert {e.actor_user_id for e in denied} == {world.coord.user_id, world.clin_a.user_id, world.spec_cardio.user_id}
    assert {e.action for e in denied} == {
        "facility.create",
        "facility.update",
        "facility.support",
        "specialty.save",
        "network.view",
    }


async def test_the_referral_line_runs_upwards(services: Services, world: World) -> None:
    net = network(services)
    with pytest.raises(ValidationFailed, match="higher level"):
        await net.add_facility(world.admin, "BVT-X", "Provincial", "provincial", "", "TYT-A", source="t")
    with pytest.raises(ValidationFailed, match="own parent"):
        await net.update_facility(world.admin, "BVT-LC", world.bvt_lc.name, "provincial", "", "BVT-LC", source="t")
    with pytest.raises(ValidationFailed, match="level must be"):
        await net.add_facility(world.admin, "BVT-X", "Provincial", "regional", source="t")
    with pytest.raises(NotFound):
        await net.add_facility(world.admin, "TYT-X", "Commune", "commune", "", "NOWHERE", source="t")
    # BVT-LC has the commune station TYT-A below it: it cannot become a commune station itself.
    with pytest.raises(Conflict):
        await net.update_facility(world.admin, "BVT-LC", world.bvt_lc.name, "commune", "", "BVTW", source="t")
    with pytest.raises(Conflict, match="below it"):
        await net.update_facility(world.admin, "BVTW", world.bvtw.name, "provincial", "", None, source="t")
    # Specialists work at Chợ Rẫy: it stays a central hospital.
    await second_hub(services, net, world)
    with pytest.raises(Conflict, match="specialists"):
        await net.update_facility(world.admin, "BVTW-CR", "Chợ Rẫy", "provincial", "", None, source="t")
    [bvt_lc] = await rows(services, FacilityRow, FacilityRow.id == world.bvt_lc.id)
    assert (bvt_lc.level, bvt_lc.hub_id) == ("provincial", world.bvtw.id)


async def test_supporting_hubs_are_central_ordered_and_computed_along_the_referral_line(
    services: Services, world: World
) -> None:
    net = network(services)
    cr = await net.add_facility(world.admin, "BVTW-CR", "Bệnh viện Chợ Rẫy", "central", source="t")
    with pytest.raises(ValidationFailed, match="not a central hospital"):
        await net.set_support(world.admin, "TYT-B", ["BVT-LC"], source="t")
    with pytest.raises(ValidationFailed, match="itself"):
        await net.set_support(world.admin, "BVTW", ["BVTW"], source="t")
    with pytest.raises(ValidationFailed, match="twice"):
        await net.set_support(world.admin, "TYT-B", ["BVTW", "bvtw"], source="t")
    with pytest.raises(NotFound):
        await net.set_support(world.admin, "TYT-B", ["NOWHERE"], source="t")
    with pytest.raises(NotFound):
        await net.set_support(world.admin, "NOWHERE", ["BVTW"], source="t")
    assert await count(services, FacilitySupportRow) == 0

    assert [h.code for h in await net.set_support(world.admin, "TYT-B", ["BVTW-CR", "BVTW"], source="t")] == [
        "BVTW-CR",
        "BVTW",
    ]
    await net.set_support(world.admin, "BVT-LC", ["BVTW-CR"], source="t")
    listed = {f.code: f for f in (await net.network(world.admin, source="t")).facilities}
    assert [h.code for h in listed["TYT-B"].support] == ["BVTW-CR", "BVTW"]
    assert [h.code for h in listed["TYT-B"].hubs] == ["BVTW-CR", "BVTW"]
    # TYT-A has no hub of its own: its provincial hospital's (Chợ Rẫy), then Bạch Mai up the referral line.
    assert listed["TYT-A"].support == () and listed["TYT-A"].parent is not None
    assert [h.code for h in listed["TYT-A"].hubs] == ["BVTW-CR", "BVTW"]
    assert [f.level for f in listed.values()][:2] == [FacilityLevel.CENTRAL, FacilityLevel.CENTRAL]

    # Setting the list again replaces it (priority order included); an empty list clears it.
    await net.set_support(world.admin, "TYT-B", ["BVTW", "BVTW-CR"], source="t")
    stored = await rows(services, FacilitySupportRow, FacilitySupportRow.facility_id == world.tyt_b.id)
    assert sorted((r.priority, r.hub_id) for r in stored) == [(1, world.bvtw.id), (2, cr.id)]
    await net.set_support(world.admin, "TYT-B", [], source="t")
    assert await count(services, FacilitySupportRow, FacilitySupportRow.facility_id == world.tyt_b.id) == 0
    # A central hospital that supports others cannot step down.
    with pytest.raises(Conflict, match="supports others"):
        await net.update_facility(world.admin, "BVTW-CR", cr.name, "provincial", source="t")
    actions = [e.action for e in await audit_rows(services, action="facility.support")]
    assert actions == ["facility.support"] * 4


async def test_specialties_are_added_and_renamed(services: Services, world: World) -> None:
    net = network(services)
    added, created = await net.save_specialty(world.admin, "Dermatology", "Dermatology", "Da liễu", source="t")
    assert created and added.code == "dermatology"
    renamed, created = await net.save_specialty(world.admin, "dermatology", "Dermatology", "Da  liễu ", source="t")
    assert not created and renamed.name_vi == "Da liễu"
    with pytest.raises(ValidationFailed):
        await net.save_specialty(world.admin, "derm-1", "Dermatology", "Da liễu", source="t")
    with pytest.raises(ValidationFailed):
        await net.save_specialty(world.admin, "dentistry", "Dentistry", "   ", source="t")
    assert [e.action for e in await audit_rows(services, entity_type="specialty")] == [
        "specialty.create",
        "specialty.update",
    ]
    codes = [s.code for s in (await net.network(None, source="cli")).specialties]
    assert codes == ["cardiology", "dermatology", "neurology"]


# -- rosters ------------------------------------------------------------------------------------------------------


async def test_shifts_are_entered_in_local_time_and_stored_in_utc(services: Services, world: World) -> None:
    net = network(services)
    day = await net.add_shift(world.coord, world.bvtw.id, world.spec_cardio.user_id, MONDAY, *DAY, source="t")
    night = await net.add_shift(world.coord, world.bvtw.id, world.spec_cardio2.user_id, MONDAY, *NIGHT, source="t")
    # 07:00-19:00 in Hồ Chí Minh City is 00:00-12:00 UTC; the night shift runs past midnight into Tuesday.
    assert (day.starts_at, day.ends_at) == (utc(2026, 11, 23, 0), utc(2026, 11, 23, 12))
    assert (night.starts_at, night.ends_at) == (utc(2026, 11, 23, 12), utc(2026, 11, 24, 0))
    assert day.specialty == "cardiology" and night.display_name == world.spec_cardio2.display_name
    stored = await rows(services, OnCallShiftRow, OnCallShiftRow.id == night.id)
    assert (stored[0].starts_at, stored[0].ends_at, stored[0].created_by_user_id) == (
        utc(2026, 11, 23, 12),
        utc(2026, 11, 24, 0),
        world.coord.user_id,
    )
    week = await net.roster(world.coord, None, date(2026, 11, 26), source="t")
    assert week.hub.id == world.bvtw.id and week.monday == MONDAY
    assert [s.id for s in week.shifts] == [day.id, night.id]
    assert {m.username for m in week.members} == {"spec.cardio", "spec.cardio2", "spec.neuro"}
    # The week before does not show them; a shift is listed in every week it overlaps.
    assert (await net.roster(world.coord, None, date(2026, 11, 22), source="t")).shifts == []
    events = await audit_rows(services, action="roster.shift_add")
    assert [(e.entity_id, e.actor_user_id) for e in events] == [
        (str(day.id), world.coord.user_id),
        (str(night.id), world.coord.user_id),
    ]


async def test_an_overlapping_shift_of_the_same_specialist_is_refused(services: Services, world: World) -> None:
    net = network(services)
    await net.add_shift(world.coord, world.bvtw.id, world.spec_cardio.user_id, MONDAY, *NIGHT, source="t")
    with pytest.raises(Conflict, match="overlapping 24/11/2026 06:00"):
        await net.add_shift(
            world.coord, world.bvtw.id, world.spec_cardio.user_id, date(2026, 11, 24), time(6), time(8), source="t"
        )
    # Back to back is not an overlap, and a colleague may be on call at the same time.
    await net.add_shift(world.coord, world.bvtw.id, world.spec_cardio.user_id, date(2026, 11, 24), *DAY, source="t")
    await net.add_shift(world.coord, world.bvtw.id, world.spec_cardio2.user_id, MONDAY, *NIGHT, source="t")
    assert await count(services, OnCallShiftRow) == 3


async def test_a_weekly_pattern_is_all_or_nothing_unless_taken_days_are_skipped(
    services: Services, world: World
) -> None:
    net = network(services)
    user = world.spec_neuro.user_id
    pattern = await net.add_shifts(
        world.admin, world.bvtw.id, user, MONDAY, *DAY, weeks=2, weekdays=parse_weekdays("mon,wed"), source="t"
    )
    assert [s.starts_at.date() for s in pattern.added] == [
        date(2026, 11, 23),
        date(2026, 11, 25),
        date(2026, 11, 30),
        date(2026, 12, 2),
    ]
    with pytest.raises(Conflict):
        await net.add_shifts(world.admin, world.bvtw.id, user, MONDAY, *DAY, weeks=1, weekdays=range(7), source="t")
    assert await count(services, OnCallShiftRow) == 4
    filled = await net.add_shifts(
        world.admin, world.bvtw.id, user, MONDAY, *DAY, weeks=1, weekdays=range(7), skip_taken=True, source="t"
    )
    assert (len(filled.added), filled.skipped_taken) == (5, 2)
    # Started on a past day: the days already over are left out.
    past = await net.add_shifts(
        world.admin,
        world.bvtw.id,
        world.spec_cardio.user_id,
        date(2026, 11, 20),
        *DAY,
        weeks=1,
        weekdays=range(7),
        source="t",
    )
    assert past.skipped_over == 2 and past.added[0].starts_at == utc(2026, 11, 22, 0)
    with pytest.raises(ValidationFailed, match="weeks"):
        await net.add_shifts(world.admin, world.bvtw.id, user, MONDAY, *DAY, weeks=27, source="t")
    with pytest.raises(ValidationFailed, match="days"):
        parse_weekdays("mon,funday")


async def test_shifts_must_be_real_current_and_for_a_specialist_of_the_hub(services: Services, world: World) -> None:
    net = network(services)
    hub = world.bvtw.id
    with pytest.raises(ValidationFailed, match="already over"):
        await net.add_shift(world.coord, hub, world.spec_cardio.user_id, date(2026, 11, 21), *DAY, source="t")
    with pytest.raises(ValidationFailed, match="specialist"):
        await net.add_shift(world.coord, hub, world.coord.user_id, MONDAY, *DAY, source="t")
    with pytest.raises(ValidationFailed, match="not a specialist of this hub"):
        await net.add_shift(world.admin, world.bvt_lc.id, world.spec_cardio.user_id, MONDAY, *DAY, source="t")
    assert await count(services, OnCallShiftRow) == 0
    # The same time twice is a 24-hour shift.
    whole = await net.add_shift(world.coord, hub, world.spec_cardio.user_id, MONDAY, time(7), time(7), source="t")
    assert (whole.starts_at, whole.ends_at) == (utc(2026, 11, 23, 0), utc(2026, 11, 24, 0))
    assert parse_day("23/11/2026") == parse_day("2026-11-23") == MONDAY
    with pytest.raises(ValidationFailed):
        parse_day("11/23/2026")


async def test_a_coordinator_keeps_only_their_own_hubs_roster(services: Services, world: World) -> None:
    net = network(services)
    cr_hub, cr_cardio = await second_hub(services, net, world)
    with pytest.raises(PermissionDenied):
        await net.add_shift(world.coord, cr_hub, cr_cardio, MONDAY, *DAY, source="t")
    with pytest.raises(PermissionDenied):
        await net.roster(world.coord, cr_hub, MONDAY, source="t")
    with pytest.raises(PermissionDenied):
        await net.on_call_now(world.coord, cr_hub, source="t")
    for outsider in (world.clin_a, world.spec_cardio):
        with pytest.raises(PermissionDenied):
            await net.roster(outsider, None, MONDAY, source="t")
        with pytest.raises(PermissionDenied):
            await net.add_shift(outsider, world.bvtw.id, world.spec_cardio.user_id, MONDAY, *DAY, source="t")
    assert await count(services, OnCallShiftRow) == 0
    # The administrator keeps any hub's roster; the coordinator then cannot remove that shift either.
    shift = await net.add_shift(world.admin, cr_hub, cr_cardio, MONDAY, *DAY, source="t")
    with pytest.raises(PermissionDenied):
        await net.remove_shift(world.coord, shift.id, source="t")
    assert await count(services, OnCallShiftRow) == 1
    denied = await audit_rows(services, outcome="denied")
    assert len(denied) == 8
    assert {e.entity_id for e in denied if e.actor_user_id == world.coord.user_id} == {str(cr_hub)}
    assert [h.code for h in (await net.roster(world.admin, None, MONDAY, source="t")).hubs] == ["BVTW", "BVTW-CR"]
    assert [h.code for h in (await net.roster(world.coord, None, MONDAY, source="t")).hubs] == ["BVTW"]


async def test_on_call_now_follows_the_clock(services: Services, world: World, clock: FakeClock) -> None:
    net = network(services)
    hub = world.bvtw.id
    sunday = date(2026, 11, 22)
    await net.add_shift(world.coord, hub, world.spec_cardio.user_id, sunday, *DAY, source="t")
    await net.add_shift(world.coord, hub, world.spec_cardio2.user_id, sunday, *NIGHT, source="t")
    await net.add_shift(world.coord, hub, world.spec_neuro.user_id, sunday, time(10), time(12), source="t")

    async def on_call() -> list[str]:
        return [s.display_name for s in await net.on_call_now(world.coord, hub, source="t")]

    assert await on_call() == [world.spec_cardio.display_name]  # 09:00 local
    clock.advance(3600)  # 10:00: the neurologist's short shift starts
    assert sorted(await on_call()) == sorted([world.spec_cardio.display_name, world.spec_neuro.display_name])
    clock.advance(9 * 3600)  # 19:00: the day shift hands over to the night
    assert await on_call() == [world.spec_cardio2.display_name]
    clock.advance(12 * 3600 - 1)  # 06:59:59 on Monday
    assert await on_call() == [world.spec_cardio2.display_name]
    clock.advance(1)
    assert await on_call() == []


async def test_removing_deletes_a_future_shift_ends_a_current_one_and_keeps_a_past_one(
    services: Services, world: World, clock: FakeClock
) -> None:
    net = network(services)
    hub = world.bvtw.id
    current = await net.add_shift(world.coord, hub, world.spec_cardio.user_id, date(2026, 11, 22), *DAY, source="t")
    future = await net.add_shift(world.coord, hub, world.spec_cardio.user_id, MONDAY, *DAY, source="t")
    assert await net.remove_shift(world.coord, future.id, source="t") == "removed"
    assert await count(services, OnCallShiftRow, OnCallShiftRow.id == future.id) == 0
    assert await net.remove_shift(world.coord, current.id, source="t") == "ended"
    [ended] = await rows(services, OnCallShiftRow, OnCallShiftRow.id == current.id)
    assert ended.ends_at == clock.now() and await net.on_call_now(world.coord, hub, source="t") == []
    clock.advance(60)
    with pytest.raises(Conflict, match="past shifts"):
        await net.remove_shift(world.coord, current.id, source="t")
    with pytest.raises(NotFound):
        await net.remove_shift(world.coord, future.id, source="t")
    events = await audit_rows(services, action="roster.shift_remove")
    assert [(e.entity_id, e.detail) for e in events] == [(str(future.id), "removed"), (str(current.id), "ended")]


async def test_the_operator_console_acts_without_a_user(services: Services, world: World) -> None:
    net = network(services)
    user_id, hub_id = await net.specialist_by_username("spec.neuro")
    assert (user_id, hub_id) == (world.spec_neuro.user_id, world.bvtw.id)
    with pytest.raises(NotFound):
        await net.specialist_by_username("coord")
    shift = await net.add_shift(None, hub_id, user_id, MONDAY, *NIGHT, source="cli")
    assert [s.id for s in await net.shifts(None, hub_id, utc(2026, 11, 23), utc(2026, 11, 24), source="cli")] == [
        shift.id
    ]
    [event] = await audit_rows(services, action="roster.shift_add")
    assert (event.actor_user_id, event.source) == (None, "cli")
