"""The `teleconsult` command, and the composition root: the one place that wires web and signaling to
the services. Bad arguments get a one-line error and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import secrets
import sys
from datetime import date
from pathlib import Path
from typing import Any

from teleconsult.cli_network import add_network_commands
from teleconsult.cli_signals import SignalsCliError, add_signal_commands
from teleconsult.clock import Clock, SystemClock
from teleconsult.domain.errors import DomainError
from teleconsult.domain.patients import PatientDraft, Sex
from teleconsult.domain.people import Role
from teleconsult.services import Services, build_services
from teleconsult.settings import Settings
from teleconsult.storage.db import Database, create_engine, migrate

log = logging.getLogger("teleconsult")


class CliError(Exception):
    pass


def build_app(settings: Settings, clock: Clock | None = None) -> Any:
    """The whole server: services, HTTP pages/API, and socket.io signaling, on one aiohttp app."""
    from aiohttp import web

    from signaling.server import SignalingServer
    from web.app import create_app
    from web.keys import LIVE_STATS

    db = Database(create_engine(settings.effective_database_url(), settings.database_schema))
    services = build_services(settings, db, clock or SystemClock())
    app = create_app(services, settings)
    signaling = SignalingServer(services, settings, instance_id=secrets.token_hex(4))
    signaling.attach(app)
    services.set_notifier(signaling)
    app[LIVE_STATS] = lambda: {"connections": signaling.connection_count(), "rooms": signaling.rooms.room_count()}
    services.metrics.watch(signaling.connection_count, signaling.rooms.room_count)

    async def on_startup(_app: web.Application) -> None:
        if settings.janus_url:
            from teleconsult.sfu import JanusClient

            # Connected on first use (and again after a Janus restart): a server whose SFU is down still
            # serves everything else, and conferences still have notes, decisions and attendance.
            api_secret, admin_key = settings.effective_janus_secrets()
            services.conference_room.sfu = JanusClient(settings.janus_url, api_secret=api_secret, admin_key=admin_key)
        services.waveforms.start()
        services.pairing.start()
        services.conferences.start()
        services.conference_room.start()
        signaling.start()
        closed = await services.consultations.close_stale_participations(all_open=not settings.redis_url)
        if closed:
            log.info("closed %d room stays left open by a previous run", closed)

    async def on_cleanup(_app: web.Application) -> None:
        await services.pairing.close()
        await services.conferences.close()
        await services.conference_room.close()
        await signaling.close()
        if services.conference_room.sfu is not None:
            await services.conference_room.sfu.close()
        await services.waveforms.close()
        await db.dispose()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _services(settings: Settings) -> tuple[Services, Database]:
    db = Database(create_engine(settings.effective_database_url(), settings.database_schema))
    return build_services(settings, db, SystemClock()), db


async def with_services(settings: Settings, work: Any) -> Any:
    services, db = _services(settings)
    try:
        return await work(services)
    finally:
        await db.dispose()


async def _freeze_heap(_app: Any) -> None:
    """Everything loaded at start (modules, catalogs, metadata) lives as long as the server process: keep it
    out of the collector, whose full passes over ~200,000 such objects paused the event loop for 0.1-0.5 s
    (bench/pairing.py). Collect once first so no garbage is frozen with it. Only for `serve`: a test process
    building many apps would freeze each test's leftovers."""
    gc.collect()
    gc.freeze()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from web.logging import PathOnlyAccessLogger

    host = args.host or settings.host
    port = args.port or settings.port
    janus = None
    if args.with_janus and not settings.janus_url:
        janus = _local_janus(settings)
        if janus is not None:
            sfu = {"janus_url": janus.url, "janus_api_secret": janus.api_secret, "janus_admin_key": janus.admin_key}
            settings = settings.model_copy(update=sfu)
    app = build_app(settings)
    app.on_startup.append(_freeze_heap)
    print(f"teleconsult serving on http://{host}:{port}", flush=True)
    try:
        web.run_app(app, host=host, port=port, print=None, shutdown_timeout=5, access_log_class=PathOnlyAccessLogger)
    finally:
        if janus is not None:
            janus.stop()
    return 0


