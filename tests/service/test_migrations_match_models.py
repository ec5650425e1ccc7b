"""The Alembic migrations build exactly the tables the models describe, on SQLite and PostgreSQL: a model
changed without a migration (or the reverse) fails here rather than on a deployed database."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from teleconsult.settings import Settings
from teleconsult.storage.db import create_engine
from teleconsult.storage.models import Base


async def test_the_migrated_schema_matches_the_models(db_settings: Settings) -> None:
    engine = create_engine(db_settings.database_url, db_settings.database_schema)

    def diff(connection: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()
