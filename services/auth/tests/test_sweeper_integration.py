"""The sweeper forgets expired refresh tokens, the sessions they leave empty,
and login windows that ended."""

from datetime import timedelta

import grpc
import pytest

from .conftest import login

pytestmark = pytest.mark.integration

TOKENS = (
    "SELECT count(*) FROM refresh_tokens t JOIN refresh_families f"
    " ON f.id = t.family_id WHERE f.user_id = $1::uuid"
)
FAMILIES = "SELECT count(*) FROM refresh_families WHERE user_id = $1::uuid"
WINDOWS = "SELECT count(*) FROM login_throttle WHERE key = $1"


async def test_expired_tokens_and_ended_windows_are_forgotten(
    stub, runtime, owner, db, time_travel
):
    with pytest.raises(grpc.aio.AioRpcError):
        await login(stub, owner.email, password="a wrong password")
    window = f"account:{owner.email}"

    await runtime.sweeper.sweep()
    assert await db.fetchval(TOKENS, owner.user.id) == 1
    assert await db.fetchval(WINDOWS, window) == 1

    time_travel.offset = timedelta(days=31)
    await runtime.sweeper.sweep()
    assert await db.fetchval(TOKENS, owner.user.id) == 0
    assert await db.fetchval(FAMILIES, owner.user.id) == 0
    assert await db.fetchval(WINDOWS, window) == 0
