"""Login: the password grant, one refusal for a wrong password and an unknown
user, throttling per account and per address, scopes, and rehashing."""

import asyncio
from datetime import timedelta

import grpc
import pytest
from argon2 import PasswordHasher

from comfyserve.auth.app import build_apis
from comfyserve.auth.telemetry import Metrics
from comfyserve.auth.users.passwords import Passwords
from comfyserve.auth.users.service import Login
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.contracts.scopes import Scope
from comfyserve.runtime.grpc import rpc_details

from ..conftest import (
    PASSWORD,
    PER_ACCOUNT,
    PER_ADDRESS,
    address,
    email,
    field_of,
    login,
    register,
)

pytestmark = pytest.mark.integration


async def _refusal(stub, user_email, password, client_address=None):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await login(stub, user_email, password=password, client_address=client_address)
    return refused.value


async def test_the_right_password_gets_a_token_pair(stub):
    user_email, _ = await register(stub)
    pair = await login(stub, user_email)
    assert pair.token_type == "bearer"
    assert pair.expires_in == 15 * 60
    assert pair.refresh_token.startswith("csr_")
    assert set(pair.scopes) == set(Scope) - {Scope.ADMIN}


async def test_wrong_password_and_unknown_user_are_refused_alike_after_one_verify(
    stub, hasher
):
    user_email, _ = await register(stub)

    del hasher.verified[:]
    wrong = await _refusal(stub, user_email, "wrong password!")
    [checked_for_user] = hasher.verified

    del hasher.verified[:]
    unknown = await _refusal(stub, email(), "wrong password!")
    [checked_for_nobody] = hasher.verified

    assert wrong.code() == unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.details() == unknown.details()
    # The unknown user's password was verified too, against a hash made with
    # the same parameters: the same work, so the same time.
    assert checked_for_nobody != checked_for_user
    parameters = checked_for_user.rsplit("$", 2)[0]
    assert checked_for_nobody.rsplit("$", 2)[0] == parameters


async def test_an_account_is_throttled_after_its_failures_then_waits_the_window(
    stub, time_travel
):
    user_email, _ = await register(stub)
    for _ in range(PER_ACCOUNT):
        wrong = await _refusal(stub, user_email, "wrong password!")
        assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED

    # From any address, even with the right password.
    throttled = await _refusal(stub, user_email, PASSWORD)
    assert throttled.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rpc_details(throttled)
    assert details.reason == "too_many_attempts"
    assert details.retry_after_s is not None
    wait = int(details.retry_after_s)
    assert 0 < wait <= 900
    assert (throttled.details() or "").endswith(f"(retry_after_seconds={wait})")

    time_travel.offset = timedelta(seconds=wait + 1)
    await login(stub, user_email)


async def test_parallel_guesses_cannot_overrun_the_limit(stub):
    user_email, _ = await register(stub)
    guesses = [
        _refusal(stub, user_email, f"wrong password {n}")
        for n in range(PER_ACCOUNT + 4)
    ]
    codes = [refused.code() for refused in await asyncio.gather(*guesses)]
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == PER_ACCOUNT
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 4


async def test_unknown_accounts_are_throttled_like_known_ones(stub):
    unknown = email()
    for _ in range(PER_ACCOUNT):
        await _refusal(stub, unknown, "wrong password!")
    throttled = await _refusal(stub, unknown, "wrong password!")
    assert throttled.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_success_clears_the_accounts_failures(stub):
    user_email, _ = await register(stub)
    for _ in range(PER_ACCOUNT - 1):
        await _refusal(stub, user_email, "wrong password!")
    await login(stub, user_email)
    for _ in range(PER_ACCOUNT - 1):
        await _refusal(stub, user_email, "wrong password!")
    await login(stub, user_email)


async def test_an_address_is_throttled_across_accounts(stub):
    source = address()
    for _ in range(PER_ADDRESS):
        refused = await _refusal(stub, email(), "wrong password!", source)
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    user_email, _ = await register(stub)
    throttled = await _refusal(stub, user_email, PASSWORD, source)
    assert throttled.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The account itself is not throttled elsewhere.
    await login(stub, user_email)


async def test_asked_scopes_narrow_the_token_and_more_than_the_role_is_refused(stub):
    user_email, _ = await register(stub)
    narrow = await login(stub, user_email, scopes=("workflows:read",))
    assert list(narrow.scopes) == ["workflows:read"]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await login(stub, user_email, scopes=("workflows:read", "admin"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin" in (refused.value.details() or "")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": ""}, "email"),
        ({"email": "e" * 255}, "email"),
        ({"password": ""}, "password"),
        ({"password": "p" * 257}, "password"),
        ({"client_address": "not-an-ip"}, "client_address"),
        ({"scopes": ["workflows:everything"]}, "scopes"),
        ({"scopes": ["service"]}, "scopes"),
    ],
)
async def test_an_invalid_field_is_invalid_argument_naming_it(stub, fields, field):
    request = {"email": email(), "password": PASSWORD, **fields}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Login(pb.LoginRequest(**request))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(refused.value) == field


async def test_a_hash_made_with_other_parameters_is_redone_at_login(
    stub, runtime, settings, clock, db
):
    user_email, _ = await register(stub)
    before = await db.fetchval(
        "SELECT password_hash FROM users WHERE email = $1", user_email
    )
    stronger = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    apis = build_apis(
        runtime.engine,
        settings,
        await Passwords.create(stronger, 1),
        Metrics(),
        clock,
    )
    await apis.logins.login(Login(user_email, PASSWORD, "", []))
    after = await db.fetchval(
        "SELECT password_hash FROM users WHERE email = $1", user_email
    )
    assert before.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert after.startswith("$argon2id$v=19$m=16384,t=2,p=1$")
    # And the rehashed password still logs in where the old parameters rule.
    await login(stub, user_email)
