"""Service keys: configured in AUTH_SERVICE_KEYS, put in place at start, and
authenticating as one of our services with the `service` scope only."""

import grpc
import pytest

from comfyserve.auth.keys.secret import digest
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb
from comfyserve.runtime.auth import principal_from_pb

pytestmark = pytest.mark.integration


async def test_configured_service_keys_authenticate_as_services(stub, service_keys, db):
    for name, secret in service_keys.items():
        answer = await stub.Authenticate(pb.AuthenticateRequest(credential=secret))
        principal = principal_from_pb(answer)
        assert principal.is_service
        assert principal.subject == f"service:{name}"
        assert principal.tenant_id == ""
        assert principal.scopes == {"service"}
        stored = await db.fetchrow(
            "SELECT kind, tenant_id, secret_hash FROM api_keys WHERE service_name = $1",
            name,
        )
        assert (stored["kind"], stored["tenant_id"]) == ("service", None)
        assert stored["secret_hash"] == digest(secret)


async def test_service_keys_follow_the_setting(runtime, service_keys, stub):
    keys = runtime.apis.keys
    new_secret = "csk_" + "n" * 30
    try:
        # The gateway's secret changes and the executor leaves the setting.
        await keys.put_service_keys({"gateway": new_secret})
        for stale in service_keys.values():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Authenticate(pb.AuthenticateRequest(credential=stale))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await stub.Authenticate(pb.AuthenticateRequest(credential=new_secret))
    finally:
        await keys.put_service_keys(service_keys)
    for secret in service_keys.values():
        await stub.Authenticate(pb.AuthenticateRequest(credential=secret))


async def test_a_revoked_service_key_stays_revoked_with_the_same_secret(
    runtime, stub, admin, service_keys
):
    keys = runtime.apis.keys
    secret = "csk_" + "r" * 30
    configured = {**service_keys, "notifier": secret}
    await keys.put_service_keys(configured)
    try:
        principal = await stub.Authenticate(pb.AuthenticateRequest(credential=secret))
        await stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id=principal.key_id), metadata=admin.credential
        )
        # A restart with the same setting does not bring it back.
        await keys.put_service_keys(configured)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Authenticate(pb.AuthenticateRequest(credential=secret))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await keys.put_service_keys(service_keys)
