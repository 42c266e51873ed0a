"""API keys: made within the caller's scopes and tenant, shown once, listed
without secrets, used, revoked, expiring, and another tenant's invisible."""

import hashlib
from datetime import timedelta

import grpc
import pytest

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb

from ..conftest import bearer, field_of, login

pytestmark = pytest.mark.integration


async def _create(stub, account, **fields) -> pb.CreatedApiKey:
    fields.setdefault("name", "ci")
    fields.setdefault("scopes", ["workflows:read", "workflows:write"])
    return await stub.CreateApiKey(
        pb.CreateApiKeyRequest(**fields), metadata=account.credential
    )


async def _authenticate(stub, secret: str) -> pb.Principal:
    return await stub.Authenticate(pb.AuthenticateRequest(credential=secret))


async def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value.code()


async def test_a_key_is_shown_once_and_authenticates_as_itself(stub, owner, db):
    created = await _create(
        stub, owner, rate_limit=pb.RateLimit(per_minute=120, burst=20)
    )
    secret = created.secret
    assert secret.startswith("csk_")
    assert len(secret) >= 4 + 43
    assert created.key.prefix == secret[:12]
    assert created.key.tenant_id == owner.user.tenant_id
    assert created.key.created_by == owner.user.id
    assert not created.key.HasField("expires_at")

    stored = await db.fetchval(
        "SELECT secret_hash FROM api_keys WHERE id = $1::uuid", created.key.id
    )
    assert stored == hashlib.sha256(secret.encode()).digest()

    principal = await _authenticate(stub, secret)
    assert principal.kind == pb.PRINCIPAL_KIND_API_KEY
    assert principal.subject == f"key:{created.key.id}"
    assert principal.key_id == created.key.id
    assert principal.tenant_id == owner.user.tenant_id
    assert principal.user_id == owner.user.id
    assert list(principal.scopes) == ["workflows:read", "workflows:write"]
    assert (principal.rate_limit.per_minute, principal.rate_limit.burst) == (120, 20)
    assert not principal.HasField("expires_at")


async def test_a_key_acts_as_the_caller_for_key_management(stub, owner):
    manager = await _create(stub, owner, scopes=["keys:manage", "workflows:read"])
    listed = await stub.ListApiKeys(
        pb.ListApiKeysRequest(), metadata=bearer(manager.secret)
    )
    assert manager.key.id in [key.id for key in listed.keys]


async def test_listing_shows_the_tenants_keys_without_secrets(stub, owner, other_owner):
    mine = await _create(stub, owner)
    await _create(stub, other_owner)
    listed = await stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=owner.credential)
    assert [key.id for key in listed.keys] == [mine.key.id]
    assert mine.secret not in listed.SerializeToString().decode("latin-1")


async def test_revoked_and_expired_keys_stop_and_are_listed_only_when_asked(
    stub, owner, time_travel
):
    revoked = await _create(stub, owner, name="revoked")
    expiring = await _create(stub, owner, name="expiring", expires_in_seconds=60)
    assert expiring.key.expires_at.seconds - expiring.key.created_at.seconds == 60
    assert (await _authenticate(stub, expiring.secret)).HasField("expires_at")

    answer = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=revoked.key.id), metadata=owner.credential
    )
    assert answer.HasField("revoked_at")
    code = await _code(_authenticate(stub, revoked.secret))
    assert code == grpc.StatusCode.UNAUTHENTICATED

    time_travel.offset = timedelta(seconds=61)
    code = await _code(_authenticate(stub, expiring.secret))
    assert code == grpc.StatusCode.UNAUTHENTICATED

    active = await stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=owner.credential)
    assert active.keys == []
    every = await stub.ListApiKeys(
        pb.ListApiKeysRequest(include_inactive=True), metadata=owner.credential
    )
    assert {key.name for key in every.keys} == {"revoked", "expiring"}


