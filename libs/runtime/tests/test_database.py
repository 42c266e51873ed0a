"""Database URLs in each driver's form, and the schema a setting may name."""

import pytest
from pydantic import BaseModel, ValidationError

from comfyserve.runtime.database import (
    PostgresUrl,
    SchemaName,
    asyncpg_dsn,
    sqlalchemy_url,
)


class Schema(BaseModel):
    schema_name: SchemaName


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@db:5432/comfyserve",
        "postgres://u:p@db:5432/comfyserve",
        "postgresql+asyncpg://u:p@db:5432/comfyserve",
        "postgresql+psycopg://u:p@db:5432/comfyserve",
    ],
)
def test_every_postgres_url_takes_each_drivers_form(url: str) -> None:
    assert asyncpg_dsn(url) == "postgresql://u:p@db:5432/comfyserve"
    assert sqlalchemy_url(url) == "postgresql+asyncpg://u:p@db:5432/comfyserve"


@pytest.mark.parametrize("url", ["mysql://u:p@db/x", "db:5432/comfyserve"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        sqlalchemy_url(url)


@pytest.mark.parametrize("name", ["auth", "workflow_test_0a1b", "_blue"])
def test_plain_identifiers_name_a_schema(name: str) -> None:
    assert Schema(schema_name=name).schema_name == name


@pytest.mark.parametrize(
    "name", ['auth"; drop', "Auth", "1st", "", "a" * 64, "with space"]
)
def test_anything_else_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="lower-case SQL identifier"):
        Schema(schema_name=name)


class Database(BaseModel):
    database_url: PostgresUrl


def test_a_database_url_setting_keeps_its_form_and_refuses_other_databases() -> None:
    url = "postgresql+asyncpg://u:p@db:5432/comfyserve"
    assert Database(database_url=url).database_url == url
    with pytest.raises(ValidationError, match="postgresql://"):
        Database(database_url="mysql://u:p@db/x")
