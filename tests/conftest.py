"""Shared fixtures: real databases (SQLite and PostgreSQL), real services, a fake clock, a small network.

Fixtures other suites rely on (keep the names):

- ``pg_url`` (session): the PostgreSQL URL; fails loudly when the server is unreachable, never skips.
- ``db_settings``: a ``Settings`` on a fresh migrated database, parametrized over ``sqlite`` and ``postgresql``.
- ``sqlite_settings``: the same, SQLite only.
- ``clock``: a ``FakeClock``.
- ``make_services``: an async factory ``await make_services(settings, clock) -> Services``; engines disposed at
  teardown. ``services`` is ``make_services(db_settings, clock)``.
- ``world``: the small hub-and-spoke network of ``World`` installed in ``services``' database.
- ``install_world``: an async factory ``await install_world(settings) -> World`` for any settings (e.g.
  ``sqlite_settings`` in transport tests).

Why the world is cloned: building it costs ~1.5 s of Argon2 (7 hashes + 7 verifications, by design slow).
It is built once per backend per session through DirectoryService, AuthService and PatientService, exactly
as a user would, and its rows are then copied into each test's fresh database (ids preserved, sequences
reset), which takes milliseconds. Every test still gets its own database; nothing leaks between tests.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine.url import make_url

from teleconsult.clock import FakeClock
from teleconsult.domain.patients import Patient, PatientDraft, Sex
from teleconsult.domain.people import Actor, Facility, FacilityLevel
from teleconsult.services import Services, build_services
from teleconsult.settings import Settings
from teleconsult.storage.db import Database, create_engine, migrate
from teleconsult.storage.models import Base

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PASSWORD = "correct-horse-1"
BACKENDS = ["sqlite", "postgresql"]

T = TypeVar("T")


def run_in_fresh_thread(fn: Callable[[], T]) -> T:
    """Run blocking code that may call ``asyncio.run`` without touching the test's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


# -- PostgreSQL ------------------------------------------------------------------------------------------------


async def _probe_postgres(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with asyncio.timeout(10):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure is reported, with its type, to whoever runs the suite
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("TELECONSULT_TEST_DATABASE_URL", DEFAULT_PG_URL)
    error = run_in_fresh_thread(lambda: asyncio.run(_probe_postgres(url)))
    if error is not None:
        shown = make_url(url).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is unreachable at {shown} ({error}).\n"
            "The service tests run on SQLite AND PostgreSQL; they are not skipped. Start PostgreSQL "
            "or set TELECONSULT_TEST_DATABASE_URL=postgresql+asyncpg://USER@HOST:PORT/DB.",
            pytrace=False,
        )
    return url


async def _drop_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def _new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


# -- Settings on a fresh migrated database -------------------------------------------------------------------


def _sqlite_settings(path: Path) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{path}")


def _sqlite_path(settings: Settings) -> str:
    database = make_url(settings.database_url).database
    assert database, settings.database_url
    return database


async def _fresh_sqlite(tmp_path: Path) -> Settings:
    settings = _sqlite_settings(tmp_path / "t.sqlite3")
    await asyncio.to_thread(migrate, settings.database_url, None)
    return settings


@pytest.fixture
async def sqlite_settings(tmp_path: Path) -> Settings:
    return await _fresh_sqlite(tmp_path)


@pytest.fixture(params=BACKENDS)
async def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    if request.param == "sqlite":
        yield await _fresh_sqlite(tmp_path)
        return
    url: str = request.getfixturevalue("pg_url")
    schema = _new_schema_name()
    settings = Settings(database_url=url, database_schema=schema)
    try:
        # ~0.05 s per schema here: cheap enough to migrate per test rather than truncate between tests.
        await asyncio.to_thread(migrate, url, schema)
        yield settings
    finally:
        await _drop_schema(url, schema)


