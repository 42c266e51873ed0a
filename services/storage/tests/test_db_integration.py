"""The engine never puts bound values (user text) into errors or log lines."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from comfyserve.storage.db import create_engine

pytestmark = pytest.mark.integration


async def test_errors_do_not_carry_bound_parameters(storage_settings) -> None:
    engine = create_engine(storage_settings)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as caught:
                # Fails on the server, after the value was bound and sent.
                await connection.execute(
                    text("SELECT CAST(:name AS text), 1 / 0"),
                    {"name": "holiday photo of my kids.png"},
                )
    finally:
        await engine.dispose()
    assert "holiday photo" not in str(caught.value)
    assert "parameters hidden" in str(caught.value)
