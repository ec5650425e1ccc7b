"""Alembic environment: runs migrations over the same async engine factory the app uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from teleconsult.storage.db import create_engine
from teleconsult.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, config.attributes.get("schema"))
    try:
        async with engine.connect() as connection:
            schema = config.attributes.get("schema")
            if schema and connection.dialect.name == "postgresql":
                await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `teleconsult migrate`")
asyncio.run(_run_async())
