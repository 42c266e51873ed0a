"""CreateApiKey, ListApiKeys and RevokeApiKey over gRPC."""

from __future__ import annotations

from comfyserve.auth.credentials.service import CredentialService
from comfyserve.auth.keys.models import ApiKey, NewApiKey
from comfyserve.auth.keys.service import ApiKeyService
from comfyserve.auth.transport import Context, caller, timestamp
from comfyserve.contracts.pb.auth.v1 import auth_pb2 as pb


def api_key_to_pb(key: ApiKey) -> pb.ApiKey:
    message = pb.ApiKey(
        id=str(key.id),
        name=key.name,
        prefix=key.prefix,
        tenant_id="" if key.tenant_id is None else str(key.tenant_id),
        scopes=sorted(key.scopes),
        created_at=timestamp(key.created_at),
        rate_limit=pb.RateLimit(per_minute=key.rate_per_minute, burst=key.rate_burst),
        created_by="" if key.created_by is None else str(key.created_by),
    )
    for field, value in (
        ("expires_at", key.expires_at),
        ("last_used_at", key.last_used_at),
        ("revoked_at", key.revoked_at),
    ):
        if value is not None:
            getattr(message, field).CopyFrom(timestamp(value))
    return message


class KeyRpcs:
    _credentials: CredentialService
    _keys: ApiKeyService

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreatedApiKey:
        created = await self._keys.create(
            await caller(context, self._credentials),
            NewApiKey(
                name=request.name,
                scopes=list(request.scopes),
                expires_in_seconds=(
                    request.expires_in_seconds
                    if request.HasField("expires_in_seconds")
                    else None
                ),
                per_minute=request.rate_limit.per_minute,
                burst=request.rate_limit.burst,
            ),
        )
        return pb.CreatedApiKey(key=api_key_to_pb(created.key), secret=created.secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Context
    ) -> pb.ListApiKeysResponse:
        keys = await self._keys.of_tenant(
            await caller(context, self._credentials), request.include_inactive
        )
        return pb.ListApiKeysResponse(keys=[api_key_to_pb(key) for key in keys])

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.ApiKey:
        key = await self._keys.revoke(
            await caller(context, self._credentials), request.key_id
        )
        return api_key_to_pb(key)
