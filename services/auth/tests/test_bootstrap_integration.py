"""Bootstrap, called as the command calls it: an admin once, whatever runs."""

import pytest

from comfyserve.auth.bootstrap import bootstrap
from comfyserve.auth.errors import InvalidArgumentError
from comfyserve.auth.users.passwords import Passwords
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb

from .conftest import PASSWORD, email, register

pytestmark = pytest.mark.integration


@pytest.fixture
async def passwords(hasher) -> Passwords:
    return await Passwords.create(hasher, 1)


async def test_a_configured_password_is_used_and_not_answered(
    runtime, passwords, clock, stub
):
    admin_email = email()
    done = await bootstrap(
        runtime.engine,
        passwords,
        email=admin_email.upper(),
        password="an admin password",
        clock=clock,
    )
    assert done.email == admin_email
    assert done.password is None
    assert set(done.to_json()) == {"email", "user_id", "tenant_id", "api_key"}
    tokens = await stub.Login(
        pb.LoginRequest(email=admin_email, password="an admin password")
    )
    assert "admin" in tokens.scopes


async def test_an_existing_user_becomes_admin_and_keeps_its_password(
    runtime, passwords, clock, stub
):
    user_email, user = await register(stub)
    done = await bootstrap(
        runtime.engine, passwords, email=user_email, password=None, clock=clock
    )
    assert (str(done.user_id), done.password) == (user.id, None)
    assert done.api_key is not None
    tokens = await stub.Login(pb.LoginRequest(email=user_email, password=PASSWORD))
    assert "admin" in tokens.scopes


async def test_a_revoked_bootstrap_key_is_made_again(runtime, passwords, clock, stub):
    admin_email = email()
    first = await bootstrap(
        runtime.engine, passwords, email=admin_email, password=None, clock=clock
    )
    assert first.api_key is not None
    key = await stub.Authenticate(pb.AuthenticateRequest(credential=first.api_key))
    await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=key.key_id),
        metadata=(("authorization", f"Bearer {first.api_key}"),),
    )
    again = await bootstrap(
        runtime.engine, passwords, email=admin_email, password=None, clock=clock
    )
    assert again.api_key is not None
    assert again.api_key != first.api_key


@pytest.mark.parametrize(
    ("admin_email", "password", "field"),
    [
        ("not an address", None, "AUTH_BOOTSTRAP_ADMIN_EMAIL"),
        ("admin@example.com", "short", "AUTH_BOOTSTRAP_ADMIN_PASSWORD"),
    ],
)
async def test_invalid_settings_are_refused_by_name(
    runtime, passwords, clock, admin_email, password, field
):
    with pytest.raises(InvalidArgumentError) as refused:
        await bootstrap(
            runtime.engine, passwords, email=admin_email, password=password, clock=clock
        )
    assert refused.value.field == field
