"""Postgres answers through asyncpg and SQLModel inside a service-owned schema."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Field, MetaData, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

pytestmark = pytest.mark.integration


async def test_sqlmodel_round_trip_in_own_schema(
    stack: dict[str, str], unique: str
) -> None:
    schema = f"test_{unique}"

    class Widget(SQLModel, table=True):
        metadata = MetaData(schema=schema)
        id: int | None = Field(default=None, primary_key=True)
        name: str

    url = stack["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            await conn.run_sync(Widget.metadata.create_all)
        async with AsyncSession(engine) as session:
            session.add(Widget(name="gear"))
            await session.commit()
        async with AsyncSession(engine) as session:
            rows = (await session.exec(select(Widget))).all()
        assert [row.name for row in rows] == ["gear"]
        async with engine.connect() as conn:
            tables = await conn.execute(
                text(
                    "SELECT table_schema FROM information_schema.tables"
                    " WHERE table_name = 'widget'"
                )
            )
            assert schema in {row[0] for row in tables}
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
