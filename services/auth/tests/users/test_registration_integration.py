"""Register: a user and a tenant it owns, normalised e-mails, and every invalid
field named."""

import grpc
import pytest

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb

from ..conftest import PASSWORD, email, field_of, login, register

pytestmark = pytest.mark.integration


async def test_registering_creates_a_tenant_the_user_owns(stub, db):
    user_email, user = await register(stub, tenant_name="  Acme  ")
    assert user.email == user_email
    assert user.role == "owner"
    assert user.created_at.seconds > 0
    tenant = await db.fetchrow(
        "SELECT name, suspended FROM tenants WHERE id = $1::uuid", user.tenant_id
    )
    assert dict(tenant) == {"name": "Acme", "suspended": False}


async def test_without_a_tenant_name_the_tenant_is_named_by_the_email(stub, db):
    user_email, user = await register(stub)
    name = await db.fetchval(
        "SELECT name FROM tenants WHERE id = $1::uuid", user.tenant_id
    )
    assert name == user_email


async def test_the_email_is_trimmed_and_lower_case_and_taken_once(stub):
    user_email = email()
    _, user = await register(stub, email=f"  {user_email.upper()} ")
    assert user.email == user_email
    await login(stub, user_email.upper())

    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await register(stub, email=user_email.capitalize())
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_the_password_is_stored_as_an_argon2id_hash(stub, db):
    user_email, _ = await register(stub)
    stored = await db.fetchval(
        "SELECT password_hash FROM users WHERE email = $1", user_email
    )
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"email": ""}, "email"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": "x" * 250 + "@example.com"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "p" * 257}, "password"),
        ({"tenant_name": "t" * 101}, "tenant_name"),
        ({"tenant_name": "line\nbreak"}, "tenant_name"),
    ],
)
async def test_an_invalid_field_is_invalid_argument_naming_it(stub, fields, field):
    request = {"email": email(), "password": PASSWORD, **fields}
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Register(pb.RegisterRequest(**request))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(refused.value) == field


async def test_the_password_limits_are_inclusive(stub):
    await register(stub, password="p" * 10)
    await register(stub, password="p" * 256)
