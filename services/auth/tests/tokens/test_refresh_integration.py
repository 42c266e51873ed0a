"""Refresh tokens: rotation on every use, reuse revoking the family, logout,
expiry."""

import asyncio
import hashlib
from datetime import timedelta

import grpc
import pytest

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb

from ..conftest import address, field_of, login

pytestmark = pytest.mark.integration


async def _refresh(stub, token: str) -> pb.TokenPair:
    return await stub.Refresh(
        pb.RefreshRequest(refresh_token=token, client_address=address())
    )


async def _refused(stub, token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _refresh(stub, token)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_rotates_and_the_old_token_stops_working(stub, owner, db):
    first = owner.tokens
    second = await _refresh(stub, first.refresh_token)
    assert second.refresh_token.startswith("csr_")
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert list(second.scopes) == list(first.scopes)
    await stub.Authenticate(pb.AuthenticateRequest(credential=second.access_token))

    stored = await db.fetch(
        "SELECT token_hash, used_at FROM refresh_tokens t"
        " JOIN refresh_families f ON f.id = t.family_id"
        " WHERE f.user_id = $1::uuid ORDER BY t.created_at",
        owner.user.id,
    )
    # Stored as SHA-256 only, the rotated one marked used.
    assert [row["token_hash"] for row in stored] == [
        hashlib.sha256(token.encode()).digest()
        for token in (first.refresh_token, second.refresh_token)
    ]
    assert stored[0]["used_at"] is not None
    assert stored[1]["used_at"] is None


async def test_reusing_a_rotated_token_revokes_the_whole_family(stub, owner, runtime):
    rotated = owner.tokens.refresh_token
    current = await _refresh(stub, rotated)
    reuses = runtime.metrics.registry.get_sample_value
    before = reuses("auth_refresh_reuse_detected_total")

    await _refused(stub, rotated)
    # The thief's copy and the user's current token both stop.
    await _refused(stub, current.refresh_token)
    assert reuses("auth_refresh_reuse_detected_total") == before + 1


async def test_two_refreshes_of_one_token_at_once_end_the_session(stub, owner):
    token = owner.tokens.refresh_token
    answers = await asyncio.gather(
        _refresh(stub, token), _refresh(stub, token), return_exceptions=True
    )
    pairs = [answer for answer in answers if isinstance(answer, pb.TokenPair)]
    assert len(pairs) <= 1
    # The second saw a used token: a copy, so the family is gone.
    for pair in pairs:
        await _refused(stub, pair.refresh_token)


async def test_other_sessions_of_the_user_survive_a_revoked_family(stub, owner):
    other_session = await login(stub, owner.email)
    rotated = owner.tokens.refresh_token
    await _refresh(stub, rotated)
    await _refused(stub, rotated)
    await _refresh(stub, other_session.refresh_token)


async def test_logout_revokes_the_session(stub, owner):
    await stub.Logout(
        pb.LogoutRequest(refresh_token=owner.tokens.refresh_token),
        metadata=owner.credential,
    )
    await _refused(stub, owner.tokens.refresh_token)


async def test_logout_needs_a_credential_and_ends_only_the_callers_sessions(
    stub, owner, other_owner
):
    request = pb.LogoutRequest(refresh_token=owner.tokens.refresh_token)
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stub.Logout(request)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Another user's token: answered alike, changed nothing.
    await stub.Logout(request, metadata=other_owner.credential)
    await stub.Logout(
        pb.LogoutRequest(refresh_token="csr_unknown"), metadata=owner.credential
    )
    await _refresh(stub, owner.tokens.refresh_token)


async def test_an_expired_refresh_token_is_refused(stub, owner, time_travel):
    time_travel.offset = timedelta(days=30, seconds=1)
    await _refused(stub, owner.tokens.refresh_token)


async def test_unknown_and_malformed_refresh_tokens_are_refused_alike(stub):
    for token in ("csr_" + "x" * 43, "not-a-token", "csr_" + "y" * 300):
        await _refused(stub, token)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.RefreshRequest(refresh_token=""), "refresh_token"),
        (
            pb.RefreshRequest(refresh_token="csr_x", client_address="somewhere"),
            "client_address",
        ),
    ],
)
async def test_an_invalid_refresh_field_is_invalid_argument(stub, request_, field):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Refresh(request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(refused.value) == field


async def test_logout_without_a_token_is_invalid_argument(stub, owner):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Logout(pb.LogoutRequest(), metadata=owner.credential)
    assert field_of(refused.value) == "refresh_token"


async def test_a_refresh_narrows_scopes_to_the_users_current_role(stub, owner, db):
    await db.execute(
        "UPDATE users SET role = 'member' WHERE id = $1::uuid", owner.user.id
    )
    narrowed = await _refresh(stub, owner.tokens.refresh_token)
    assert set(narrowed.scopes) == {
        "workflows:read",
        "workflows:write",
        "files:read",
        "files:write",
    }
