"""No password, token, key or secret reaches a log line, whatever happens."""

import grpc
import pytest
from structlog.testing import capture_logs

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb

from .conftest import PASSWORD, bearer, login, register

pytestmark = pytest.mark.integration


async def test_secrets_stay_out_of_the_logs(stub, service_keys):
    with capture_logs() as logs:
        user_email, _ = await register(stub)
        with pytest.raises(grpc.aio.AioRpcError):
            await login(stub, user_email, password="a wrong password")
        pair = await login(stub, user_email)
        refreshed = await stub.Refresh(
            pb.RefreshRequest(refresh_token=pair.refresh_token)
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token))
        key = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(name="k", scopes=["files:read"]),
            metadata=bearer(refreshed.access_token),
        )
        await stub.Authenticate(pb.AuthenticateRequest(credential=key.secret))
        await stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id=key.key.id),
            metadata=bearer(refreshed.access_token),
        )
        await stub.Authenticate(
            pb.AuthenticateRequest(credential=service_keys["gateway"])
        )
    assert logs
    written = repr(logs)
    for secret in (
        PASSWORD,
        "a wrong password",
        pair.access_token,
        pair.refresh_token,
        refreshed.refresh_token,
        key.secret,
        *service_keys.values(),
    ):
        assert secret not in written
    assert user_email not in written
