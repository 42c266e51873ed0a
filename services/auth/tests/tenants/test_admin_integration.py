"""Admin calls: every tenant with its counts, page by page; suspension seen by
Authenticate; any tenant's key revoked; and each refused without `admin`."""

import grpc
import pytest

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb

from ..conftest import PASSWORD, bearer, field_of, register

pytestmark = pytest.mark.integration


async def _all_tenants(stub, admin, page_size: int) -> list[pb.Tenant]:
    tenants, cursor = [], ""
    while True:
        page = await stub.ListTenants(
            pb.ListTenantsRequest(page_size=page_size, cursor=cursor),
            metadata=admin.credential,
        )
        assert len(page.tenants) <= page_size
        tenants.extend(page.tenants)
        if not page.next_cursor:
            return tenants
        cursor = page.next_cursor


async def test_tenants_are_listed_with_their_counts_page_by_page(
    stub, admin, owner, db
):
    created = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(name="one", scopes=["files:read"]),
        metadata=owner.credential,
    )
    revoked = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(name="two", scopes=["files:read"]),
        metadata=owner.credential,
    )
    await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=revoked.key.id), metadata=owner.credential
    )
    await db.execute(
        "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at)"
        " VALUES (gen_random_uuid(), $1::uuid, $2, 'x', 'member', now())",
        owner.user.tenant_id,
        f"member-{owner.email}",
    )

    tenants = await _all_tenants(stub, admin, page_size=2)
    ids = [tenant.id for tenant in tenants]
    assert (
        len(ids) == len(set(ids)) == await db.fetchval("SELECT count(*) FROM tenants")
    )
    [mine] = [tenant for tenant in tenants if tenant.id == owner.user.tenant_id]
    assert (mine.users, mine.active_keys, mine.suspended) == (2, 1, False)
    assert created.key.tenant_id == mine.id
    assert [t.created_at.ToDatetime() for t in tenants] == sorted(
        t.created_at.ToDatetime() for t in tenants
    )


async def test_a_page_size_above_the_most_is_the_most(stub, admin):
    for _ in range(3):
        await register(stub)
    page = await stub.ListTenants(
        pb.ListTenantsRequest(page_size=10_000), metadata=admin.credential
    )
    assert 3 <= len(page.tenants) <= 200


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListTenantsRequest(page_size=-1), "page_size"),
        (pb.ListTenantsRequest(cursor="garbage!"), "cursor"),
        (pb.ListTenantsRequest(cursor="WyJub3QtYS1kYXRlIiwgIngiXQ"), "cursor"),
    ],
)
async def test_invalid_listing_fields_are_invalid_argument(
    stub, admin, request_, field
):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListTenants(request_, metadata=admin.credential)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(refused.value) == field


async def test_suspension_shows_in_authenticate_for_tokens_and_keys(stub, admin, owner):
    key = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(name="k", scopes=["workflows:write"]),
        metadata=owner.credential,
    )
    suspended = await stub.SetTenantSuspended(
        pb.SetTenantSuspendedRequest(tenant_id=owner.user.tenant_id, suspended=True),
        metadata=admin.credential,
    )
    assert suspended.suspended
    assert suspended.active_keys == 1
    for credential in (owner.tokens.access_token, key.secret):
        principal = await stub.Authenticate(
            pb.AuthenticateRequest(credential=credential)
        )
        assert principal.tenant_suspended

    # A suspended tenant makes no new keys.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateApiKey(
            pb.CreateApiKeyRequest(name="more", scopes=["workflows:read"]),
            metadata=owner.credential,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await stub.SetTenantSuspended(
        pb.SetTenantSuspendedRequest(tenant_id=owner.user.tenant_id, suspended=False),
        metadata=admin.credential,
    )
    principal = await stub.Authenticate(pb.AuthenticateRequest(credential=key.secret))
    assert not principal.tenant_suspended


async def test_an_admin_revokes_any_tenants_key(stub, admin, owner):
    key = await stub.CreateApiKey(
        pb.CreateApiKeyRequest(name="k", scopes=["workflows:read"]),
        metadata=owner.credential,
    )
    revoked = await stub.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=key.key.id), metadata=admin.credential
    )
    assert revoked.tenant_id == owner.user.tenant_id
    assert revoked.HasField("revoked_at")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Authenticate(pb.AuthenticateRequest(credential=key.secret))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_calls_need_the_admin_scope(stub, owner, admin):
    narrowed = await stub.Login(
        pb.LoginRequest(email=admin.email, password=PASSWORD, scopes=["keys:manage"])
    )
    for credential in (owner.credential, bearer(narrowed.access_token)):
        for call in (
            stub.ListTenants(pb.ListTenantsRequest(), metadata=credential),
            stub.SetTenantSuspended(
                pb.SetTenantSuspendedRequest(
                    tenant_id=owner.user.tenant_id, suspended=True
                ),
                metadata=credential,
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "admin" in (refused.value.details() or "")


async def test_suspending_an_unknown_tenant_is_not_found(stub, admin):
    for tenant_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SetTenantSuspended(
                pb.SetTenantSuspendedRequest(tenant_id=tenant_id, suspended=True),
                metadata=admin.credential,
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.SetTenantSuspended(
            pb.SetTenantSuspendedRequest(suspended=True), metadata=admin.credential
        )
    assert field_of(missing.value) == "tenant_id"
