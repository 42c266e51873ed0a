"""The sweeper forgets expired refresh tokens, the sessions they leave empty,
and login windows that ended."""

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from comfyserve.auth.tokens import repository as tokens
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.runtime.database import autocommit

from .conftest import address, login

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


async def test_tokens_go_oldest_first_a_batch_at_a_time_and_only_empty_sessions(
    stub, runtime, owner, db
):
    """A session keeps going while it holds a token that has not expired,
    though its first one has; one left without any goes with its last."""
    for _ in range(2):
        await login(stub, owner.email)
    await stub.Refresh(
        pb.RefreshRequest(
            refresh_token=owner.tokens.refresh_token, client_address=address()
        )
    )
    # In issue order: the first session's token, the second's, the third's,
    # then the first session's new one, which alone stays valid. No other
    # test's tokens are that old.
    await db.execute(
        "UPDATE refresh_tokens SET expires_at = CASE WHEN x.n = 4"
        " THEN timestamptz '2100-01-01'"
        " ELSE timestamptz '2000-01-01' + x.n * interval '1 second' END"
        " FROM (SELECT t.id, row_number() OVER (ORDER BY t.created_at) AS n"
        "  FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id"
        "  WHERE f.user_id = $1::uuid) x WHERE refresh_tokens.id = x.id",
        owner.user.id,
    )
    now = datetime(2000, 2, 1, tzinfo=UTC)

    async with autocommit(runtime.engine) as conn:
        assert await tokens.delete_expired(conn, now, 2) == 2
    assert await db.fetchval(TOKENS, owner.user.id) == 2
    assert await db.fetchval(FAMILIES, owner.user.id) == 2

    async with autocommit(runtime.engine) as conn:
        assert await tokens.delete_expired(conn, now, 2) == 1
    assert await db.fetchval(TOKENS, owner.user.id) == 1
    assert await db.fetchval(FAMILIES, owner.user.id) == 1
