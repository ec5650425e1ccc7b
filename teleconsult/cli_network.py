"""Command-line tools for the hub-and-spoke network: facilities, specialties, supporting hubs, on-call rosters.

The operator's console acts as the system (``actor=None``), audited with source "cli". Dates are dd/mm/yyyy
(or YYYY-MM-DD) and times HH:MM in the display timezone (Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from teleconsult.domain.errors import NotFound, ValidationFailed
from teleconsult.domain.people import FacilityLevel
from teleconsult.services.network import NetworkService, Shift, parse_clock, parse_day, parse_weekdays
from teleconsult.settings import Settings

SOURCE = "cli"


def _run(settings: Settings, work: Any) -> Any:
    from teleconsult.cli import with_services

    async def with_network(services: Any) -> Any:
        return await work(services.network)

    return asyncio.run(with_services(settings, with_network))


# -- facilities and specialties -----------------------------------------------------------------------------------


def cmd_facility_add(args: argparse.Namespace, settings: Settings) -> int:
    async def work(net: NetworkService) -> Any:
        save = net.update_facility if args.update else net.add_facility
        return await save(None, args.code, args.name, args.level, args.province or "", args.parent, source=SOURCE)

    facility = _run(settings, work)
    print(f"facility {facility.code} {'updated' if args.update else 'added'} (id {facility.id})")
    return 0


def cmd_facility_list(args: argparse.Namespace, settings: Settings) -> int:
    network = _run(settings, lambda net: net.network(None, source=SOURCE))
    for f in network.facilities:
        parent = f.parent.code if f.parent else "-"
        hubs = ", ".join(h.code for h in f.hubs) or "-"
        print(f"{f.code:<12} {f.level.value:<10} {f.name}  [parent: {parent}; supported by: {hubs}]")
    return 0


def cmd_facility_support(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.hubs) == bool(args.clear):
        raise ValidationFailed("name the supporting hubs, best first, or pass --clear")
    hubs = _run(settings, lambda net: net.set_support(None, args.facility, args.hubs, source=SOURCE))
    listed = ", ".join(h.code for h in hubs) or "none (the referral line only)"
    print(f"{args.facility.upper()} is supported by: {listed}")
    return 0


def cmd_specialty_add(args: argparse.Namespace, settings: Settings) -> int:
    specialty, created = _run(
        settings, lambda net: net.save_specialty(None, args.code, args.en, args.vi, source=SOURCE)
    )
    print(f"specialty {specialty.code} {'added' if created else 'renamed'}")
    return 0


def cmd_specialty_list(args: argparse.Namespace, settings: Settings) -> int:
    for s in _run(settings, lambda net: net.network(None, source=SOURCE)).specialties:
        print(f"{s.code:<22} {s.name_en} / {s.name_vi}")
    return 0


# -- rosters ------------------------------------------------------------------------------------------------------


def cmd_roster_add(args: argparse.Namespace, settings: Settings) -> int:
    first_day = parse_day(args.date)
    start, end = parse_clock(args.start, "from"), parse_clock(args.end, "to")
    weekdays = parse_weekdays(args.days) if args.days else None

    async def work(net: NetworkService) -> Any:
        user_id, hub_id = await net.specialist_by_username(args.user)
        return await net.add_shifts(
            None, hub_id, user_id, first_day, start, end, weeks=args.weeks, weekdays=weekdays, source=SOURCE
        )

    result = _run(settings, work)
    for shift in result.added:
        print(f"shift {shift.id}: {_span(shift, settings)}  {shift.specialty}  {shift.display_name}")
    if result.skipped_over:
        print(f"{result.skipped_over} shift(s) already over were left out")
    return 0


def _span(shift: Shift, settings: Settings) -> str:
    zone = ZoneInfo(settings.display_timezone)
    starts, ends = shift.starts_at.astimezone(zone), shift.ends_at.astimezone(zone)
    until = f"{ends:%H:%M}" if ends.date() == starts.date() else f"{ends:%d/%m/%Y %H:%M}"
    return f"{starts:%d/%m/%Y %H:%M} - {until}"


def cmd_roster_list(args: argparse.Namespace, settings: Settings) -> int:
    zone = ZoneInfo(settings.display_timezone)
    first_day = parse_day(args.date) if args.date else datetime.now(UTC).astimezone(zone).date()
    if not 1 <= args.days <= 62:
        raise ValidationFailed("--days must be between 1 and 62")
    start = datetime.combine(first_day, time(0), tzinfo=zone)
    end = start + timedelta(days=args.days)

    async def work(net: NetworkService) -> Any:
        network = await net.network(None, source=SOURCE)
        hub = next((f for f in network.facilities if f.code == args.hub.strip().upper()), None)
        if hub is None:
            raise NotFound(f"no facility with code {args.hub}")
        shifts = await net.shifts(None, hub.id, start.astimezone(UTC), end.astimezone(UTC), source=SOURCE)
        return shifts, await net.on_call_now(None, hub.id, source=SOURCE)

    shifts, on_call = _run(settings, work)
    for shift in shifts:
        print(f"{shift.id:>6}  {_span(shift, settings):<35} {shift.specialty:<20} {shift.display_name}")
    if not shifts:
        print("no shifts")
    names = ", ".join(f"{s.display_name} ({s.specialty})" for s in on_call) or "nobody"
    print(f"on call now: {names}")
    return 0


def cmd_roster_remove(args: argparse.Namespace, settings: Settings) -> int:
    outcome = _run(settings, lambda net: net.remove_shift(None, args.shift, source=SOURCE))
    print(f"shift {args.shift} {'removed' if outcome == 'removed' else 'ended now'}")
    return 0


def add_network_commands(sub: Any) -> None:
    levels = [level.value for level in FacilityLevel]
    facility = sub.add_parser("facility", help="facilities of the network").add_subparsers(dest="action", required=True)
    for name, update in (("add", False), ("update", True)):
        cmd = facility.add_parser(name, help=f"{name} a facility")
        cmd.add_argument("code", help="facility code, e.g. TYT-TV")
        cmd.add_argument("--name", required=True)
        cmd.add_argument("--level", required=True, choices=levels)
        cmd.add_argument("--province", default="")
        cmd.add_argument("--parent", help="code of the facility above it on the referral line")
        cmd.set_defaults(func=cmd_facility_add, update=update)
    facility.add_parser("list", help="facilities with their level, parent and supporting hubs").set_defaults(
        func=cmd_facility_list
    )
    support = facility.add_parser("support", help="set the central hospitals that support a facility, best first")
    support.add_argument("facility", help="facility code")
    support.add_argument("hubs", nargs="*", help="codes of central hospitals, best first")
    support.add_argument("--clear", action="store_true", help="remove its supporting hubs")
    support.set_defaults(func=cmd_facility_support)

    specialty = sub.add_parser("specialty", help="specialties").add_subparsers(dest="action", required=True)
    sadd = specialty.add_parser("add", help="add a specialty, or rename an existing one")
    sadd.add_argument("code", help="e.g. dermatology")
    sadd.add_argument("--en", required=True, help="English name")
    sadd.add_argument("--vi", required=True, help="Vietnamese name")
    sadd.set_defaults(func=cmd_specialty_add)
    specialty.add_parser("list", help="list specialties").set_defaults(func=cmd_specialty_list)

    roster = sub.add_parser("roster", help="on-call rosters").add_subparsers(dest="action", required=True)
    radd = roster.add_parser("add", help="put a specialist on call (local time, Asia/Ho_Chi_Minh)")
    radd.add_argument("--user", required=True, help="the specialist's username")
    radd.add_argument("--date", required=True, help="first day, dd/mm/yyyy or YYYY-MM-DD")
    radd.add_argument("--from", dest="start", required=True, metavar="HH:MM")
    radd.add_argument("--to", dest="end", required=True, metavar="HH:MM", help="at or before --from: next morning")
    radd.add_argument("--weeks", type=int, default=1, help="repeat weekly for this many weeks")
    radd.add_argument("--days", help="days of the week, e.g. mon,wed,fri or all (default: the weekday of --date)")
    radd.set_defaults(func=cmd_roster_add)
    rlist = roster.add_parser("list", help="a hub's shifts and who is on call now")
    rlist.add_argument("--hub", required=True, help="hub facility code")
    rlist.add_argument("--date", help="first day (default: today)")
    rlist.add_argument("--days", type=int, default=7)
    rlist.set_defaults(func=cmd_roster_list)
    rremove = roster.add_parser("remove", help="remove a future shift, or end a current one now")
    rremove.add_argument("shift", type=int, help="shift id (see roster list)")
    rremove.set_defaults(func=cmd_roster_remove)
