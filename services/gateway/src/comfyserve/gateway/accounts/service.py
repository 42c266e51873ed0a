"""The `/auth` routes' calls to AuthService, and their answers as REST bodies."""

from __future__ import annotations

import grpc

from comfyserve.contracts.pb.auth.v1 import auth_pb2 as au
from comfyserve.gateway.accounts.models import (
    ApiKey,
    ApiKeyList,
    CreateApiKeyRequest,
    CreatedApiKey,
    Me,
    RateLimit,
    RegisterRequest,
    TokenResponse,
    User,
)
from comfyserve.gateway.adapters.auth import AuthClient
from comfyserve.gateway.adapters.refusals import AS_CALLER, translated
from comfyserve.gateway.errors import (
    EmailTakenError,
    GatewayError,
    InvalidLoginError,
    KeyLimitError,
    TooManyAttemptsError,
    UnauthorizedError,
)
from comfyserve.gateway.protos import optional_time
from comfyserve.runtime.auth import Principal
from comfyserve.runtime.grpc import rpc_details

# When a throttled login names no wait.
LOGIN_RETRY_AFTER_SECONDS = 60


def _throttled(error: grpc.aio.AioRpcError) -> GatewayError:
    # The auth service sends the wait as a google.rpc.RetryInfo. The text is
    # ours: it is the same whether the account exists or not.
    wait = rpc_details(error).retry_after_s
    return TooManyAttemptsError(
        "Too many failed sign-ins; retry later",
        LOGIN_RETRY_AFTER_SECONDS if wait is None else wait,
    )


def _bad_refresh_token(error: grpc.aio.AioRpcError) -> GatewayError:
    return UnauthorizedError(
        "The refresh token is not valid (expired, revoked or already used)"
    )


_REGISTER = {grpc.StatusCode.ALREADY_EXISTS: lambda _: EmailTakenError()}
_LOGIN = {
    grpc.StatusCode.UNAUTHENTICATED: lambda _: InvalidLoginError(),
    grpc.StatusCode.RESOURCE_EXHAUSTED: _throttled,
}
_REFRESH = {grpc.StatusCode.UNAUTHENTICATED: _bad_refresh_token}
_CREATE_KEY = {
    **AS_CALLER,
    grpc.StatusCode.RESOURCE_EXHAUSTED: lambda e: KeyLimitError(e.details() or ""),
}


def _tokens(pair: au.TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type or "bearer",
        expires_in=pair.expires_in,
    )


def api_key(key: au.ApiKey) -> ApiKey:
    return ApiKey(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        tenant_id=key.tenant_id,
        scopes=list(key.scopes),
        created_at=optional_time(key, "created_at"),
        expires_at=optional_time(key, "expires_at"),
        last_used_at=optional_time(key, "last_used_at"),
        revoked_at=optional_time(key, "revoked_at"),
        rate_limit=RateLimit(
            per_minute=key.rate_limit.per_minute, burst=key.rate_limit.burst
        ),
        created_by=key.created_by or None,
    )


def me(principal: Principal) -> Me:
    return Me(
        kind=principal.kind.value,
        subject=principal.subject,
        tenant_id=principal.tenant_id,
        scopes=sorted(principal.scopes),
        user_id=principal.user_id,
        email=principal.email,
        role=principal.role,
        key_id=principal.key_id,
        expires_at=principal.expires_at,
    )


class AccountsService:
    def __init__(self, auth: AuthClient, client_address: str) -> None:
        self._auth = auth
        self._address = client_address

    async def register(self, body: RegisterRequest) -> User:
        with translated(_REGISTER):
            user = await self._auth.register(
                au.RegisterRequest(
                    email=body.email,
                    password=body.password,
                    tenant_name=body.tenant_name or "",
                )
            )
        return User(
            id=user.id,
            email=user.email,
            tenant_id=user.tenant_id,
            role=user.role,
            created_at=optional_time(user, "created_at"),
        )

    async def login(
        self, email: str, password: str, scopes: list[str]
    ) -> TokenResponse:
        with translated(_LOGIN):
            pair = await self._auth.login(
                au.LoginRequest(
                    email=email,
                    password=password,
                    client_address=self._address,
                    scopes=scopes,
                )
            )
        return _tokens(pair)

    async def refresh(self, refresh_token: str) -> TokenResponse:
        with translated(_REFRESH):
            pair = await self._auth.refresh(
                au.RefreshRequest(
                    refresh_token=refresh_token, client_address=self._address
                )
            )
        return _tokens(pair)

    async def logout(self, refresh_token: str, credential: str) -> None:
        with translated(AS_CALLER):
            await self._auth.logout(
                au.LogoutRequest(refresh_token=refresh_token), credential
            )

    async def jwks(self) -> str:
        return (await self._auth.get_jwks()).jwks_json

    async def create_key(
        self, body: CreateApiKeyRequest, credential: str
    ) -> CreatedApiKey:
        request = au.CreateApiKeyRequest(
            name=body.name, scopes=[scope.value for scope in body.scopes]
        )
        if body.expires_in_seconds is not None:
            request.expires_in_seconds = body.expires_in_seconds
        if body.rate_limit is not None:
            request.rate_limit.per_minute = body.rate_limit.per_minute
            request.rate_limit.burst = body.rate_limit.burst
        with translated(_CREATE_KEY):
            created = await self._auth.create_api_key(request, credential)
        return CreatedApiKey(**api_key(created.key).model_dump(), secret=created.secret)

    async def keys(self, include_inactive: bool, credential: str) -> ApiKeyList:
        with translated(AS_CALLER):
            found = await self._auth.list_api_keys(
                au.ListApiKeysRequest(include_inactive=include_inactive), credential
            )
        return ApiKeyList(items=[api_key(key) for key in found.keys])

    async def revoke_key(self, key_id: str, credential: str) -> ApiKey:
        with translated(AS_CALLER):
            key = await self._auth.revoke_api_key(
                au.RevokeApiKeyRequest(key_id=key_id), credential
            )
        return api_key(key)