# -- Services ---------------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def services_for(settings: Settings, clock: FakeClock) -> Services:
    """Services over a new engine of their own. The caller disposes ``services.db``."""
    return build_services(settings, Database(create_engine(settings.database_url, settings.database_schema)), clock)


MakeServices = Callable[..., Awaitable[Services]]


@pytest.fixture
async def make_services() -> AsyncIterator[MakeServices]:
    made: list[Services] = []

    async def factory(settings: Settings, clock: FakeClock) -> Services:
        services = services_for(settings, clock)
        made.append(services)
        return services

    yield factory
    for services in made:
        await services.db.dispose()


@pytest.fixture
async def services(db_settings: Settings, clock: FakeClock, make_services: MakeServices) -> Services:
    return await make_services(db_settings, clock)


# -- The world: a small hub-and-spoke network ------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    bvtw: Facility
    bvt_lc: Facility
    tyt_a: Facility
    tyt_b: Facility
    clin_a: Actor
    clin_b: Actor
    spec_cardio: Actor
    spec_cardio2: Actor
    spec_neuro: Actor
    coord: Actor
    admin: Actor
    patient: Patient
    password: str = PASSWORD


PATIENT_DRAFT = PatientDraft(
    cccd="010190012345",
    full_name="Trần Thị Hồng Nhung",
    date_of_birth=date(1990, 3, 14),
    sex=Sex.FEMALE,
    bhyt="DN4010123456789",
    address="Thôn Na Lốc, xã Bản Phiệt",
    province="Lào Cai",
)

_USERS = [
    # username, role, facility, specialty, display name
    ("clin.a", "clinician", "TYT-A", None, "YS. Lò Văn Sáng"),
    ("clin.b", "clinician", "TYT-B", None, "BS. Hoàng Thị Mai"),
    ("spec.cardio", "specialist", "BVTW", "cardiology", "PGS.TS. Phạm Quang Hưng"),
    ("spec.cardio2", "specialist", "BVTW", "cardiology", "TS.BS. Đỗ Minh Châu"),
    ("spec.neuro", "specialist", "BVTW", "neurology", "BS.CKII Vũ Đức Thành"),
    ("coord", "coordinator", "BVTW", None, "CN. Nguyễn Thu Hà"),
    ("admin", "admin", "BVTW", None, "Quản trị hệ thống"),
]


async def build_world(services: Services) -> World:
    """Create the network through the services, as an admin and the users themselves would."""
    directory = services.directory
    await directory.ensure_specialty("cardiology", "Cardiology", "Tim mạch")
    await directory.ensure_specialty("neurology", "Neurology", "Thần kinh")
    bvtw = await directory.ensure_facility("BVTW", "Bệnh viện Trung ương", FacilityLevel.CENTRAL, "Hà Nội")
    bvt_lc = await directory.ensure_facility(
        "BVT-LC", "Bệnh viện Đa khoa tỉnh Lào Cai", FacilityLevel.PROVINCIAL, "Lào Cai", hub_code="BVTW"
    )
    tyt_a = await directory.ensure_facility(
        "TYT-A", "Trạm Y tế xã Bản Phiệt", FacilityLevel.COMMUNE, "Lào Cai", hub_code="BVT-LC"
    )
    tyt_b = await directory.ensure_facility("TYT-B", "Trạm Y tế xã Cốc San", FacilityLevel.COMMUNE, "Lào Cai")
    actors: dict[str, Actor] = {}
    for username, role, facility, specialty, display_name in _USERS:
        await directory.add_user(username, PASSWORD, role, facility, display_name=display_name, specialty=specialty)
        issued = await services.auth.login(username, PASSWORD, source="test-setup")
        actors[username] = issued.session.actor
    patient = await services.patients.register(actors["clin.a"], PATIENT_DRAFT, source="test-setup")
    return World(
        bvtw=bvtw,
        bvt_lc=bvt_lc,
        tyt_a=tyt_a,
        tyt_b=tyt_b,
        clin_a=actors["clin.a"],
        clin_b=actors["clin.b"],
        spec_cardio=actors["spec.cardio"],
        spec_cardio2=actors["spec.cardio2"],
        spec_neuro=actors["spec.neuro"],
        coord=actors["coord"],
        admin=actors["admin"],
        patient=patient,
    )


