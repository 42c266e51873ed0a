"""AuthService client; errors travel as `grpc.aio.AioRpcError`.

Calls that act for the caller carry the caller's own credential, so the auth
service applies its own checks (scopes, tenant) to the person asking, never to
this gateway.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as au
from comfyserve.contracts.pb.auth.v1 import auth_pb2_grpc as au_grpc


class AuthClient(Protocol):
    async def register(self, request: au.RegisterRequest) -> au.User: ...

    async def login(self, request: au.LoginRequest) -> au.TokenPair: ...

    async def refresh(self, request: au.RefreshRequest) -> au.TokenPair: ...

    async def get_jwks(self) -> au.Jwks: ...

    async def logout(
        self, request: au.LogoutRequest, credential: str
    ) -> au.LogoutResponse: ...

    async def create_api_key(
        self, request: au.CreateApiKeyRequest, credential: str
    ) -> au.CreatedApiKey: ...

    async def list_api_keys(
        self, request: au.ListApiKeysRequest, credential: str
    ) -> au.ListApiKeysResponse: ...

    async def revoke_api_key(
        self, request: au.RevokeApiKeyRequest, credential: str
    ) -> au.ApiKey: ...

    async def list_tenants(
        self, request: au.ListTenantsRequest, credential: str
    ) -> au.ListTenantsResponse: ...

    async def set_tenant_suspended(
        self, request: au.SetTenantSuspendedRequest, credential: str
    ) -> au.Tenant: ...


def _as(credential: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {credential}"),)


class GrpcAuthClient:
    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float) -> None:
        self._stub = au_grpc.AuthServiceStub(channel)
        self._timeout = timeout_seconds

    async def register(self, request: au.RegisterRequest) -> au.User:
        return await self._stub.Register(request, timeout=self._timeout)

    async def login(self, request: au.LoginRequest) -> au.TokenPair:
        return await self._stub.Login(request, timeout=self._timeout)

    async def refresh(self, request: au.RefreshRequest) -> au.TokenPair:
        return await self._stub.Refresh(request, timeout=self._timeout)

    async def get_jwks(self) -> au.Jwks:
        return await self._stub.GetJwks(au.GetJwksRequest(), timeout=self._timeout)

    async def logout(
        self, request: au.LogoutRequest, credential: str
    ) -> au.LogoutResponse:
        return await self._stub.Logout(
            request, timeout=self._timeout, metadata=_as(credential)
        )

    async def create_api_key(
        self, request: au.CreateApiKeyRequest, credential: str
    ) -> au.CreatedApiKey:
        return await self._stub.CreateApiKey(
            request, timeout=self._timeout, metadata=_as(credential)
        )

    async def list_api_keys(
        self, request: au.ListApiKeysRequest, credential: str
    ) -> au.ListApiKeysResponse:
        return await self._stub.ListApiKeys(
            request, timeout=self._timeout, metadata=_as(credential)
        )

    async def revoke_api_key(
        self, request: au.RevokeApiKeyRequest, credential: str
    ) -> au.ApiKey:
        return await self._stub.RevokeApiKey(
            request, timeout=self._timeout, metadata=_as(credential)
        )

    async def list_tenants(
        self, request: au.ListTenantsRequest, credential: str
    ) -> au.ListTenantsResponse:
        return await self._stub.ListTenants(
            request, timeout=self._timeout, metadata=_as(credential)
        )

    async def set_tenant_suspended(
        self, request: au.SetTenantSuspendedRequest, credential: str
    ) -> au.Tenant:
        return await self._stub.SetTenantSuspended(
            request, timeout=self._timeout, metadata=_as(credential)
        )