async def test_scopes_beyond_the_callers_are_refused_naming_them(stub, owner):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _create(stub, owner, scopes=["workflows:read", "admin"])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin" in (refused.value.details() or "")

    narrow = await _create(stub, owner, scopes=["keys:manage", "files:read"])
    with pytest.raises(grpc.aio.AioRpcError) as beyond:
        await stub.CreateApiKey(
            pb.CreateApiKeyRequest(name="wider", scopes=["workflows:write"]),
            metadata=bearer(narrow.secret),
        )
    assert beyond.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "workflows:write" in (beyond.value.details() or "")


async def test_managing_keys_needs_keys_manage(stub, owner):
    reader = await login(stub, owner.email, scopes=("workflows:read",))
    for call in (
        stub.CreateApiKey(
            pb.CreateApiKeyRequest(name="x", scopes=["workflows:read"]),
            metadata=bearer(reader.access_token),
        ),
        stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=bearer(reader.access_token)),
        stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id="00000000-0000-0000-0000-000000000000"),
            metadata=bearer(reader.access_token),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "keys:manage" in (refused.value.details() or "")


async def test_key_calls_need_a_credential(stub):
    code = await _code(stub.ListApiKeys(pb.ListApiKeysRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code = await _code(
        stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=bearer("csk_nonsense"))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_another_tenants_key_is_not_found(stub, owner, other_owner):
    theirs = await _create(stub, other_owner)
    for key_id in (theirs.key.id, "00000000-0000-0000-0000-000000000000", "nope"):
        code = await _code(
            stub.RevokeApiKey(
                pb.RevokeApiKeyRequest(key_id=key_id), metadata=owner.credential
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND
    await _authenticate(stub, theirs.secret)


async def test_last_use_is_recorded_at_most_once_a_minute(stub, owner, db, time_travel):
    created = await _create(stub, owner)

    async def last_used():
        return await db.fetchval(
            "SELECT last_used_at FROM api_keys WHERE id = $1::uuid", created.key.id
        )

    assert await last_used() is None
    await _authenticate(stub, created.secret)
    first = await last_used()
    assert first is not None
    time_travel.offset = timedelta(seconds=30)
    await _authenticate(stub, created.secret)
    assert await last_used() == first
    time_travel.offset = timedelta(seconds=61)
    await _authenticate(stub, created.secret)
    assert await last_used() > first


async def test_a_tenant_has_at_most_its_number_of_active_keys(stub, owner, db):
    await db.execute(
        "INSERT INTO api_keys (id, kind, tenant_id, name, prefix, secret_hash,"
        " scopes, created_at)"
        " SELECT gen_random_uuid(), 'tenant', $1::uuid, 'filler', 'csk_', "
        "   sha256(gen_random_uuid()::text::bytea), '{}', now()"
        " FROM generate_series(1, 100)",
        owner.user.tenant_id,
    )
    code = await _code(_create(stub, owner))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["workflows:run"]}, "scopes"),
        ({"scopes": ["service"]}, "scopes"),
        ({"expires_in_seconds": 0}, "expires_in_seconds"),
        ({"expires_in_seconds": -5}, "expires_in_seconds"),
        ({"expires_in_seconds": 10**10}, "expires_in_seconds"),
        ({"rate_limit": pb.RateLimit(per_minute=-1)}, "rate_limit.per_minute"),
        ({"rate_limit": pb.RateLimit(burst=-1)}, "rate_limit.burst"),
        ({"rate_limit": pb.RateLimit(burst=10**6)}, "rate_limit.burst"),
    ],
)
async def test_an_invalid_field_is_invalid_argument_naming_it(
    stub, owner, fields, field
):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _create(stub, owner, **fields)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(refused.value) == field


async def test_revoking_without_a_key_id_is_invalid_argument(stub, owner):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.RevokeApiKey(pb.RevokeApiKeyRequest(), metadata=owner.credential)
    assert field_of(refused.value) == "key_id"