def _local_janus(settings: Settings) -> Any:
    """Janus on loopback, its config (with the secrets) under the database's folder; None if it cannot start."""
    from teleconsult.janus_local import JanusNotAvailable, start

    folder = Path(settings.janus_local_dir)
    try:
        janus = start(folder)
    except JanusNotAvailable as exc:
        print(f"conference video unavailable: {exc}", flush=True)
        return None
    print(f"Janus SFU for conference video on {janus.url} (log: {janus.log})", flush=True)
    return janus


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings.effective_database_url(), settings.database_schema)
    print("database is up to date")
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    if not args.demo:
        raise CliError("nothing to seed: pass --demo")
    from teleconsult.seed import DEMO_PASSWORD, seed_demo

    logins = asyncio.run(with_services(settings, seed_demo))
    print(f"Demo logins (password for all: {DEMO_PASSWORD}):")
    for username, description in logins:
        print(f"  {username:<14} {description}")
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise CliError("type the password on standard input")

    async def work(services: Services) -> int:
        return await services.directory.add_user(
            args.username, password, args.role, args.facility, display_name=args.name, specialty=args.specialty
        )

    user_id = asyncio.run(with_services(settings, work))
    print(f"user {args.username} created (id {user_id})")
    return 0


def cmd_patient_add(args: argparse.Namespace, settings: Settings) -> int:
    try:
        dob = date.fromisoformat(args.dob)
    except ValueError:
        raise CliError("--dob must be a date as YYYY-MM-DD") from None
    draft = PatientDraft(
        cccd=args.cccd,
        full_name=args.name,
        date_of_birth=dob,
        sex=Sex(args.sex),
        bhyt=args.bhyt,
        address=args.address or "",
        province=args.province or "",
    )

    async def work(services: Services) -> int:
        facility = await services.directory.facility_by_code(args.facility)
        patient = await services.patients.register_as_system(draft, facility.id, source="cli")
        return patient.id

    patient_id = asyncio.run(with_services(settings, work))
    print(f"patient registered (id {patient_id})")
    return 0


def cmd_fhir_export(args: argparse.Namespace, settings: Settings) -> int:
    """The patient's whole record as a FHIR R4 Bundle (type collection), audited as a system export."""
    import json
    from pathlib import Path

    base_url = args.base_url or f"http://{settings.host}:{settings.port}/fhir"

    async def work(services: Services) -> dict[str, Any]:
        patient_id = await services.fhir.patient_id_by_cccd(args.patient)
        bundle: dict[str, Any] = await services.fhir.patient_bundle(None, patient_id, source="cli", base_url=base_url)
        return bundle

    bundle = asyncio.run(with_services(settings, work))
    text = json.dumps(bundle, ensure_ascii=False, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote a Bundle of {len(bundle['entry'])} resources to {args.output}")
    else:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    return 0


def _add_fhir_commands(sub: Any) -> None:
    fhir = sub.add_parser("fhir", help="FHIR R4 export").add_subparsers(dest="action", required=True)
    export = fhir.add_parser("export", help="print a patient's record as a FHIR R4 Bundle (JSON)")
    export.add_argument("--patient", required=True, metavar="CCCD", help="the patient's 12-digit citizen ID")
    export.add_argument("--output", metavar="FILE", help="write the Bundle to FILE instead of standard output")
    export.add_argument("--base-url", help="FHIR base of the entries' fullUrl (default: this server's /fhir)")
    export.set_defaults(func=cmd_fhir_export)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="teleconsult", description="Doctor-to-doctor telemedicine server.")
    sub = root.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web and signaling server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--with-janus",
        action="store_true",
        help="start a Janus SFU of our own on loopback for conference video (when no TELECONSULT_JANUS_URL)",
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    seed = sub.add_parser("seed", help="load data")
    seed.add_argument("--demo", action="store_true", help="demo facilities, users and patients (idempotent)")
    seed.set_defaults(func=cmd_seed)
    user = sub.add_parser("user", help="manage accounts").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="create an account; the password is read from standard input")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--facility", required=True, help="facility code")
    add.add_argument("--specialty")
    add.add_argument("--name", help="display name")
    add.set_defaults(func=cmd_user_add)
    patient = sub.add_parser("patient", help="manage patients").add_subparsers(dest="action", required=True)
    padd = patient.add_parser("add", help="register a patient")
    padd.add_argument("--cccd", required=True)
    padd.add_argument("--name", required=True)
    padd.add_argument("--dob", required=True, help="YYYY-MM-DD")
    padd.add_argument("--sex", required=True, choices=[s.value for s in Sex])
    padd.add_argument("--bhyt")
    padd.add_argument("--address")
    padd.add_argument("--province")
    padd.add_argument("--facility", default="BVTW-BM", help="registering facility code (default: the demo hub)")
    padd.set_defaults(func=cmd_patient_add)
    _add_fhir_commands(sub)
    add_signal_commands(sub)
    add_network_commands(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the bad variable
        print(f"teleconsult: bad configuration: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings))
    except (CliError, SignalsCliError, DomainError) as exc:
        print(f"teleconsult: {getattr(exc, 'message', str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"teleconsult: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            print(f"teleconsult: database error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