@dataclass
class _Template:
    settings: Settings
    world: World


class WorldTemplates:
    """One world per backend per session, built lazily through the services, copied into each test's DB."""

    def __init__(self, tmp_dir: Path, request: pytest.FixtureRequest) -> None:
        self._tmp_dir = tmp_dir
        self._request = request
        self._templates: dict[str, _Template] = {}

    def get(self, backend: str) -> _Template:
        """Blocking (once per backend): call it from the test's thread, it builds in a thread of its own."""
        if backend not in self._templates:
            if backend == "sqlite":
                settings = _sqlite_settings(self._tmp_dir / "world-template.sqlite3")
            else:
                url = self._request.getfixturevalue("pg_url")
                settings = Settings(database_url=url, database_schema=f"tmpl_{uuid.uuid4().hex[:12]}")
            self._templates[backend] = run_in_fresh_thread(lambda: self._build(settings))
        return self._templates[backend]

    @staticmethod
    def _build(settings: Settings) -> _Template:
        migrate(settings.database_url, settings.database_schema)

        async def build() -> World:
            services = services_for(settings, FakeClock())
            try:
                return await build_world(services)
            finally:
                await services.db.dispose()

        return _Template(settings, asyncio.run(build()))

    def drop_all(self) -> None:
        schemas = [t.settings for t in self._templates.values() if t.settings.database_schema]

        async def drop() -> None:
            for settings in schemas:
                assert settings.database_schema
                await _drop_schema(settings.database_url, settings.database_schema)

        if schemas:
            run_in_fresh_thread(lambda: asyncio.run(drop()))


@pytest.fixture(scope="session")
def world_templates(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[WorldTemplates]:
    templates = WorldTemplates(tmp_path_factory.mktemp("world"), request)
    yield templates
    templates.drop_all()


def _copy_sqlite(source: str, target: str) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


async def _copy_postgres(settings: Settings, template_schema: str) -> None:
    engine = create_engine(settings.database_url, settings.database_schema)
    try:
        async with engine.begin() as conn:
            for table in Base.metadata.sorted_tables:
                await conn.execute(text(f'INSERT INTO "{table.name}" SELECT * FROM "{template_schema}"."{table.name}"'))
            for table in Base.metadata.sorted_tables:
                if "id" in table.c and table.c.id.primary_key and table.c.id.autoincrement in (True, "auto"):
                    sequence = (
                        await conn.execute(text(f"SELECT pg_get_serial_sequence('{table.name}', 'id')"))
                    ).scalar_one_or_none()
                    if sequence:
                        next_id = f'(SELECT COALESCE(MAX(id), 0) + 1 FROM "{table.name}")'
                        await conn.execute(text(f"SELECT setval('{sequence}', {next_id}, false)"))
    finally:
        await engine.dispose()


InstallWorld = Callable[[Settings], Awaitable[World]]


@pytest.fixture
def install_world(world_templates: WorldTemplates) -> InstallWorld:
    """``await install_world(settings)``: the world, in the (fresh, migrated, empty) database of ``settings``."""

    async def install(settings: Settings) -> World:
        if settings.is_sqlite:
            template = world_templates.get("sqlite")
            await asyncio.to_thread(_copy_sqlite, _sqlite_path(template.settings), _sqlite_path(settings))
        else:
            template = world_templates.get("postgresql")
            assert template.settings.database_schema and settings.database_schema
            await _copy_postgres(settings, template.settings.database_schema)
        return template.world

    return install


@pytest.fixture
async def world(services: Services, db_settings: Settings, install_world: InstallWorld) -> World:
    return await install_world(db_settings)
