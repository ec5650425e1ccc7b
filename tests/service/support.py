"""Small helpers for the service tests: reading rows straight from the database."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import func, select

from teleconsult.services import Services
from teleconsult.storage.models import AuditEventRow

R = TypeVar("R")


async def audit_rows(services: Services, **where: Any) -> list[AuditEventRow]:
    """Audit events matching ``column=value`` filters, oldest first."""
    stmt = select(AuditEventRow).order_by(AuditEventRow.id)
    for column, value in where.items():
        stmt = stmt.where(getattr(AuditEventRow, column) == value)
    async with services.db.transaction() as tx:
        return list((await tx.execute(stmt)).scalars())


async def count(services: Services, model: type, *criteria: Any) -> int:
    stmt = select(func.count()).select_from(model)
    for criterion in criteria:
        stmt = stmt.where(criterion)
    async with services.db.transaction() as tx:
        return int((await tx.execute(stmt)).scalar_one())


async def rows(services: Services, model: type[R], *criteria: Any) -> list[R]:
    stmt = select(model)
    for criterion in criteria:
        stmt = stmt.where(criterion)
    async with services.db.transaction() as tx:
        return list((await tx.execute(stmt)).scalars())
